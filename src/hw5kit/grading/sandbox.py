"""Running a submission's shell scripts without trusting them.

Every script runs on a throw-away copy of the submission (a *workspace*), with:

* a scrubbed environment: ``PATH`` (the fake gcloud first), an empty ``HOME`` and ``TMPDIR``,
  ``LANG``; nothing from the grader's environment (no ``GOOGLE_*``, ``CLOUDSDK_*``, ``AWS_*``,
  tokens or paths);
* limits: wall-clock time, CPU time, processes, file size, address space, open files, bytes of
  output (past which the script is killed) and bytes written into the workspace;
* ``gcloud`` = a small relay that forwards its arguments over a Unix socket to the fake gcloud
  running *in the grader* (``GcloudRelay``): the script cannot read or forge the fake's state or
  call log, and the relay refuses paths outside the workspace.

Isolation modes (``Sandbox.detect``):

``bwrap``
    bubblewrap: new user, PID, network, IPC and UTS namespaces (no network at all), a read-only
    view of ``/usr`` and a few files of ``/etc`` only (the grader's home, sources, credentials
    and other submissions are not visible), a private size-limited ``/tmp``, read-only ``/``,
    the workspace the only writable folder on disk, every process killed with the sandbox. As
    root, bubblewrap itself runs as the unprivileged user ``nobody`` (uid 65534).
``user``
    no usable bubblewrap but the grader runs as root: scripts run as ``nobody`` with the same
    limits. The grader's files (owned by root) cannot be changed and root's home cannot be read,
    but the rest of the file system is visible and the network is not cut off.
``none``
    neither: the scripts run as the grader's own user. Only for grading your own submission;
    never chosen automatically.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NOBODY = 65534
# Paths inside bubblewrap's own private tmpfs, not the host's /tmp.
SANDBOX_TMP = "/tmp"  # noqa: S108
SANDBOX_HOME = "/tmp/home"  # noqa: S108
SANDBOX_SHM = "/dev/shm"  # noqa: S108
MODES = ("bwrap", "user", "none")
# /etc entries a shell and python3 need; everything else in /etc stays invisible.
ETC_ALLOWED = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "hosts",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "mime.types",
    "os-release",
    "debian_version",
    "python3",
    "python3.11",
    "python3.12",
    "profile",
    "bash.bashrc",
    "inputrc",
    "terminfo",
)
TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
SANDBOX_PATH = ("/usr/local/bin", "/usr/bin", "/bin")


class SandboxUnavailable(RuntimeError):
    """No way to run untrusted scripts safely here; the message says what to install."""


@dataclass(frozen=True)
class Limits:
    timeout: float = 30.0  # wall-clock seconds per script
    cpu_seconds: int = 30  # per process
    processes: int = 64  # at once, for the sandbox's user (in addition to what it runs now)
    file_size: int = 32 * 2**20  # largest file a script may write
    address_space: int = 2 * 2**30  # per process
    open_files: int = 256
    output: int = 2 * 2**20  # stdout + stderr; past it the script is killed
    output_kept: int = 32 * 2**10  # head and tail kept for the report
    workspace: int = 128 * 2**20  # bytes written into the workspace
    workspace_files: int = 20000
    tmpfs: int = 64 * 2**20  # the private /tmp and /dev/shm (bwrap)
    gcloud_calls: int = 60  # per script


@dataclass
class RunResult:
    command: list[str]
    exit_code: int | None
    stdout: str
    stderr: str
    duration: float
    killed: str = ""  # why the grader stopped it ("" when it ended by itself)
    output_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.killed

    def describe(self) -> str:
        if self.killed:
            return f"stopped by the grader: {self.killed}"
        if self.exit_code is None:
            return "did not run"
        if self.exit_code < 0:
            return f"killed by signal {signal.Signals(-self.exit_code).name}"
        if self.exit_code > 128 and self.exit_code - 128 in _SIGNALS:
            return f"exit status {self.exit_code} ({_SIGNALS[self.exit_code - 128]})"
        return f"exit status {self.exit_code}"

    def tail(self, lines: int = 12) -> str:
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return "\n".join(text[-lines:])


_SIGNALS = {s.value: s.name for s in signal.Signals}


# --- the gcloud relay ---------------------------------------------------------------------

RELAY_CLIENT = r"""
import json, os, socket, sys
SOCKET = {socket_path!r}
request = {{
    "argv": sys.argv[1:],
    "cwd": os.getcwd() if os.path.isdir(".") else "/",
    "env": {{k: v for k, v in os.environ.items() if k.startswith("CLOUDSDK_")}},
}}
try:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(SOCKET)
    conn.sendall(json.dumps(request).encode() + b"\n")
    conn.shutdown(socket.SHUT_WR)
    data = b"".join(iter(lambda: conn.recv(65536), b""))
    answer = json.loads(data)
