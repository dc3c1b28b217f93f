"""Running a submission's shell scripts without trusting them.

Every script runs on a throw-away copy of the submission (a *workspace*), with:

* a scrubbed environment: ``PATH`` (the fake gcloud first), an empty ``HOME`` and ``TMPDIR``,
  ``LANG``; nothing from the grader's environment (no ``GOOGLE_*``, ``CLOUDSDK_*``, ``AWS_*``,
  tokens or paths);
* limits: wall-clock time, CPU time, processes, file size, address space, open files, bytes of
  output (past which the script is killed) and bytes written into the workspace;
* ``gcloud`` = a small relay that forwards its arguments over a Unix socket to the fake gcloud
  running *in the grader* (``GcloudRelay``): the script cannot read or forge the fake's state or
  call log; each call runs bounded in time and memory, and reads only regular files inside the
  workspace (``cloud.py``, ``hw5kit.confined``);
* as root, a **uid of its own** per run (``runas.py``): every process the script starts is killed
  when it ends, only that run can use the relay's socket, and the bytes it holds on disk
  (workspace, the machine's world-writable folders, deleted files kept open) are counted; where
  the grader may mount, the workspace is a tmpfs of the workspace's size.

Isolation modes (``Sandbox.detect``):

``bwrap``
    bubblewrap: new user, PID, network, IPC and UTS namespaces (no network at all), a read-only
    view of ``/usr`` and a few files of ``/etc`` only (the grader's home, sources, credentials
    and other submissions are not visible), a private size-limited ``/tmp``, read-only ``/``,
    the workspace the only writable folder on disk, every process killed with the sandbox. As
    root, bubblewrap itself runs as the run's own unprivileged uid.
``user``
    no usable bubblewrap but the grader runs as root (a container that refuses user namespaces):
    scripts run as the run's own unprivileged uid, with no new privileges (``setpriv``), the
    same limits and the same end. The grader's files (owned by root) cannot be changed and
    root's home cannot be read, but the rest of the file system is visible and the network is
    not cut off.
``none``
    neither: the scripts run as the grader's own user. Only for grading your own submission;
    never chosen automatically.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import socketserver
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import runas
from .runas import Identity

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
CHECK_EVERY = 0.01  # seconds between two checks of a running script (output, time, bytes)
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
    gcloud_timeout: float = 20.0  # wall-clock seconds per gcloud call (in the grader)
    gcloud_memory: int = 512 * 2**20  # address space a gcloud call may use (in the grader)


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
        if not relay.admits(self.connection):
            return  # another run's leftover, or anyone else: no answer at all
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
        self._uid = os.getuid()  # the only caller admitted (the current run's identity)
        self.refused = 0

    def allow(self, identity: Identity | None) -> None:
        """Admit the run of ``identity`` only (None: the grader's own uid, for ``none`` mode and a
        grader that is not root): the socket becomes that uid's, mode 0600."""
        uid = identity.uid if identity else os.getuid()
        gid = identity.gid if identity else os.getgid()
        with self._lock:
            self._uid = uid
        os.chown(self.socket_path, uid, gid)
        os.chmod(self.socket_path, 0o600)

    def admits(self, connection: socket.socket) -> bool:
        """The caller's uid, as the kernel tells it (SO_PEERCRED), is the current run's."""
        try:
            raw = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            _pid, uid, _gid = struct.unpack("3i", raw)
        except OSError:
            return False
        with self._lock:
            ok = uid == self._uid
            self.refused += not ok
        return ok

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
        self.allow(None)  # each run admits its own identity (``allow``)
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
                    "--sandbox user needs the grader to run as root (it runs each script as a "
                    "uid of its own)" + ("" if python else " and /usr/bin/python3")
                )
            problems.append(
                "the grader does not run as root, so it cannot give a script a uid of its own"
            )
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
        own = os.geteuid() == 0
        if self.mode == "bwrap":
            who = "as a uid of its own per script" if own else f"as uid {os.getuid()}"
            return (
                f"bubblewrap {who}: no network, private /tmp, read-only system, only the "
                "workspace writable"
            )
        if self.mode == "user":
            return (
                "a uid of its own per script, without bubblewrap: the grader's files are "
                "protected by ownership only, and the network is not cut off (install "
                "bubblewrap for full isolation)"
            )
        return (
            "NO ISOLATION (--sandbox none): scripts run as the grader's own user with limits "
            "only; use this for your own submission, never for other people's"
        )

    def identity(self) -> Identity | None:
        """A fresh uid for one run (root, bwrap and user modes); None: the grader's own."""
        if os.geteuid() != 0 or self.mode not in ("bwrap", "user"):
            return None
        return runas.fresh_identity()

    def probe(self) -> str | None:
        """Run ``true`` in the sandbox; the error text if that fails."""
        identity = self.identity()
        with tempfile.TemporaryDirectory(prefix="hw5-grade-probe-") as tmp:
            base = Path(tmp)
            base.chmod(0o711)
            workspace = base / "ws"
            workspace.mkdir()
            self.prepare_workspace(workspace, identity)
            cmd = self._bwrap_command(base, workspace, ["/bin/sh", "-c", "exit 0"], None, identity)
            try:
                done = subprocess.run(
                    self._limited(cmd, identity),
                    capture_output=True,
                    timeout=20,
                    env={"PATH": "/usr/bin:/bin"},
                    **(identity.popen() if identity else {}),
                )
            except (OSError, subprocess.SubprocessError) as exc:
                return str(exc)
            finally:
                if identity:
                    runas.end_all(identity)
            if done.returncode != 0:
                return (done.stderr or done.stdout).decode(errors="replace").strip()[:300] or (
                    f"exit status {done.returncode}"
                )
        return None

    # -- workspace -- #
    def make_workspace(self, workspace: Path) -> bool:
        """Create the (empty) workspace folder; a tmpfs of the workspace's size where the
        grader may mount (True then: ``release_workspace`` unmounts it)."""
        workspace.mkdir(mode=0o700)
        lim = self.limits
        if self.mode == "none":
            return False
        return runas.mount_workspace(workspace, lim.workspace + 2**20, lim.workspace_files + 1000)

    def release_workspace(self, workspace: Path) -> None:
        if runas.is_mounted(workspace):
            runas.unmount(workspace)

    def prepare_workspace(self, workspace: Path, identity: Identity | None) -> None:
        """Hand the workspace to the run's identity (nothing to do without one)."""
        if identity is None:
            return
        os.chown(workspace, identity.uid, identity.gid)
        for dirpath, dirnames, filenames in os.walk(workspace):
            for name in [*dirnames, *filenames]:
                with contextlib.suppress(OSError):
                    path = os.path.join(dirpath, name)
                    os.chown(path, identity.uid, identity.gid, follow_symlinks=False)

    # -- commands -- #
    def _limited(self, cmd: list[str], identity: Identity | None) -> list[str]:
        """``cmd`` under resource limits set by bash's ulimit (safe with threads, unlike
        preexec_fn), then exec'd; without new privileges (no set-uid program works) in
        ``user`` mode, where bubblewrap does not do it."""
        lim = self.limits
        # RLIMIT_NPROC counts every process of the user: a run's own uid has none before it
        processes = lim.processes + (8 if identity else len(runas.processes_of(os.getuid())))
        script = (
            f"ulimit -S -H -u {processes} -f {lim.file_size // 1024} -t {lim.cpu_seconds} "
            f"-v {lim.address_space // 1024} -n {lim.open_files} -c 0 || exit 125; "
            'exec "$@"'
        )
        prefix = []
        setpriv = shutil.which("setpriv", path="/usr/bin:/bin")
        if self.mode == "user" and setpriv:
            prefix = [setpriv, "--no-new-privs", "--"]
        return [*prefix, "/bin/bash", "-c", script, "hw5-limits", *cmd]

    def _bwrap_command(
        self,
        base: Path,
        workspace: Path,
        cmd: list[str],
        bin_dir: Path | None,
        identity: Identity | None,
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
        etc = base / f"etc-{identity.uid if identity else os.getuid()}"
        etc.mkdir(exist_ok=True)
        uid = identity.uid if identity else os.getuid()
        gid = identity.gid if identity else os.getgid()
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
        identity: Identity | None = None,
    ) -> RunResult:
        """``bash SCRIPT ARGS`` in ``workspace`` (which must sit under ``base``), as
        ``identity`` (default: a fresh one when the grader is root)."""
        identity = identity or self.identity()
        token = secrets.token_hex(8)
        self.prepare_workspace(workspace, identity)
        homes: list[Path] = []
        if self.mode == "bwrap":
            environ = self.environment(SANDBOX_HOME, SANDBOX_TMP, relay.bin_dir, token)
        else:
            home = workspace.parent / f"home-{token}"
            home.mkdir(mode=0o700)
            if identity is not None:
                os.chown(home, identity.uid, identity.gid)
            homes.append(home)
            environ = self.environment(str(home), str(home), relay.bin_dir, token)
        environ.update(env or {})
        inner = ["/bin/bash", str(script), *args]
        if self.mode == "bwrap":
            cmd = self._bwrap_command(base, workspace, inner, relay.bin_dir, identity)
        else:
            cmd = inner
        relay.reset_count()
        relay.allow(identity)
        try:
            return self._execute(
                self._limited(cmd, identity), workspace, environ, token, identity, homes
            )
        finally:
            relay.allow(None)
            if identity is not None:
                runas.remove_owned(identity)

    def _used(
        self, cwd: Path, homes: list[Path], tracker: runas.Tracker | None, shared: bool
    ) -> tuple[int, int, int]:
        """(bytes, entries, hidden processes) the run holds: its workspace and home, the
        deleted files its processes keep open, and (``shared``) its files in the machine's
        world-writable folders."""
        size, entries = tree_size(cwd, self.limits.workspace_files)
        for home in homes:
            more, count = tree_size(home, self.limits.workspace_files)
            size, entries = size + more, entries + count
        if tracker is None:
            return size, entries, 0
        identity = tracker.identity
        held = tracker.held()
        size += held.deleted
        if shared and self.mode == "user":
            size += runas.owned_bytes(identity, tree_size)
        return size, entries, held.hidden

    def _execute(
        self,
        cmd: list[str],
        cwd: Path,
        env: dict[str, str],
        token: str,
        identity: Identity | None,
        homes: list[Path] | None = None,
    ) -> RunResult:
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
                **(identity.popen() if identity else {}),
            )
        except OSError as exc:
            return RunResult(cmd, None, "", f"could not start: {exc}", 0.0, killed=str(exc))

        def count(n: int) -> None:
            state["bytes"] += n

        out = _Capture(proc.stdout, lim.output_kept, count)
        err = _Capture(proc.stderr, lim.output_kept, count)
        next_shared_check = 0.0
        tracker = runas.Tracker(identity) if identity else None
        while True:
            try:
                proc.wait(timeout=CHECK_EVERY)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if out.total + err.total > lim.output:
                killed = f"it printed more than {lim.output // 2**20} MiB"
            elif now - start > lim.timeout:
                killed = f"the time limit ({lim.timeout:g} s)"
            else:  # page-cache writes run at 1-2 GB/s: some 20 MiB between two checks
                shared = now >= next_shared_check
                if shared:
                    next_shared_check = now + 0.5
                size, entries, hidden = self._used(cwd, homes or [], tracker, shared)
                if size > lim.workspace:
                    killed = (
                        f"it wrote more than {lim.workspace // 2**20} MiB (its workspace, "
                        "temporary files and deleted files it kept open)"
                    )
                elif entries > lim.workspace_files:
                    killed = f"it created more than {lim.workspace_files} files in the workspace"
                elif hidden:
                    killed = (
                        "a process it started hid its open files from the grader "
                        "(made itself non-dumpable)"
                    )
            if killed:
                break
        self._kill(proc, token, identity)
        for capture in (out, err):
            capture.thread.join(timeout=5)
        duration = time.monotonic() - start
        code = proc.returncode
        return RunResult(cmd, code, out.text(), err.text(), duration, killed, out.total + err.total)

    def _kill(self, proc: subprocess.Popen, token: str, identity: Identity | None) -> None:
        """Stop the script and everything it started (also when it ended by itself: anything
        it left running in the background goes too). With a uid of its own, every process of
        that uid; otherwise the process group, the PID namespace (bwrap) or the processes
        carrying the run's token (none mode)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if identity is not None:
            runas.end_all(identity)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            return
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
        with contextlib.suppress(OSError), os.scandir(base / "runs") as runs:
            for entry in runs:  # a workspace still mounted (the grading stopped half-way)
                if runas.is_mounted(Path(entry.path)):
                    runas.unmount(Path(entry.path))
        shutil.rmtree(base, onerror=functools.partial(_make_removable, str(base)))


def _make_removable(base: str, function, path, excinfo) -> None:
    """A script may leave folders without permissions (chmod 000): open them up, retry. Only
    inside ``base`` (the grading folder itself failing to go must not change its parent, such
    as /tmp), and never through a link: the folder is opened with O_NOFOLLOW and changed by
    descriptor, and a link itself is only unlinked (``chmod`` by name would follow a link a
    script planted, to any file of the machine)."""
    path = os.fspath(path)
    if not path.startswith(base.rstrip("/") + "/"):
        return
    with contextlib.suppress(OSError):
        parent = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchmod(parent, 0o700)
            info = os.stat(os.path.basename(path), dir_fd=parent, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                child = os.open(
                    os.path.basename(path),
                    os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                    dir_fd=parent,
                )
                try:
                    os.fchmod(child, 0o700)
                finally:
                    os.close(child)
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(os.path.basename(path), dir_fd=parent)
        finally:
            os.close(parent)
