"""Q2.2, Q4, Q5, Q7, Q8: the short answers, shown for grading by hand (present, not empty,
not the template's text; question 9 cites sources)."""

from __future__ import annotations

from ..context import Context
from ..outcome import Outcome
from .registry import check

MAX_ANSWER = 6000


@check("short_answer")
def short_answer(ctx: Context, question: int, cite_sources: bool = False) -> Outcome:
    found = ctx.answers
    if found is None:
        return Outcome.fail("short answers not read")
    answer = found.answer(question, cite_sources=cite_sources)
    lines = [f"✗ {p}" for p in answer.problems]
    if answer.text is not None and answer.ok:
        checks = "present, not empty, not the template's text"
        lines.append(f"✓ {checks}" + (", cites sources" if cite_sources else ""))
    if answer.text:
        text = answer.text.strip()
        if len(text) > MAX_ANSWER:
            text = text[:MAX_ANSWER] + f"\n[... {len(answer.text) - MAX_ANSWER} more characters]"
        lines += ["", f"--- answer ({found.path}) ---", text]
    lines.append("(graded by hand: these points are not included in the automatic score)")
    return Outcome(1.0 if answer.ok else 0.0, lines)
