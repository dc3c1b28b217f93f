"""A user of its own for each script run, and what the grader does with it.

When the grader runs as root, every script runs as a fresh uid (and gid of the same number),
never used before on this machine and by nothing else. That gives, without cgroups, namespaces
or any capability beyond root's ordinary ``setuid`` and ``kill`` (so also in a container that
refuses user namespaces, where bubblewrap cannot run):

* **an end**: ``kill(-1, SIGKILL)`` sent *as that uid* reaches every process the script started,
  whatever it did (``setsid``, ``env -i``, double forks, a new process group); repeated until
  ``/proc`` shows none left (``end_all``);
* **a count**: ``RLIMIT_NPROC`` counts that uid's processes only;
* **a door**: the gcloud relay's socket is owned by that uid with mode 0600, and the relay checks
  the caller's uid (``SO_PEERCRED``), so a process left by another run cannot use it;
* **a ledger**: the bytes the run holds on disk are its workspace, the files that uid owns in the
  machine's world-writable folders (``/tmp``, ``/var/tmp``, ``/dev/shm``, ``/run/lock``), and
  the deleted files its processes still hold open (``Tracker``, read from ``/proc``); those
  files are removed when the run ends (``remove_owned``).

Where the grader may mount (root with ``CAP_SYS_ADMIN``), the workspace is moreover a tmpfs of
the workspace's size (``mount_workspace``), a hard bound the periodic checks cannot miss.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..confined import libc

SHARED_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")  # noqa: S108
# Fresh uids come from here when the whole uid range is mapped (no user namespace around the
# grader); otherwise from the mapped range, above the ids of ordinary accounts.
FRESH_FIRST = 1_500_000_000
FRESH_COUNT = 500_000_000
MIN_FRESH = 100_000
HIDING_AFTER = 0.1  # seconds a process may keep its open files from the grader's sight
MS_NOSUID = 2
MS_NODEV = 4
MNT_DETACH = 2


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int

    def popen(self) -> dict:
        """``subprocess.Popen`` arguments that start a process as this identity."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def _ranges(path: str) -> list[tuple[int, int]]:
    out = []
    with contextlib.suppress(OSError), open(path) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 3:
                inner, _outer, count = (int(p) for p in parts)
                out.append((inner, inner + count))
    return out or [(0, 2**32 - 1)]


def _known_ids() -> set[int]:
    ids: set[int] = set()
    for path in ("/etc/passwd", "/etc/group"):
        with contextlib.suppress(OSError), open(path) as fh:
            for line in fh:
                parts = line.split(":")
                if len(parts) > 2 and parts[2].isdigit():
                    ids.add(int(parts[2]))
                if path == "/etc/passwd" and len(parts) > 3 and parts[3].isdigit():
                    ids.add(int(parts[3]))
    return ids


def fresh_identity(rng: random.Random | None = None) -> Identity:
    """A uid/gid pair no account, group or running process uses."""
    rng = rng or random.SystemRandom()
    uids, gids = _ranges("/proc/self/uid_map"), _ranges("/proc/self/gid_map")
    candidates = []
    for low, high in uids:
        for glow, ghigh in gids:
            start, end = max(low, glow, MIN_FRESH), min(high, ghigh, 2**32 - 2)
            if end - start > 1000:
                candidates.append((start, end))
    window = (FRESH_FIRST, FRESH_FIRST + FRESH_COUNT)
    if any(start <= window[0] and window[1] <= end for start, end in candidates):
        candidates = [window]
    if not candidates:
        raise OSError("no unused uid range is mapped here")
    known = _known_ids() | {65534}
    for _ in range(100):
        start, end = rng.choice(candidates)
        uid = rng.randrange(start, end)
        if uid not in known and not processes_of(uid):
            return Identity(uid, uid)
    raise OSError("could not find an unused uid")


