"""The grader's folders on disk: the grading folder (traversable by the sandbox's users, never
listable, removed even when a script left folders without permissions, never through a link a
script planted) and the size of what a run wrote into one."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from . import runas


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
