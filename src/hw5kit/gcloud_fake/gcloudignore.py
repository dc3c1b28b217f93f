"""Which files ``gcloud builds submit`` uploads: ``.gcloudignore``, else the default gcloud uses
when the folder has Git files (``.git`` or ``.gitignore``), which includes ``.gitignore``.

Follows ``gcloud topic gcloudignore``
(https://cloud.google.com/sdk/gcloud/reference/topic/gcloudignore) and the Cloud SDK's own
implementation (``googlecloudsdk/command_lib/util/gcloudignore.py`` and ``glob.py``, used by
``api_lib/cloudbuild/snapshot.py`` with ``write_on_disk=False``):

* ``.gcloudignore`` in the top of the uploaded folder wins; if it is absent (or cannot be
  read) and the folder has ``.git`` or ``.gitignore``, the default below is used, plus
  ``#!include:.gitignore`` when ``.gitignore`` exists; otherwise every file is uploaded;
* ``gcloud config set gcloudignore/enabled false`` turns all of it off;
* the syntax is gitignore's, matched the way gcloud matches it: patterns are matched from the
  right, component by component (so ``foo/bar`` matches ``x/foo/bar`` too), a leading ``/``
  anchors at the top, ``**`` spans folders, a trailing ``/`` matches folders only, ``!``
  re-includes, the last matching line wins, and a folder that is ignored is not entered;
* ``#!include:FILE`` inserts the patterns of FILE (same folder only, not recursively).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from ..confined import Folder, Unreadable

IGNORE_FILE = ".gcloudignore"
GIT_FILES = (".git", ".gitignore")
DEFAULT = """\
.gcloudignore
.git
.gitignore
"""
INCLUDE = "!include:"
# gcloud's words when files were left out and no .gcloudignore exists (snapshot.py)
IGNORED_MESSAGE = (
    "Some files were not included in the source upload.\n\n"
    "Check the gcloud log [{log}] to see which files and the contents of the\n"
    "default gcloudignore file used (see `$ gcloud topic gcloudignore` to learn\n"
    "more).\n"
)


class IgnoreFileError(ValueError):
    """A ``#!include`` gcloud refuses (another folder, or a file that cannot be read)."""


@dataclass(frozen=True)
class Pattern:
    parts: tuple[str, ...]
    negated: bool
    folders_only: bool

    def matches(self, path: str, is_dir: bool) -> bool:
        if self.folders_only and not is_dir:
            return False
        return _match(list(self.parts), path)


def _match(parts: list[str], path: str | None) -> bool:
    """Right to left: the last pattern part against the last path component, and so on."""
    if not parts:
        return True
    if path is None:  # past the top: only an anchored pattern's leading "" got here
        return False
    last, rest = parts[-1], parts[:-1]
    head, _, name = path.rpartition("/")
    remaining: str | None = head if path else None
    if last == "**":
        anchored = rest if rest and rest[0] == "" else ["", *rest]
        prefixes = [""] + ["/".join(path.split("/")[: i + 1]) for i in range(len(path.split("/")))]
        return any(_match(anchored, prefix) for prefix in (prefixes if path else [""]))
    if last == "*" and not rest and remaining:
        return False  # a leading "*/" matches one folder level, not several
    if not fnmatch.fnmatchcase(name, last):
        return False
    return _match(rest, remaining)


def _strip_spaces(line: str) -> str:
    """Trailing spaces go unless escaped with a backslash; ``\\ `` becomes a space."""
    tokens = re.findall(r"\\.|\\$|.", line, flags=re.S)
    while tokens and tokens[-1] == " ":
        tokens.pop()
    return "".join(tokens).replace("\\ ", " ")


def parse_line(line: str) -> Pattern | None:
    if not line or line.startswith("#"):
        return None
    negated = line.startswith("!")
    if negated:
        line = line[1:]
    folders_only = line.endswith("/")
    if folders_only:
        line = line[:-1]
    line = _strip_spaces(line)
    if re.search(r"(?<!\\)\\(\\\\)*$", line):
        return None  # ends in an odd number of backslashes: invalid, skipped
    line = re.sub(r"\\([^\\])", r"\1", line).replace("\\\\", "\\")
    if not line:
        return None
    return Pattern(tuple(line.split("/")), negated, folders_only)


class Chooser:
    """Decides, path by path, what is uploaded (``chooser(rel, is_dir)``)."""

    def __init__(self, patterns: list[Pattern], source: str):
        self.patterns = patterns
        self.source = source  # ".gcloudignore", "default (Git files found)" or "none"

    def __call__(self, path: str, is_dir: bool = False) -> bool:
        components = path.split("/")
        for index in range(1, len(components) + 1):
            prefix = "/".join(components[:index])
            prefix_is_dir = index < len(components) or is_dir
            verdict = None
            for pattern in self.patterns:
                if pattern.matches(prefix, prefix_is_dir):
                    verdict = not pattern.negated
            if verdict:  # the prefix is ignored: so is everything under it
                return False
        return True


def parse(text: str, folder: Folder | None, *, includes: int = 1) -> list[Pattern]:
    patterns: list[Pattern] = []
    for line in text.splitlines():
        if line.startswith("#"):
            directive = line[1:].lstrip()
            if directive.startswith(INCLUDE):
                name = directive[len(INCLUDE) :]
                if "/" in name:
                    raise IgnoreFileError("May only include files in the same directory.")
                if includes and folder is not None:
                    try:
                        included = folder.read(name, flag="#!include").decode("utf-8", "replace")
                    except Unreadable:
                        raise IgnoreFileError(
                            f"Could not read ignore file [{name}]: no such file"
                        ) from None
                    patterns += parse(included, folder, includes=includes - 1)
            continue
        pattern = parse_line(line)
        if pattern is not None:
            patterns.append(pattern)
    return patterns


def chooser_for(folder: Folder, *, enabled: bool = True) -> Chooser:
    """The chooser gcloud would use for the uploaded ``folder``."""
    if not enabled:
        return Chooser([], "none (gcloudignore/enabled is false)")
    try:
        text = folder.read(IGNORE_FILE, flag=IGNORE_FILE).decode("utf-8", "replace")
    except Unreadable:
        pass
    else:
        return Chooser(parse(text, folder), IGNORE_FILE)
    if not any(folder.has(name) for name in GIT_FILES):
        return Chooser([], "none")
    text = DEFAULT + (f"#{INCLUDE}.gitignore\n" if folder.has(".gitignore") else "")
    return Chooser(parse(text, folder), "the default for a folder with Git files")