except Exception as exc:
    sys.stderr.write("ERROR: (gcloud) the grader's fake gcloud did not answer: %s\n" % exc)
    sys.exit(1)
sys.stdout.write(answer.get("stdout", ""))
sys.stderr.write(answer.get("stderr", ""))
sys.exit(int(answer.get("code", 1)))
"""

Handler = Callable[[list[str], str, dict[str, str]], dict[str, Any]]


class _RelayServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True
    relay: GcloudRelay


class _RelayRequest(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        relay = self.server.relay  # type: ignore[attr-defined]
        self.connection.settimeout(10)
        try:
            raw = self.rfile.readline(relay.max_request)
            request = json.loads(raw)
            argv = [str(a) for a in request["argv"]]
            cwd = str(request.get("cwd") or "/")
            env = {str(k): str(v) for k, v in dict(request.get("env") or {}).items()}
        except (ValueError, KeyError, TypeError, OSError):
            answer = {"stdout": "", "stderr": "ERROR: (gcloud) malformed request\n", "code": 2}
        else:
            answer = relay.dispatch(argv, cwd, env)
        with contextlib.suppress(OSError):
            self.wfile.write(json.dumps(answer).encode())


class GcloudRelay:
    """A Unix-socket server in the grader answering the sandbox's ``gcloud`` calls.

    ``handler(argv, cwd, env)`` returns ``{"stdout", "stderr", "code"}``; the relay counts calls
    and refuses past ``limit``. ``bin_dir`` holds the ``gcloud`` client to put first on PATH."""

    max_request = 256 * 2**10

    def __init__(self, base: Path, handler: Handler, *, python: str, limit: int = 60):
        self.base = base
        self.handler = handler
        self.limit = limit
        self.calls = 0
        self._lock = threading.Lock()
        self.bin_dir = base / "bin"
        self.socket_dir = base / "relay"
        self.socket_path = self.socket_dir / "gcloud.sock"
        self.bin_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.socket_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        if len(str(self.socket_path)) > 100:
            raise SandboxUnavailable(
                f"the grader's temporary folder path is too long for a Unix socket "
                f"({self.socket_path}); set TMPDIR to a shorter folder such as /tmp"
            )
        client = self.bin_dir / "gcloud"
        client.write_text(
            f"#!{python} -IS\n"
            "# the grader's gcloud: forwards to the fake gcloud outside the sandbox\n"
            + RELAY_CLIENT.format(socket_path=str(self.socket_path))
        )
        client.chmod(0o755)
        self.client = client
        self._server: _RelayServer | None = None
        self._thread: threading.Thread | None = None

    def reset_count(self) -> None:
        with self._lock:
            self.calls = 0

    def dispatch(self, argv: list[str], cwd: str, env: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
            over = self.calls > self.limit
        if over:
            return {
                "stdout": "",
                "stderr": f"ERROR: (gcloud) the grader allows at most {self.limit} gcloud calls "
                "per script\n",
                "code": 1,
            }
        try:
            return self.handler(argv, cwd, env)
        except Exception as exc:  # a bug in the fake must not kill the grader
            return {
                "stdout": "",
                "stderr": f"ERROR: (gcloud) fake gcloud failed: {exc}\n",
                "code": 1,
            }

    def __enter__(self) -> GcloudRelay:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        server = _RelayServer(str(self.socket_path), _RelayRequest)
        server.relay = self
        # the sandbox's user (nobody) must be able to connect; the socket's folder sits in the
        # grader's 0711 temporary folder, and the relay only answers fake gcloud calls
        os.chmod(self.socket_path, 0o777)  # noqa: S103
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="gcloud-relay")
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()


def relay_python() -> str | None:
    """A python3 the sandbox can see (only /usr is visible inside bubblewrap)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


