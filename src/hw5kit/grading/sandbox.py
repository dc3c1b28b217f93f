"""Running a submission's shell scripts without trusting them.

Every script runs on a throw-away copy of the submission (a *workspace*), with:

* a scrubbed environment: ``PATH`` (the fake gcloud first), an empty ``HOME`` and ``TMPDIR``,
  ``LANG``; nothing from the grader's environment (no ``GOOGLE_*``, ``CLOUDSDK_*``, ``AWS_*``,
  tokens or paths);
* limits: wall-clock time, CPU time, processes, file size, address space, open files, bytes of
  output (past which the script is killed) and bytes written into the workspace;
* ``gcloud`` = a small relay that forwards its arguments over a Unix socket to the fake gcloud
  running *in the grader* (``relay.py``): the script cannot read or forge the fake's state or
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
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import bwrap as bwrap_cmd
from . import runas
from .bwrap import SANDBOX_HOME, SANDBOX_PATH, SANDBOX_TMP
from .capture import Capture
from .folders import tree_size
from .limits import Limits, RunResult, SandboxUnavailable
from .relay import GcloudRelay, relay_python
from .runas import Identity

MODES = ("bwrap", "user", "none")
CHECK_EVERY = 0.01  # seconds between two checks of a running script (output, time, bytes)


# --- the sandbox ----------------------------------------------------------------------------


@dataclass
class Sandbox:
    mode: str
    limits: Limits = field(default_factory=Limits)
    bwrap: str | None = None
    python: str | None = None  # the relay client's interpreter
    # bubblewrap takes --size (0.7.0 and later); False: an older one, whose /tmp and /dev/shm
    # are folders the grader bounds itself (``_private_folders``, bwrap.py)
    tmpfs_size: bool = True
    # why bubblewrap is not used (user mode): what ``describe`` says is missing
    without_bwrap: str = ""

    # -- choosing a mode -- #
    @classmethod
    def detect(cls, requested: str = "auto", limits: Limits | None = None) -> Sandbox:
        limits = limits or Limits()
        python = relay_python()
        bwrap = shutil.which("bwrap")
        is_root = os.geteuid() == 0
        problems = []
        missing = "--sandbox user was asked for"
        if requested in ("auto", "bwrap"):
            if bwrap is None:
                problems.append("bubblewrap (bwrap) is not installed")
                missing = "bubblewrap is not installed: install it for full isolation"
            elif python is None:
                problems.append("no /usr/bin/python3 for the gcloud relay inside bubblewrap")
                missing = problems[-1]
            else:
                box = cls("bwrap", limits, bwrap, python)
                error = box.probe()
                if error is not None and bwrap_cmd.lacks_size(error):
                    box.tmpfs_size = False  # bubblewrap before 0.7.0: the grader bounds /tmp
                    error = box.probe()
                if error is None:
                    return box
                missing = bwrap_cmd.why_it_fails(error)
                problems.append(missing)
            if requested == "bwrap":
                raise SandboxUnavailable("; ".join(problems))
        if requested in ("auto", "user"):
            if is_root and python is not None:
                return cls("user", limits, None, python, without_bwrap=missing)
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
            + ". "
            + (
                "Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; `nox -s grade` "
                "does it when run as root), run"
                if bwrap is None
                else "Make bubblewrap work here (above), run"
            )
            + " the grader as root, or pass --sandbox none to run the scripts as yourself (only "
            "for your own submission)."
        )

    def describe(self) -> str:
        own = os.geteuid() == 0
        if self.mode == "bwrap":
            who = "as a uid of its own per script" if own else f"as uid {os.getuid()}"
            tmp = ""
            if not self.tmpfs_size:
                tmp = (
                    f" (this bubblewrap has no --size: /tmp and /dev/shm are folders the grader "
                    f"holds to {self.limits.tmpfs // 2**20} MiB)"
                )
            return (
                f"bubblewrap {who}: no network, private /tmp{tmp}, read-only system, only the "
                "workspace writable"
            )
        if self.mode == "user":
            return (
                "a uid of its own per script, without bubblewrap: the grader's files are "
                "protected by ownership only, and the network is not cut off ("
                + (self.without_bwrap or "install bubblewrap for full isolation")
                + ")"
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
            private = self._private_folders(base, "probe", identity)
            true = ["/bin/sh", "-c", "exit 0"]
            assert self.bwrap is not None
            cmd = bwrap_cmd.command(
                self.bwrap, self.limits, base, workspace, true, None, identity, private
            )
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
                self._release_private(private)
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

    def _private_folders(
        self, parent: Path, token: str, identity: Identity | None
    ) -> tuple[Path, Path] | None:
        """``/tmp`` and ``/dev/shm`` for a bubblewrap without ``--size`` (None with one): two
        folders of the run's own in ``parent``, each a tmpfs of ``limits.tmpfs`` bytes where
        the grader may mount, and counted with the workspace every check (``_execute``)."""
        if self.mode != "bwrap" or self.tmpfs_size:
            return None
        folders = []
        for name in ("tmp", "shm"):
            path = parent / f"{name}-{token}"
            path.mkdir(mode=0o700)
            runas.mount_workspace(path, self.limits.tmpfs, self.limits.workspace_files)
            if identity is not None:
                os.chown(path, identity.uid, identity.gid)
            folders.append(path)
        return folders[0], folders[1]

    def _release_private(self, private: tuple[Path, Path] | None) -> None:
        for path in private or ():
            if runas.is_mounted(path):
                runas.unmount(path)
            shutil.rmtree(path, ignore_errors=True)  # what is left: with the grading folder

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
        private = None
        if self.mode == "bwrap":
            environ = self.environment(SANDBOX_HOME, SANDBOX_TMP, relay.bin_dir, token)
            private = self._private_folders(workspace.parent, token, identity)
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
            assert self.bwrap is not None
            cmd = bwrap_cmd.command(
                self.bwrap, self.limits, base, workspace, inner, relay.bin_dir, identity, private
            )
        else:
            cmd = inner
        relay.reset_count()
        relay.allow(identity)
        try:
            return self._execute(
                self._limited(cmd, identity), workspace, environ, token, identity, homes, private
            )
        finally:
            relay.allow(None)
            if identity is not None:
                runas.remove_owned(identity)
            self._release_private(private)

    def _used(
        self,
        cwd: Path,
        homes: list[Path],
        tracker: runas.Tracker | None,
        shared: bool,
        private: tuple[Path, Path] | None = None,
    ) -> tuple[int, int, int, int]:
        """(bytes, entries, hidden processes, bytes in /tmp and /dev/shm) the run holds: its
        workspace and home, the deleted files its processes keep open, (``shared``) its files in
        the machine's world-writable folders, and (``private``) the folders a bubblewrap
        without ``--size`` has as /tmp and /dev/shm (their entries count with the workspace's)."""
        size, entries = tree_size(cwd, self.limits.workspace_files)
        for home in homes:
            more, count = tree_size(home, self.limits.workspace_files)
            size, entries = size + more, entries + count
        private_bytes = 0
        for folder in private or ():
            more, count = tree_size(folder, self.limits.workspace_files)
            private_bytes, entries = private_bytes + more, entries + count
        if tracker is None:
            return size, entries, 0, private_bytes
        identity = tracker.identity
        held = tracker.held()
        size += held.deleted
        if shared and self.mode == "user":
            size += runas.owned_bytes(identity, tree_size)
        return size, entries, held.hidden, private_bytes

    def _execute(
        self,
        cmd: list[str],
        cwd: Path,
        env: dict[str, str],
        token: str,
        identity: Identity | None,
        homes: list[Path] | None = None,
        private: tuple[Path, Path] | None = None,
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

        out = Capture(proc.stdout, lim.output_kept, count)
        err = Capture(proc.stderr, lim.output_kept, count)
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
                used = self._used(cwd, homes or [], tracker, shared, private)
                size, entries, hidden, private_bytes = used
                if size > lim.workspace:
                    killed = (
                        f"it wrote more than {lim.workspace // 2**20} MiB (its workspace, "
                        "temporary files and deleted files it kept open)"
                    )
                elif private_bytes > lim.tmpfs:
                    killed = f"it wrote more than {lim.tmpfs // 2**20} MiB into /tmp and /dev/shm"
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
