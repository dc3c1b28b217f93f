"""Markdown tables, written one way for every report the kit generates (the quantization and
hop reports, the README's error tables).

    >>> print(table(["model", "p50 (ms)"], [["lite0", "5.8"]], align="lr"))
    | model | p50 (ms) |
    |---|---:|
    | lite0 | 5.8 |

A cell is ``str(value)`` with its ``|`` escaped (an escaped ``\\|`` is left as it is), so a cell
can never split its row; ``figure`` writes a measured number ("n/a" when missing).
``write_report`` writes a report folder as the benchmarks keep them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
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
