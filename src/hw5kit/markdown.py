"""Markdown tables, written one way for every report the kit generates (the quantization and
hop reports, the documentation's error tables), and the generated blocks of the documentation.

    >>> print(table(["model", "p50 (ms)"], [["lite0", "5.8"]], align="lr"))
    | model | p50 (ms) |
    |---|---:|
    | lite0 | 5.8 |

A cell is ``str(value)`` with its ``|`` escaped (an escaped ``\\|`` is left as it is), so a cell
can never split its row; ``figure`` writes a measured number ("n/a" when missing).
``write_report`` writes a report folder as the benchmarks keep them.

A generated block is the text between two marker comments in a page of ``docs/`` (the rubric
table, the error tables, the benchmark and quantization figures): ``replace_block`` rewrites it,
``rewrite_pages`` is the command line of every generator (rewrite, or ``--check`` and fail
when a page is stale).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

_PIPE = re.compile(r"(?<!\\)\|")
_RULES = {"l": "---", "r": "---:", "c": ":---:"}


def cell(value: object) -> str:
    return _PIPE.sub(r"\\|", str(value))


def row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(cell(c) for c in cells) + " |"


def table(header: Sequence[object], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """The table's lines joined by newlines (no trailing one). ``align``: one letter per column,
    ``l`` (the default), ``r`` or ``c``; shorter than the header, the rest is ``l``."""
    letters = align.ljust(len(header), "l")
    if len(letters) != len(header) or set(letters) - set(_RULES):
        raise ValueError(f"align {align!r}: one of l, r, c per column ({len(header)})")
    lines = [row(header), "|" + "|".join(_RULES[a] for a in letters) + "|"]
    for cells in rows:
        if len(cells) != len(header):
            raise ValueError(f"a row of {len(cells)} cells in a table of {len(header)} columns")
        lines.append(row(cells))
    return "\n".join(lines)


def figure(value: float | None, digits: int = 1, suffix: str = "") -> str:
    """A measured figure as a cell: ``digits`` decimals and ``suffix``, "n/a" when not measured."""
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def write_report(out: Path, results: dict, text: str) -> Path:
    """A report folder: ``results.json`` (every figure) and ``README.md`` (``text``, the
    markdown made from them); returns the README's path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    path = out / "README.md"
    path.write_text(text)
    return path


# ---- generated blocks --------------------------------------------------------------------------
class BlockMissing(ValueError):
    """A page lacks a generated block's markers."""


def replace_block(text: str, begin: str, end: str, content: str) -> str:
    """``text`` with what lies between the first ``begin`` and the ``end`` after it replaced by
    ``content`` (one line break on each side). BlockMissing when the markers are not there."""
    start = text.find(begin)
    stop = text.find(end, start + len(begin)) if start >= 0 else -1
    if stop < 0:
        raise BlockMissing(f"no generated section {begin} ... {end}")
    return text[: start + len(begin)] + "\n" + content + "\n" + text[stop:]


def update_file(path: Path, begin: str, end: str, content: str) -> bool:
    """Rewrite one block of the file at ``path``; False (and nothing written) without markers."""
    text = path.read_text(encoding="utf-8")
    try:
        new = replace_block(text, begin, end, content)
    except BlockMissing:
        return False
    if new != text:
        path.write_text(new, encoding="utf-8")
    return True


def rewrite_pages(
    paths: Iterable[Path], render: Callable[[str], str], *, check: bool, command: str
) -> int:
    """A generator's command line: each page's blocks made again by ``render``; with ``check``
    nothing is written and a stale page fails (exit 1, naming ``command``). A page without the
    markers fails too."""
    status = 0
    for path in paths:
        text = path.read_text(encoding="utf-8")
        try:
            new = render(text)
        except ValueError as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            status = 1
            continue
        if new == text:
            print(f"{path}: up to date")
        elif check:
            print(f"{path} is stale: run {command}")
            status = 1
        else:
            path.write_text(new, encoding="utf-8")
            print(f"{path}: rewritten")
    return status
