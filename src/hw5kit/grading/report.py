"""Writing a grading out: Gradescope's ``results.json`` and a summary for people.

results.json follows Gradescope's autograder format
(https://gradescope-autograders.readthedocs.io/en/latest/specs/): ``score`` is the automatic
score; each automatic rubric item is a test with ``name``, ``number``, ``score``,
``max_score``, ``status``, ``output``, ``tags`` and ``visibility``; each item graded by hand is
an informational test without a score (``status`` says whether the automatic checks on the
answer passed, ``output`` holds the answer for the grader), so that Gradescope's total is the
automatic part and staff add the points of the manual questions on Gradescope.
``extra_data`` keeps the per-question totals and the context (student ID, sandbox, live).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .evidence import Evidence
from .grader import Grading
from .outcome import Result


def _points(value: float) -> str:
    return f"{value:g}"


def question_totals(grading: Grading) -> list[dict[str, Any]]:
    out = []
    for q in grading.context.rubric.questions:
        results = [r for r in grading.results if r.item.question == q.id]
        automatic = [r for r in results if not r.manual]
        manual = [r for r in results if r.manual]
        out.append(
            {
                "question": q.id,
                "title": q.title,
                "points": q.points,
                "automatic_score": round(sum(r.score or 0 for r in automatic), 4),
                "automatic_max": q.automatic_points,
                "manual_points": q.manual_points,
                "manual_checks_passed": all(r.passed for r in manual) if manual else None,
            }
        )
    return out


def score(grading: Grading) -> float:
    return round(sum(r.score or 0 for r in grading.results if not r.manual), 4)


def _test(result: Result, visibility: str) -> dict[str, Any]:
    item = result.item
    test: dict[str, Any] = {
        "name": f"{item.id} {item.title}",
        "number": item.number,
        "status": "passed" if result.passed else "failed",
        "output": result.output,
        "tags": [item.question, "manual" if item.manual else "automatic"],
        "visibility": visibility,
    }
    if item.manual:
        test["name"] = f"{item.id} {item.title} ({_points(item.points)} points, graded by hand)"
    else:
        test["score"] = result.score
        test["max_score"] = item.points
    return test


def results_json(grading: Grading, *, visibility: str = "visible") -> dict[str, Any]:
    ctx = grading.context
    rubric = ctx.rubric
    return {
        "score": score(grading),
        "execution_time": round(grading.duration, 1),
        "output": summary(grading, details=False),
        "output_format": "text",
        "test_output_format": "text",
        "visibility": visibility,
        "stdout_visibility": "hidden",
        "tests": [_test(r, visibility) for r in grading.results],
        "extra_data": {
            "rubric_total": rubric.total,
            "automatic_max": rubric.automatic_points,
            "manual_points": rubric.manual_points,
            "questions": question_totals(grading),
            "student_id": ctx.student_id,
            "student_id_source": ctx.id_source,
            "project": ctx.project,
            "sandbox": ctx.sandbox.mode,
            "live": bool(ctx.options.live),
            "deductions": [
                {"item": r.item.id, "points": r.lost, **vars(r.evidence or _fallback_evidence(r))}
                for r in grading.results
                if not r.manual and r.lost
            ],
        },
    }


def _fallback_evidence(result: Result) -> Evidence:
    first = next((line for line in result.output.splitlines() if line.strip()), "")
    return Evidence("(see the item)", first.lstrip("✗ ") or "the item failed", result.item.title)


def deductions(grading: Grading) -> list[str]:
    """Each automatic deduction in one line, with its evidence: readable without
    results.json (``-2   Q1.5  deployment/cloudbuild.yaml:33: found ...; expected ...``)."""
    out = []
    for result in grading.results:
        if result.manual or not result.lost:
            continue
        evidence = result.evidence or _fallback_evidence(result)
        out.append(f"-{_points(result.lost):<5} {result.item.id:<6} {evidence.line()}")
    return out


def summary(grading: Grading, *, details: bool = True) -> str:
    ctx = grading.context
    rubric = ctx.rubric
    lines = [f"HW5 autograder: {ctx.snapshot.origin}"]
    who = (
        f"student {ctx.student_id} ({ctx.id_source}), project {ctx.project}"
        if ctx.student_id
        else "student ID unknown"
    )
    lines.append(who)
    lines.append(f"scripts: {ctx.sandbox.describe()}")
    lines.append(
        "live checks: " + ("on" if ctx.options.live else "off (--live checks the deployment)")
    )
    lines.append("")
    lines.append(f"{'question':<10}{'automatic':>12}   graded by hand")
    for row in question_totals(grading):
        auto = (
            f"{_points(row['automatic_score'])} / {_points(row['automatic_max'])}"
            if row["automatic_max"]
            else "-"
        )
        manual = ""
        if row["manual_points"]:
            checks = (
                "answer present" if row["manual_checks_passed"] else "answer MISSING or incomplete"
            )
            manual = f"{_points(row['manual_points'])} points to grade ({checks})"
        lines.append(f"{row['question']:<10}{auto:>12}   {manual}")
    lines.append(
        f"{'total':<10}{_points(score(grading)) + ' / ' + _points(rubric.automatic_points):>12}   "
        f"+ {_points(rubric.manual_points)} points graded by hand = {_points(rubric.total)}"
    )
    lines.append("")
    found = deductions(grading)
    if found:
        lines.append("deductions (points, item, where: what was found; what was expected):")
        lines += [f"  {line}" for line in found]
        lines.append("")
    for result in grading.results:
        item = result.item
        mark = "ok  " if result.passed else "FAIL"
        if item.manual:
            points = f"by hand, {_points(item.points)}"
        else:
            points = f"{_points(result.score or 0)}/{_points(item.points)}"
        lines.append(f"{mark} {item.id} [{points}] {item.title}")
        if (not result.passed or details) and result.output:
            body = result.output
            if item.manual:  # the answer itself goes to results.json, not to the summary
                body = body.split("\n\n--- answer", 1)[0]
            lines += [f"       {line}" for line in body.splitlines() if line.strip()][:25]
    notes = [*ctx.notes, *ctx.deliverables_notes, *ctx.layout_notes, *ctx.snapshot.notes[:20]]
    if ctx.live and ctx.live.notes:
        notes += ctx.live.notes
    if notes:
        lines.append("")
        lines.append("notes:")
        lines += [f"  - {n}" for n in notes]
    lines.append("")
    lines.append(f"graded in {grading.duration:.1f} s")
    return "\n".join(lines)


def write_json(data: dict[str, Any], path: Path) -> None:
    """Atomically: a half-written results.json is never left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
