"""What every pipeline command works on: the repository root, its config, the target, the
environment handed to subprocesses, and where logs and state go (``.hw5/<target>/``)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..paths import ROOT
from . import config as config_mod
from . import deliverables, render

TEMPLATES = "templates"
STATE_DIR = ".hw5"

Log = Callable[[str], None]


class PipelineError(RuntimeError):
    """A step cannot go on; the message says why and what to do."""


def console(message: str) -> None:
    print(message, flush=True)


@dataclass
class Project:
    root: Path
    config: config_mod.Config
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    log: Log = console

    @classmethod
    def load(
        cls,
        root: Path | None = None,
        config_path: Path | None = None,
        target: str | None = None,
        env: Mapping[str, str] | None = None,
        log: Log = console,
    ) -> Project:
        root = (root or ROOT).resolve()
        path = config_path or root / config_mod.CONFIG_NAME
        cfg = config_mod.load(path).with_target(target)
        return cls(root, cfg, dict(os.environ if env is None else env), log)

    @property
    def target(self) -> str:
        return self.config.target

    @property
    def deliverables_path(self) -> Path:
        return deliverables.path_for(self.root, self.target)

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR / self.target

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def templates(self) -> Path:
        return self.root / TEMPLATES

    def rendered(self) -> list[render.Rendered]:
        return render.render_all(self.config, self.templates)

    def require_rendered(self) -> None:
        """The committed deployment/ files must be what deployment.yaml renders to."""
        problems = render.differences(self.root, self.rendered())
        if problems:
            raise PipelineError(
                "deployment/ does not match deployment.yaml and templates/ ("
                + ", ".join(path for path, _ in problems)
                + " differ): run `nox -s render`, review the change, and commit it"
            )

    def which(self, command: str) -> str | None:
        return shutil.which(command, path=self.env.get("PATH"))


@dataclass
class ScriptResult:
    code: int
    output: str
    log_path: Path
    seconds: float
    timed_out: bool = False  # stopped after ``timeout`` seconds (code 124)


TIMED_OUT = 124  # the exit status timeout(1) uses


def stop_group(proc: subprocess.Popen) -> None:
    """End a process started with ``start_new_session=True`` and everything it started (a
    script's gcloud too): TERM, then KILL after 5 s."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


IMPORTANT = re.compile(
    r"(^Created \[|^Logs are available|^Starting Step|^ERROR|^BUILD FAILURE|"
    r"^Service URL|^Service \[|^error:|^Deploying|^DONE)"
)


def run_script(
    cmd: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    prefix: str,
    log: Log,
    verbose: bool = False,
    heartbeat: float = 30.0,
    timeout: float | None = None,
) -> ScriptResult:
    """Run ``cmd``, output (stdout and stderr merged) to ``log_path``; the console sees the
    important lines (all with ``verbose``), prefixed, and a note every ``heartbeat`` seconds.
    After ``timeout`` seconds the command and its children are stopped (``timed_out``)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    lines: list[str] = []
    timed_out = threading.Event()
    with log_path.open("w") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group: a timeout stops gcloud too
        )
        done = threading.Event()

        def beat() -> None:
            step = min(heartbeat, timeout) if timeout else heartbeat
            last = start
            while not done.wait(step):
                now = time.monotonic()
                if timeout and now - start >= timeout:
                    timed_out.set()
                    stop_group(proc)
                    return
                if now - last >= heartbeat:
                    last = now
                    log(f"{prefix} still running ({now - start:.0f} s; log: {log_path})")

        ticker = threading.Thread(target=beat, daemon=True)
        ticker.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                fh.write(line)
                fh.flush()
                lines.append(line)
                if verbose or IMPORTANT.search(line):
                    log(f"{prefix} {line.rstrip()}")
            code = proc.wait()
        finally:
            done.set()
            stop_group(proc)
        if timed_out.is_set():
            code = TIMED_OUT
            fh.write(f"\n(stopped after {timeout:.0f} s)\n")
    return ScriptResult(
        code, "".join(lines), log_path, time.monotonic() - start, timed_out.is_set()
    )


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
