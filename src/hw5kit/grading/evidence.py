"""Evidence for a deduction, as a TA writes it: where (``file:line``), what was found, what was
expected. A check attaches one to a failed item (``Outcome.fail(..., evidence=...)``); the
summary lists every deduction in one line with it (``report.deductions``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .submission import FileProblem, Snapshot

MAX_SHOWN = 240


@dataclass(frozen=True)
class Evidence:
    where: str  # "deployment/cloudbuild.yaml:37", "deliverables.yaml", "(no submit script)"
    found: str
    expected: str

    def line(self) -> str:
        return f"{self.where}: found {clip(self.found)}; expected {clip(self.expected)}"


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def line_of(snapshot: Snapshot, rel: str | None, *needles: str) -> str:
    """``rel:N`` for the first line of ``rel`` holding one of ``needles`` (tried in order),
    else ``rel`` alone (or a placeholder when there is no file)."""
    if not rel:
        return "(no file)"
    try:
        lines = snapshot.read_text(rel).splitlines()
    except FileProblem:
        return rel
    for needle in needles:
        if not needle:
            continue
        for number, text in enumerate(lines, 1):
            if needle in text:
                return f"{rel}:{number}"
    return rel


def at_line(rel: str | None, line: int | None) -> str:
    if not rel:
        return "(no file)"
    return f"{rel}:{line}" if line else rel