# --- output capture ------------------------------------------------------------------------


class _Capture:
    """Reads a pipe to the end, keeping its head and tail; reports the total byte count."""

    def __init__(self, stream, keep: int, on_bytes: Callable[[int], None]):
        self.stream = stream
        self.keep = keep
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.on_bytes = on_bytes
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            while True:
                chunk = self.stream.read1(65536) if hasattr(self.stream, "read1") else b""
                if not chunk:
                    break
                self.total += len(chunk)
                room = self.keep - len(self.head)
                if room > 0:
                    self.head += chunk[:room]
                    chunk = chunk[room:]
                if chunk:
                    self.tail = (self.tail + chunk)[-self.keep :]
                self.on_bytes(len(chunk))

    def text(self) -> str:
        out = bytes(self.head)
        if self.tail:
            skipped = self.total - len(self.head) - len(self.tail)
            if skipped > 0:
                out += f"\n[... {skipped} bytes of output left out ...]\n".encode()
            out += bytes(self.tail)
        return out.decode("utf-8", errors="replace")


# --- the sandbox ----------------------------------------------------------------------------


def _count_processes(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(entry.path).st_uid == uid:
                    count += 1
    return count


def tree_size(path: Path, max_entries: int) -> tuple[int, int]:
    """(bytes, entries) under ``path`` without following links; stops past ``max_entries``."""
    total = entries = 0
    stack = [str(path)]
    while stack and entries <= max_entries:
        current = stack.pop()
        with contextlib.suppress(OSError), os.scandir(current) as it:
            for entry in it:
                entries += 1
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
    return total, entries


@dataclass
class Sandbox:
    mode: str
    limits: Limits = field(default_factory=Limits)
    bwrap: str | None = None
    python: str | None = None  # the relay client's interpreter

    # -- choosing a mode -- #
    @classmethod
    def detect(cls, requested: str = "auto", limits: Limits | None = None) -> Sandbox:
        limits = limits or Limits()
        python = relay_python()
        bwrap = shutil.which("bwrap")
        is_root = os.geteuid() == 0
        problems = []
        if requested in ("auto", "bwrap"):
            if bwrap is None:
                problems.append("bubblewrap (bwrap) is not installed")
            elif python is None:
                problems.append("no /usr/bin/python3 for the gcloud relay inside bubblewrap")
            else:
                box = cls("bwrap", limits, bwrap, python)
                error = box.probe()
                if error is None:
                    return box
                problems.append(f"bubblewrap does not work here: {error}")
            if requested == "bwrap":
                raise SandboxUnavailable("; ".join(problems))
        if requested in ("auto", "user"):
            if is_root and python is not None:
                return cls("user", limits, None, python)
            if requested == "user":
                raise SandboxUnavailable(
                    "--sandbox user needs the grader to run as root (it runs scripts as nobody)"
                    + ("" if python else " and /usr/bin/python3")
                )
            problems.append("the grader does not run as root, so it cannot switch to nobody")
        if requested == "none":
            return cls("none", limits, None, python or sys.executable)
        raise SandboxUnavailable(
            "no sandbox for the submission's scripts: "
            + "; ".join(problems)
            + ". Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; `nox -s grade` "
            "does it when run as root), run the grader as root, or pass --sandbox none to run "
            "the scripts as yourself (only for your own submission)."
        )

    def describe(self) -> str:
        if self.mode == "bwrap":
            who = "as nobody (uid 65534)" if os.geteuid() == 0 else f"as uid {os.getuid()}"
            return (
                f"bubblewrap {who}: no network, private /tmp, read-only system, only the "
                "workspace writable"
            )
        if self.mode == "user":
            return (
                "unprivileged user nobody without bubblewrap: the grader's files are protected "
                "by ownership only, and the network is not cut off (install bubblewrap for full "
                "isolation)"
            )
        return (
            "NO ISOLATION (--sandbox none): scripts run as the grader's own user with limits "
            "only; use this for your own submission, never for other people's"
        )

    @property
    def run_uid(self) -> int | None:
        return NOBODY if os.geteuid() == 0 and self.mode in ("bwrap", "user") else None

    def probe(self) -> str | None:
        """Run ``true`` in the sandbox; the error text if that fails."""
        with tempfile.TemporaryDirectory(prefix="hw5-grade-probe-") as tmp:
            base = Path(tmp)
            base.chmod(0o711)
            workspace = base / "ws"
            workspace.mkdir()
            self.prepare_workspace(workspace)
            cmd = self._bwrap_command(base, workspace, ["/bin/sh", "-c", "exit 0"], None)
            try:
                done = subprocess.run(
                    self._limited(cmd),
                    capture_output=True,
                    timeout=20,
                    env={"PATH": "/usr/bin:/bin"},
                    **self._popen_user(),
                )
            except (OSError, subprocess.SubprocessError) as exc:
                return str(exc)
            if done.returncode != 0:
                return (done.stderr or done.stdout).decode(errors="replace").strip()[:300] or (
                    f"exit status {done.returncode}"
                )
        return None

    # -- workspace -- #
    def prepare_workspace(self, workspace: Path) -> None:
        """Hand the workspace to the sandbox's user (nobody when the grader is root)."""
        uid = self.run_uid
        if uid is None:
            return
        for dirpath, dirnames, filenames in os.walk(workspace):
            os.chown(dirpath, uid, uid)
            for name in dirnames + filenames:
                with contextlib.suppress(OSError):
                    os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)

    # -- commands -- #
    def _popen_user(self) -> dict[str, Any]:
        uid = self.run_uid
        if uid is None:
            return {}
        return {"user": uid, "group": uid, "extra_groups": []}

    def _limited(self, cmd: list[str]) -> list[str]:
        """``cmd`` under resource limits set by bash's ulimit (safe with threads, unlike
        preexec_fn), then exec'd."""
        lim = self.limits
        uid = self.run_uid if self.run_uid is not None else os.getuid()
        # RLIMIT_NPROC counts every process of the user: leave room for those already running
        processes = lim.processes + _count_processes(uid)
        script = (
            f"ulimit -S -H -u {processes} -f {lim.file_size // 1024} -t {lim.cpu_seconds} "
            f"-v {lim.address_space // 1024} -n {lim.open_files} -c 0 || exit 125; "
            'exec "$@"'
        )
        return ["/bin/bash", "-c", script, "hw5-limits", *cmd]

    def _bwrap_command(
        self, base: Path, workspace: Path, cmd: list[str], bin_dir: Path | None
    ) -> list[str]:
        assert self.bwrap is not None
        lim = self.limits
        out = [
            self.bwrap,
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "hw5-sandbox",
            "--ro-bind",
            "/usr",
            "/usr",
        ]
        for name in TOP_LEVEL_LINKS:
            path = Path("/") / name
            if path.is_symlink():
                out += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                out += ["--ro-bind", str(path), str(path)]
        etc = base / "etc"
        etc.mkdir(exist_ok=True)
        uid = self.run_uid if self.run_uid is not None else os.getuid()
        gid = self.run_uid if self.run_uid is not None else os.getgid()
        (etc / "passwd").write_text(
            f"root:x:0:0:root:/root:/bin/bash\nstudent:x:{uid}:{gid}:student:/tmp/home:/bin/bash\n"
        )
        (etc / "group").write_text(f"root:x:0:\nstudent:x:{gid}:\n")
        for name in ("passwd", "group"):
            (etc / name).chmod(0o644)
        etc.chmod(0o755)
        for name in ETC_ALLOWED:
            out += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        out += ["--ro-bind", str(etc / "passwd"), "/etc/passwd"]
        out += ["--ro-bind", str(etc / "group"), "/etc/group"]
        out += ["--dev", "/dev", "--size", str(lim.tmpfs), "--tmpfs", SANDBOX_SHM]
        out += ["--remount-ro", "/dev", "--proc", "/proc"]
        out += ["--size", str(lim.tmpfs), "--tmpfs", SANDBOX_TMP, "--dir", SANDBOX_HOME]
        if bin_dir is not None:
            out += ["--ro-bind", str(bin_dir), str(bin_dir)]
            socket_dir = bin_dir.parent / "relay"
            out += ["--ro-bind", str(socket_dir), str(socket_dir)]
            for directory in SANDBOX_PATH:  # hide any real gcloud behind the relay
                real = Path(directory) / "gcloud"
                if real.exists():
                    out += ["--ro-bind", str(bin_dir / "gcloud"), str(real)]
        out += ["--bind", str(workspace), str(workspace)]
        out += ["--remount-ro", "/", "--chdir", str(workspace), "--", *cmd]
        return out

    def environment(self, home: str, tmp: str, bin_dir: Path, token: str) -> dict[str, str]:
        return {
            "PATH": os.pathsep.join([str(bin_dir), *SANDBOX_PATH]),
            "HOME": home,
            "TMPDIR": tmp,
            "LANG": "C.UTF-8",
            "USER": "student",
            "LOGNAME": "student",
            "SHELL": "/bin/bash",
            "TERM": "dumb",
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "HW5_SANDBOX": token,
        }

    def run(
        self,
        base: Path,
        workspace: Path,
        script: Path,
        args: Sequence[str] = (),
        *,
        relay: GcloudRelay,
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        """``bash SCRIPT ARGS`` in ``workspace`` (which must sit under ``base``)."""
        token = secrets.token_hex(8)
        if self.mode == "bwrap":
            environ = self.environment(SANDBOX_HOME, SANDBOX_TMP, relay.bin_dir, token)
        else:
            home = base / f"home-{token}"
            home.mkdir(mode=0o700)
            if self.run_uid is not None:
                os.chown(home, self.run_uid, self.run_uid)
            environ = self.environment(str(home), str(home), relay.bin_dir, token)
        environ.update(env or {})
        inner = ["/bin/bash", str(script), *args]
        if self.mode == "bwrap":
            cmd = self._bwrap_command(base, workspace, inner, relay.bin_dir)
        else:
            cmd = inner
        relay.reset_count()
        return self._execute(self._limited(cmd), workspace, environ, token)

    def _execute(self, cmd: list[str], cwd: Path, env: dict[str, str], token: str) -> RunResult:
        lim = self.limits
        start = time.monotonic()
        killed = ""
        state = {"bytes": 0}
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                **self._popen_user(),
            )
        except OSError as exc:
            return RunResult(cmd, None, "", f"could not start: {exc}", 0.0, killed=str(exc))

        def count(n: int) -> None:
            state["bytes"] += n

        out = _Capture(proc.stdout, lim.output_kept, count)
        err = _Capture(proc.stderr, lim.output_kept, count)
        next_size_check = 0.0
        while True:
            try:
                proc.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if out.total + err.total > lim.output:
                killed = f"it printed more than {lim.output // 2**20} MiB"
            elif now - start > lim.timeout:
                killed = f"the time limit ({lim.timeout:g} s)"
            elif now >= next_size_check:
                next_size_check = now + 0.25
                size, entries = tree_size(cwd, lim.workspace_files)
                if size > lim.workspace:
                    killed = f"it wrote more than {lim.workspace // 2**20} MiB into the workspace"
                elif entries > lim.workspace_files:
                    killed = f"it created more than {lim.workspace_files} files in the workspace"
            if killed:
                break
        self._kill(proc, token)
        for capture in (out, err):
            capture.thread.join(timeout=5)
        duration = time.monotonic() - start
        code = proc.returncode
        return RunResult(cmd, code, out.text(), err.text(), duration, killed, out.total + err.total)

    def _kill(self, proc: subprocess.Popen, token: str) -> None:
        """Stop the script and everything it started (also when it ended by itself: anything
        it left running in the background goes too)."""
        for _ in range(20):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            if self.mode != "bwrap":
                _kill_tagged(token)
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
            if self.mode == "bwrap" or not _tagged(token):
                return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _tagged(token: str) -> list[int]:
    """PIDs whose environment carries this run's token (user and none modes, where no PID
    namespace collects the script's processes)."""
    needle = f"HW5_SANDBOX={token}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry.name}/environ", "rb") as fh:
            if needle in fh.read().split(b"\0"):
                found.append(int(entry.name))
    return found


def _kill_tagged(token: str) -> None:
    for pid in _tagged(token):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def grading_folder(prefix: str = "hw5-grade-") -> Iterator[Path]:
    """A temporary folder the sandbox's user may traverse (mode 711) but not list."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        base.chmod(0o711)
        yield base
    finally:
        shutil.rmtree(base, onerror=_make_removable)


def _make_removable(function, path, excinfo) -> None:
    """A script may leave folders without permissions (chmod 000): open them up, retry."""
    with contextlib.suppress(OSError):
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
