"""Starting, watching and stopping the service processes the local target and tests run.

Each service is a real process (gunicorn, Streamlit) in its own process group, on a free
loopback port, with its output in a log file; ``wait_http`` polls a health URL and, if the
process dies first, raises with the tail of its log so the reason is on screen.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class ServiceFailed(RuntimeError):
    """A service exited or never became healthy; the message carries its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def log_tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path
    url: str | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        return stop_pid(self.popen.pid, timeout=timeout, popen=self.popen)


def start(
    name: str,
    cmd: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    url: str | None = None,
) -> Process:
    """Start ``cmd`` in a new session (its own process group), output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    try:
        popen = subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        log.close()
    return Process(name, popen, log_path, url)


def stop_pid(pid: int, *, timeout: float = 10.0, popen: subprocess.Popen | None = None):
    """SIGTERM the process group, wait up to ``timeout``, then SIGKILL. Returns the exit code."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return popen.poll() if popen else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None:
            if popen.poll() is not None:
                break
        elif not pid_alive(pid):
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    if popen is not None:
        try:
            return popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return None
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child counts as gone
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def wait_http(
    url: str,
    *,
    timeout: float = 120.0,
    process: Process | None = None,
    expect: int = 200,
    progress: callable | None = None,
) -> float:
    """Poll ``url`` until it answers ``expect``; return the seconds it took."""
    start = time.monotonic()
    next_note = start + 10
    while True:
        status = http_status(url)
        if status == expect:
            return time.monotonic() - start
        if process is not None and not process.alive():
            raise ServiceFailed(
                f"{process.name} exited with code {process.popen.returncode} before {url} "
                f"answered; its log ({process.log_path}) ends with:\n{log_tail(process.log_path)}"
            )
        now = time.monotonic()
        if now - start > timeout:
            tail = log_tail(process.log_path) if process else ""
            raise ServiceFailed(
                f"{url} did not answer {expect} within {timeout:g} s (last: {status})\n{tail}"
            )
        if progress is not None and now >= next_note:
            progress(f"still waiting for {url} ({now - start:.0f} s)")
            next_note = now + 10
        time.sleep(0.1)


def gunicorn_command(
    app_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int,
    python: str = sys.executable,
    extra: Sequence[str] = (),
) -> list[str]:
    """``gunicorn --chdir APP_DIR app:app`` with the package's Cloud Run settings."""
    return [
        python,
        "-m",
        "gunicorn",
        "-c",
        "python:hw5kit.serving.gunicorn_conf",
        "--chdir",
        str(app_dir),
        "--bind",
        f"{host}:{port}",
        *extra,
        "app:app",
    ]


STREAMLIT_HEALTH = "/_stcore/health"


def streamlit_command(
    app_file: Path,
    *,
    host: str = "127.0.0.1",
    port: int,
    python: str = sys.executable,
) -> list[str]:
    """``streamlit run`` headless, no usage statistics, no file watcher: as in the images."""
    return [
        python, "-m", "streamlit", "run", str(app_file),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
