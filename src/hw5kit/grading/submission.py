"""A submission, read without trusting it.

``Snapshot.take`` copies the submission folder into the grader's own temporary folder once,
and everything else (static checks, the sandbox's workspaces) works from that copy:

* only regular files are copied, opened beneath the submission's folder without following any
  link (``hw5kit.confined``), checked on the opened descriptor; a symbolic link is replaced
  by the file it points to only when that file is inside the submission, otherwise it is left
  out and remembered (``deliverables.yaml -> /etc/passwd`` is reported, never read);
* FIFOs, sockets and devices are left out (reading a FIFO would block the grader);
* files over ``MAX_FILE`` bytes, more than ``MAX_FILES`` files, more than ``MAX_TOTAL`` bytes
  in all, and folders the grading never needs (``.git``, ``.nox``, virtual environments, ...)
  are left out, each with a note.

``read_text`` and ``load_yaml`` turn every way a file can be unreadable (missing, a link
outside, binary, too large, invalid YAML, a YAML "billion laughs") into a ``FileProblem`` whose
message says what is wrong and what to do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..confined import Confined
from ..yamlsafe import yaml_limits_problem

MAX_FILE = 8 * 2**20
MAX_TOTAL = 96 * 2**20
MAX_FILES = 4000
MAX_DEPTH = 16
MAX_TEXT = 2**20  # the largest text file the checks read
SKIPPED_DIRS = {
    ".git",
    ".hg",
    ".svn",
    ".nox",
    ".tox",
    ".venv",
    "venv",
    "env",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".hw5",
    "weights",
    "__MACOSX",
}


class FileProblem(ValueError):
    """A file the grader needs cannot be used; the message says why and what to do."""


@dataclass
class Snapshot:
    origin: Path  # the submission as given
    root: Path  # the grader's copy
    notes: list[str] = field(default_factory=list)
    links_outside: dict[str, str] = field(default_factory=dict)  # rel path -> target
    left_out: dict[str, str] = field(default_factory=dict)  # rel path -> reason

    @classmethod
    def take(cls, origin: Path, dest: Path) -> Snapshot:
        origin = Path(origin)
        if not origin.exists():
            raise FileProblem(f"{origin}: no such folder")
        real_root = Path(os.path.realpath(origin))
        if not real_root.is_dir():
            raise FileProblem(f"{origin}: not a folder (give the folder of the submission)")
        dest.mkdir(mode=0o700, parents=True, exist_ok=False)
        snap = cls(origin, dest)
        budget = {"files": 0, "bytes": 0}
        snap._copy_dir(real_root, real_root, dest, 0, budget)
        return snap

    # -- copying -- #
    def _leave_out(self, rel: str, reason: str) -> None:
        self.left_out[rel] = reason
        self.notes.append(f"{rel}: {reason}")

    def _copy_dir(self, real_root: Path, src: Path, dst: Path, depth: int, budget: dict) -> None:
        try:
            entries = sorted(os.scandir(src), key=lambda e: e.name)
        except OSError as exc:
            self._leave_out(str(src.relative_to(real_root)) or ".", f"cannot be listed ({exc})")
            return
        for entry in entries:
            rel = str(Path(entry.path).relative_to(real_root))
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError as exc:
                self._leave_out(rel, f"cannot be read ({exc.strerror})")
                continue
            if stat.S_ISDIR(mode):
                if entry.name in SKIPPED_DIRS:
                    continue
                if depth >= MAX_DEPTH:
                    self._leave_out(rel, f"nested deeper than {MAX_DEPTH} folders: left out")
                    continue
                target = dst / entry.name
                target.mkdir(mode=0o700)
                self._copy_dir(real_root, Path(entry.path), target, depth + 1, budget)
            elif stat.S_ISLNK(mode):
                self._copy_link(real_root, Path(entry.path), rel, dst / entry.name, budget)
            elif stat.S_ISREG(mode):
                self._copy_file(real_root, rel, rel, dst / entry.name, budget)
            else:
                kind = "a FIFO" if stat.S_ISFIFO(mode) else "a special file"
                self._leave_out(rel, f"is {kind}, not a regular file: left out")

    def _copy_link(self, real_root: Path, path: Path, rel: str, dst: Path, budget: dict) -> None:
        target = os.path.realpath(path)
        try:
            link = os.readlink(path)
        except OSError:
            link = target
        inside = target == str(real_root) or target.startswith(str(real_root) + os.sep)
        if not inside:
            self.links_outside[rel] = link
            self._leave_out(
                rel,
                f"is a symbolic link to {link}, outside the submission: not read (submit the "
                "file itself)",
            )
            return
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.stat(target).st_mode):
                source = os.path.relpath(target, real_root)
                self._copy_file(real_root, source, rel, dst, budget)
                return
        self._leave_out(rel, f"is a symbolic link to {link}, not to a file: left out")

    def _copy_file(self, root: Path, source: str, rel: str, dst: Path, budget: dict) -> None:
        """Copy ``root/source`` (opened beneath ``root`` without following any link, so a
        folder swapped for a link meanwhile cannot lead outside) to ``dst``, shown as ``rel``."""
        if budget["files"] >= MAX_FILES:
            if budget["files"] == MAX_FILES:
                self.notes.append(f"more than {MAX_FILES} files: the rest was left out")
                budget["files"] += 1
            return
        try:
            fd = Confined(root).open_relative(source)
        except OSError as exc:
            self._leave_out(rel, f"cannot be read ({exc.strerror})")
            return
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                self._leave_out(rel, "is not a regular file: left out")
                return
            if info.st_size > MAX_FILE:
                self._leave_out(
                    rel,
                    f"is {info.st_size / 2**20:.1f} MiB, over the {MAX_FILE // 2**20} MiB "
                    "limit per file: left out",
                )
                return
            if budget["bytes"] + info.st_size > MAX_TOTAL:
                self._leave_out(rel, f"the submission is over {MAX_TOTAL // 2**20} MiB: left out")
                return
            with open(dst, "wb") as out:
                shutil.copyfileobj(fh, out, 2**20)
            budget["files"] += 1
            budget["bytes"] += info.st_size
        if info.st_mode & 0o111:
            dst.chmod(0o755)

    # -- finding files -- #
    def exists(self, rel: str) -> bool:
        return (self.root / rel).is_file() or rel in self.links_outside or rel in self.left_out

    def locate(self, name: str, folders: tuple[str, ...] = ("deployment", "")) -> str | None:
        """The relative path of ``name`` in the first of ``folders`` that has it (also when the
        file was left out, so that the reason can be reported)."""
        for folder in folders:
            rel = f"{folder}/{name}" if folder else name
            if self.exists(rel):
                return rel
        lowered = name.lower()
        for folder in folders:
            base = self.root / folder if folder else self.root
            with contextlib.suppress(OSError):
                for child in base.iterdir():
                    if child.name.lower() == lowered and child.is_file():
                        return str(child.relative_to(self.root))
        return None

    def files(self, folder: str = "") -> list[str]:
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.iterdir() if p.is_file())

    # -- reading -- #
    def read_bytes(self, rel: str, limit: int = MAX_TEXT) -> bytes:
        if rel in self.links_outside:
            raise FileProblem(
                f"{rel} is a symbolic link to {self.links_outside[rel]}, outside the submission: "
                "not read; submit the file itself"
            )
        if rel in self.left_out:
            raise FileProblem(f"{rel} {self.left_out[rel]}")
        path = self.root / rel
        if not path.is_file():
            raise FileProblem(f"{rel}: not found")
        size = path.stat().st_size
        if size > limit:
            raise FileProblem(
                f"{rel} is {size / 2**20:.1f} MiB; a file like this is a few kB (limit "
                f"{limit // 2**10} KiB): submit the right file"
            )
        return path.read_bytes()

    def read_text(self, rel: str, limit: int = MAX_TEXT) -> str:
        data = self.read_bytes(rel, limit)
        if b"\0" in data:
            raise FileProblem(f"{rel} is a binary file, not text: submit the text file")
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise FileProblem(
                f"{rel} is not UTF-8 text (byte {exc.start}): save it as UTF-8"
            ) from None


def yaml_error(exc: yaml.YAMLError, source: str) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    detail = f"{context}, {problem}" if context else problem
    return f"{source}{where}: not valid YAML: {detail}"


def load_yaml(text: str, source: str) -> Any:
    problem = yaml_limits_problem(text, source)
    if problem:
        raise FileProblem(problem)
    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except yaml.YAMLError as exc:
        raise FileProblem(yaml_error(exc, source)) from None
    except RecursionError:
        raise FileProblem(f"{source} nests too deeply: refused") from None