def _status_ids(pid: str) -> set[int]:
    """The real, effective, saved and file-system uids of a live process (``/proc/PID/status``
    is readable whatever the process did, unlike ``/proc/PID``'s owner); none for a zombie,
    which holds nothing but its process ID until its parent (or init) reaps it."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("State:") and line.split()[1] in ("Z", "X"):
                return set()
            if line.startswith("Uid:"):
                return {int(v) for v in line.split()[1:]}
    return set()


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                if uid in _status_ids(entry.name):
                    found.append(int(entry.name))
    return found


def end_all(identity: Identity, rounds: int = 50) -> bool:
    """Kill every process of ``identity``; True when none is left.

    ``kill -KILL -1`` run as the identity signals every process that identity may signal,
    which are exactly its own (the shell that sends it excepted, and it exits)."""
    for _ in range(rounds):
        if not processes_of(identity.uid):
            return True
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["/bin/sh", "-c", "kill -KILL -1 2>/dev/null; exit 0"],
                env={"PATH": "/usr/bin:/bin"},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
                **identity.popen(),
            )
        time.sleep(0.02)
    return not processes_of(identity.uid)


# --- what a run holds on disk ---------------------------------------------------------------


@contextlib.contextmanager
def _file_identity(identity: Identity) -> Iterator[None]:
    """This thread (only: Linux keeps them per thread) reads /proc with the identity's file
    system ids, so that ``/proc/PID/fd`` of its processes opens without ``CAP_SYS_PTRACE``
    (which containers do not grant)."""
    lib = libc()
    if lib is None or os.geteuid() != 0:
        yield
        return
    lib.setfsgid(identity.gid)
    lib.setfsuid(identity.uid)
    try:
        yield
    finally:
        lib.setfsuid(0)
        lib.setfsgid(0)


def _deleted_open(pid: int, seen: set[tuple[int, int]]) -> int:
    total = 0
    fd_dir = f"/proc/{pid}/fd"
    for name in os.listdir(fd_dir):
        try:
            info = os.stat(f"{fd_dir}/{name}")
        except PermissionError:
            raise  # /proc refuses this reader: try another (``Tracker.held``)
        except OSError:
            continue  # closed meanwhile
        else:
            key = (info.st_dev, info.st_ino)
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 0 and key not in seen:
                seen.add(key)
                total += info.st_blocks * 512
    return total


@dataclass
class Held:
    deleted: int = 0  # bytes of deleted files still open
    hidden: int = 0  # processes whose open files the grader could not see


class Tracker:
    """The processes of one run's identity, found cheaply enough to look every 10 ms: a
    process that is not the identity's is remembered as such (a uid does not change without
    privileges the run does not have), so each check reads only new processes' status."""

    def __init__(self, identity: Identity):
        self.identity = identity
        self.others: set[str] = set()
        self.hiding: dict[int, float] = {}  # pid -> since when it hides its files

    def pids(self) -> list[int]:
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or name in self.others:
                continue
            try:
                ids = _status_ids(name)
            except (OSError, ValueError):
                continue
            if self.identity.uid in ids:
                found.append(int(name))
            elif ids:
                self.others.add(name)
        return found

    def held(self) -> Held:
        """Bytes of deleted files the identity's processes keep open (anywhere). A process
        whose files cannot be read and whose ``/proc/PID/fd`` the kernel gives to root (what it
        does to a non-dumpable process) is counted as hidden once it has been so for
        ``HIDING_AFTER`` seconds (a process is so for a few milliseconds during an ``execve``)."""
        held = Held()
        seen: set[tuple[int, int]] = set()
        now = time.monotonic()
        hiding: dict[int, float] = {}
        for pid in self.pids():
            try:
                held.deleted += _deleted_open(pid, seen)
                continue
            except FileNotFoundError:
                continue  # ended meanwhile
            except PermissionError:
                pass
            try:
                with _file_identity(self.identity):
                    held.deleted += _deleted_open(pid, seen)
            except FileNotFoundError:
                continue
            except PermissionError:
                with contextlib.suppress(OSError):
                    if os.stat(f"/proc/{pid}/fd").st_uid != self.identity.uid:
                        hiding[pid] = self.hiding.get(pid, now)  # non-dumpable
        self.hiding = hiding
        held.hidden = sum(1 for since in hiding.values() if now - since >= HIDING_AFTER)
        return held


def _walk_owned(
    top: str, uid: int, visit: Callable[[os.DirEntry, os.stat_result], None], depth: int = 0
) -> None:
    """Entries owned by ``uid`` in ``top`` and in the world-writable folders below it."""
    if depth > 6:
        return
    with contextlib.suppress(OSError), os.scandir(top) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if info.st_uid == uid:
                    visit(entry, info)
                elif stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_IWOTH:
                    _walk_owned(entry.path, uid, visit, depth + 1)


def owned_bytes(identity: Identity, tree_size: Callable[[Path, int], tuple[int, int]]) -> int:
    """Bytes the identity's files take in the machine's world-writable folders."""
    total = 0

    def add(entry: os.DirEntry, info: os.stat_result) -> None:
        nonlocal total
        if stat.S_ISDIR(info.st_mode):
            total += tree_size(Path(entry.path), 100000)[0]
        else:
            total += info.st_blocks * 512

    for top in SHARED_DIRS:
        _walk_owned(top, identity.uid, add)
    return total


def remove_owned(identity: Identity) -> int:
    """Remove what the identity left in the world-writable folders; how many entries."""
    removed = 0

    def remove(entry: os.DirEntry, info: os.stat_result) -> None:
        nonlocal removed
        removed += 1
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(entry.path, onerror=lambda *a: None)
        else:
            os.unlink(entry.path)

    for top in SHARED_DIRS:
        _walk_owned(top, identity.uid, remove)
    return removed


# --- a size-limited workspace --------------------------------------------------------------


def _mount_tmpfs(path: Path, size: int, inodes: int) -> None:
    lib = libc()
    if lib is None:
        raise OSError("no libc")
    options = f"size={size},nr_inodes={inodes},mode=0700".encode()
    if lib.mount(b"hw5-workspace", os.fsencode(path), b"tmpfs", MS_NOSUID | MS_NODEV, options):
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def unmount(path: Path) -> None:
    lib = libc()
    if lib is not None:
        lib.umount2(os.fsencode(path), MNT_DETACH)


@cache
def can_mount() -> bool:
    """Whether the grader may mount a tmpfs here (root with CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory(prefix="hw5-mount-probe-") as tmp:
        try:
            _mount_tmpfs(Path(tmp), 2**20, 64)
        except OSError:
            return False
        unmount(Path(tmp))
    return True


def mount_workspace(path: Path, size: int, inodes: int) -> bool:
    """Make ``path`` (an empty folder) a tmpfs of ``size`` bytes; False when not possible."""
    if not can_mount():
        return False
    try:
        _mount_tmpfs(path, size, inodes)
    except OSError:
        return False
    return True


def is_mounted(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    return False
