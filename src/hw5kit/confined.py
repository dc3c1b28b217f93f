"""Reading the files a command line names, without trusting the name.

The fake gcloud and the fake Cloud Build read files that a gcloud command line names (``--config``,
``--openapi-spec``, the source folder, the Dockerfiles a build step names, ``.gcloudignore``).
Under the grader those names come from an untrusted submission, and the reads happen in the
grader's process (as root), so every read goes through one of two readers:

``Confined(root, uid, gid)``
    the grader's reader. A name is resolved beneath ``root`` (the run's workspace) one component
    at a time, following no link at all: ``openat2`` with ``RESOLVE_BENEATH |
    RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`` where the kernel has it
    (Linux 5.6+), else a walk of ``openat(dir_fd, component, O_NOFOLLOW)`` calls. The last
    component is opened non-blocking (a FIFO cannot block), then checked *on the opened
    descriptor*: a regular file, readable by the run's own uid (a hard link to a root-only file
    is refused), and read from that same descriptor with a size cap. Outside the root, missing,
    a link, a FIFO, a device, a folder, not readable by the script: one and the same message,
    which depends only on what the command line said, so it tells nothing about the host.
``Plain()``
    the fake gcloud as a command-line tool (tests, the pipeline's gcp target against the fake):
    names are opened as gcloud would (links followed), but still non-blocking, regular files
    only and with a size cap, so ``--config=/dev/zero`` or a FIFO fails at once there too.

Both hand out ``Folder`` objects (an open directory descriptor) for the source folder of
``gcloud builds submit``: its listing (what gets uploaded) and the files a build step reads
are taken from that descriptor, never by a path looked up again.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

MAX_FILE = 2**20  # a config, a spec, a Dockerfile, an ignore file: a few kB in practice
MAX_ENTRIES = 20000  # entries listed in an uploaded folder
MAX_DEPTH = 32

# Linux's openat2(2): same number on every architecture (the generic syscall table, 5.6+).
SYS_OPENAT2 = 437
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
CONFINED_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

CONFINED_REASON = (
    "no regular file of that name inside the submission (the grader's fake gcloud reads only "
    "regular files inside the submission, and follows no link)"
)
CONFINED_FOLDER_REASON = (
    "no folder of that name inside the submission (the grader's fake gcloud uploads only "
    "folders inside the submission, and follows no link)"
)
PLAIN_REASON = "not a readable regular file"
PLAIN_FOLDER_REASON = "not a readable folder"


class Unreadable(ValueError):
    """A name that gives no file to read. ``str()`` is the same for every cause (missing,
    outside, a link, not a regular file): it names the flag and repeats what was given."""

    def __init__(self, given: str, flag: str, reason: str):
        self.given = given
        self.flag = flag
        self.reason = reason
        super().__init__(f"{flag}: [{given}]: {reason}")


class TooLarge(Unreadable):
    """A regular file inside the root, over the size cap (its size is the submission's own)."""

    def __init__(self, given: str, flag: str, limit: int):
        super().__init__(given, flag, f"larger than {limit // 2**10} KiB: refused")
        self.limit = limit


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


@cache
def libc() -> ctypes.CDLL | None:
    """The C library (for the system calls Python does not wrap), or None."""
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int:
    lib = libc()
    if lib is None:
        raise OSError(errno.ENOSYS, "no libc")
    how = _OpenHow(flags, 0, resolve)
    fd = lib.syscall(SYS_OPENAT2, dir_fd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return fd


@cache
def openat2_works() -> bool:
    """Whether openat2 is there (Linux 5.6+, and no seccomp filter refusing it, as some
    container runtimes do): tried once on ``/``."""
    try:
        fd = _openat2(-100, "/", DIR_FLAGS, RESOLVE_NO_SYMLINKS)  # -100: AT_FDCWD
    except OSError:
        return False
    os.close(fd)
    return True


def readable_by(info: os.stat_result, uid: int | None, gid: int | None) -> bool:
    """Whether ``uid`` (with ``gid`` its only group) may read the file ``info`` describes,
    decided as the kernel does: owner bits, else group bits, else the others' bits."""
    if uid is None or uid == 0:
        return True
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IRUSR)
    if gid is not None and info.st_gid == gid:
        return bool(info.st_mode & stat.S_IRGRP)
    return bool(info.st_mode & stat.S_IROTH)


def read_fd(fd: int, limit: int) -> bytes | None:
    """At most ``limit`` bytes from ``fd``; None when there are more."""
    chunks = []
    total = 0
    while total <= limit:
        chunk = os.read(fd, min(2**16, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return None if total > limit else b"".join(chunks)


# --- listing a folder (what `gcloud builds submit` uploads) --------------------------------


@dataclass
class Listing:
    """The entries under a folder, as paths relative to it with ``/`` separators."""

    files: dict[str, int] = field(default_factory=dict)  # regular file -> size
    dirs: set[str] = field(default_factory=set)
    links: set[str] = field(default_factory=set)  # uploaded as links, never followed here
    ignored: list[str] = field(default_factory=list)
    truncated: bool = False

    def __contains__(self, rel: str) -> bool:
        return rel in self.files or rel in self.dirs or rel in self.links


Chooser = Callable[[str, bool], bool]  # (relative path, is a folder) -> uploaded


def _list(fd: int, chooser: Chooser | None, max_entries: int) -> Listing:
    out = Listing()
    count = 0
    stack: list[tuple[int, str, int]] = [(os.dup(fd), "", 0)]
    try:
        while stack:
            dir_fd, prefix, depth = stack.pop()
            try:
                with os.scandir(dir_fd) as entries:
                    items = sorted(entries, key=lambda e: e.name)
                for entry in items:
                    count += 1
                    if count > max_entries:
                        out.truncated = True
                        return out
                    rel = f"{prefix}{entry.name}"
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    is_dir = stat.S_ISDIR(info.st_mode)
                    if chooser is not None and not chooser(rel, is_dir):
                        out.ignored.append(rel)
                        continue
                    if is_dir:
                        out.dirs.add(rel)
                        if depth + 1 >= MAX_DEPTH:
                            out.truncated = True
                            continue
                        with contextlib.suppress(OSError):
                            child = os.open(entry.name, DIR_FLAGS, dir_fd=dir_fd)
                            stack.append((child, rel + "/", depth + 1))
                    elif stat.S_ISLNK(info.st_mode):
                        out.links.add(rel)
                    elif stat.S_ISREG(info.st_mode):
                        out.files[rel] = info.st_size
            finally:
                os.close(dir_fd)
    finally:
        for dir_fd, _prefix, _depth in stack:
            with contextlib.suppress(OSError):
                os.close(dir_fd)
    return out


# --- the readers ---------------------------------------------------------------------------


class Folder:
    """An open folder: list it, read the files beneath it. Close it (or use ``with``)."""

    def __init__(self, fd: int, shown: str, reader: Files):
        self.fd = fd
        self.shown = shown
        self.reader = reader

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def listing(self, chooser: Chooser | None = None, max_entries: int = MAX_ENTRIES) -> Listing:
        return _list(self.fd, chooser, max_entries)

    def read(
        self, rel: str, *, flag: str, shown: str | None = None, limit: int = MAX_FILE
    ) -> bytes:
        """The bytes of ``rel`` (relative to this folder, ``/``-separated, no ``..``)."""
        return self.reader.read_beneath(self.fd, rel, flag=flag, shown=shown or rel, limit=limit)

    def has(self, name: str) -> bool:
        """Whether this folder has an entry ``name`` (a link counts, unfollowed)."""
        if "/" in name or name in ("", ".", ".."):
            return False
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except (OSError, ValueError):
            return False
        return True


class Files:
    """The interface both readers share."""

    reason = PLAIN_REASON
    folder_reason = PLAIN_FOLDER_REASON

    def read(self, given: str, cwd: str | Path, *, flag: str, limit: int = MAX_FILE) -> bytes:
        raise NotImplementedError

    def folder(self, given: str, cwd: str | Path, *, flag: str) -> Folder:
        raise NotImplementedError

    def read_beneath(self, dir_fd: int, rel: str, *, flag: str, shown: str, limit: int) -> bytes:
        raise NotImplementedError

    def describe(self, given: str, cwd: str | Path) -> str:
        """How a name is shown in records (no file system access)."""
        path = given if os.path.isabs(given) else os.path.join(str(cwd), given)
        return os.path.normpath(path)

    # -- shared -- #
    def _finish(self, fd: int, given: str, flag: str, limit: int) -> bytes:
        """Check the opened descriptor and read it; always closes ``fd``."""
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or not self._may_read(info):
                raise Unreadable(given, flag, self.reason)
            if info.st_size > limit:
                raise TooLarge(given, flag, limit)
            data = read_fd(fd, limit)
        except OSError:
            raise Unreadable(given, flag, self.reason) from None
        finally:
            os.close(fd)
        if data is None:
            raise TooLarge(given, flag, limit)
        return data

    def _may_read(self, info: os.stat_result) -> bool:
        return True


class Plain(Files):
    """As gcloud opens files (links followed, any path), but non-blocking, regular files only,
    size-capped."""

    def read(self, given: str, cwd: str | Path, *, flag: str, limit: int = MAX_FILE) -> bytes:
        try:
            fd = os.open(self.describe(given, cwd), FILE_FLAGS & ~os.O_NOFOLLOW)
        except (OSError, ValueError):
            raise Unreadable(given, flag, self.reason) from None
        return self._finish(fd, given, flag, limit)

    def folder(self, given: str, cwd: str | Path, *, flag: str) -> Folder:
        try:
            fd = os.open(self.describe(given, cwd), DIR_FLAGS & ~os.O_NOFOLLOW)
        except (OSError, ValueError):
            raise Unreadable(given, flag, self.folder_reason) from None
        return Folder(fd, given, self)

    def read_beneath(self, dir_fd: int, rel: str, *, flag: str, shown: str, limit: int) -> bytes:
        try:
            fd = os.open(rel, FILE_FLAGS & ~os.O_NOFOLLOW, dir_fd=dir_fd)
        except (OSError, ValueError):
            raise Unreadable(shown, flag, self.reason) from None
        return self._finish(fd, shown, flag, limit)


class Confined(Files):
    """Beneath ``root``, no links, regular files readable by ``uid``/``gid`` (the sandboxed
    script's own identity; None: no such check)."""

    reason = CONFINED_REASON
    folder_reason = CONFINED_FOLDER_REASON

    def __init__(self, root: str | Path, uid: int | None = None, gid: int | None = None):
        self.root = os.path.normpath(os.path.abspath(str(root)))
        self.uid = uid
        self.gid = gid

    def _may_read(self, info: os.stat_result) -> bool:
        return readable_by(info, self.uid, self.gid)

    def relative(self, given: str, cwd: str | Path) -> str | None:
        """``given`` relative to the root, or None when it is not beneath it. Lexical: as no
        link is ever followed afterwards, ``..`` cannot be made to mean anything else."""
        cwd = str(cwd)
        if not os.path.isabs(cwd):
            return None
        path = self.describe(given, cwd)
        if path == self.root:
            return "."
        if not path.startswith(self.root.rstrip("/") + "/"):
            return None
        return path[len(self.root.rstrip("/")) + 1 :]

    @contextlib.contextmanager
    def _root_fd(self) -> Iterator[int]:
        fd = os.open(self.root, DIR_FLAGS)
        try:
            yield fd
        finally:
            os.close(fd)

    def _open_beneath(self, dir_fd: int, rel: str, flags: int) -> int:
        """Open ``rel`` beneath ``dir_fd`` following no link; OSError otherwise."""
        if "\0" in rel or rel.startswith("/"):
            raise OSError(errno.EINVAL, "bad name")
        if rel in ("", "."):
            return os.dup(dir_fd) if flags & os.O_DIRECTORY else os.open(".", flags, dir_fd=dir_fd)
        if openat2_works():
            return _openat2(dir_fd, rel, flags, CONFINED_RESOLVE)
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if any(p == ".." for p in parts):
            raise OSError(errno.EXDEV, "outside")
        current = os.dup(dir_fd)
        try:
            for part in parts[:-1]:
                step = os.open(part, DIR_FLAGS, dir_fd=current)
                os.close(current)
                current = step
                info = os.fstat(current)
                if info.st_dev != os.fstat(dir_fd).st_dev:
                    raise OSError(errno.EXDEV, "another file system")
            fd = os.open(parts[-1], flags, dir_fd=current)
            if os.fstat(fd).st_dev != os.fstat(dir_fd).st_dev:
                os.close(fd)
                raise OSError(errno.EXDEV, "another file system")
            return fd
        finally:
            os.close(current)

    def open_relative(self, rel: str, flags: int = FILE_FLAGS) -> int:
        """A descriptor for ``rel`` beneath the root, opened without following any link and
        (a file) non-blocking: check it with ``os.fstat``. OSError otherwise."""
        with self._root_fd() as root_fd:
            return self._open_beneath(root_fd, rel, flags)

    def _open_given(self, given: str, cwd: str | Path, flags: int, flag: str, reason: str) -> int:
        rel = self.relative(given, cwd)
        try:
            if rel is None:
                raise OSError(errno.EXDEV, "outside")
            return self.open_relative(rel, flags)
        except (OSError, ValueError):
            raise Unreadable(given, flag, reason) from None

    def read(self, given: str, cwd: str | Path, *, flag: str, limit: int = MAX_FILE) -> bytes:
        fd = self._open_given(given, cwd, FILE_FLAGS, flag, self.reason)
        return self._finish(fd, given, flag, limit)

    def folder(self, given: str, cwd: str | Path, *, flag: str) -> Folder:
        fd = self._open_given(given, cwd, DIR_FLAGS, flag, self.folder_reason)
        return Folder(fd, given, self)

    def read_beneath(self, dir_fd: int, rel: str, *, flag: str, shown: str, limit: int) -> bytes:
        try:
            fd = self._open_beneath(dir_fd, rel, FILE_FLAGS)
        except (OSError, ValueError):
            raise Unreadable(shown, flag, self.reason) from None
        return self._finish(fd, shown, flag, limit)
