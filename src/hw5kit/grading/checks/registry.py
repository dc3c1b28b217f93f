"""The checks the rubric names (``CHECKS``, filled by the ``check`` decorator and its variants)
and the evaluation of a whole rubric.

A check takes the grading ``Context`` (and the item's ``args``) and returns an ``Outcome``. It
never raises for anything a submission contains: an unexpected error becomes a failed item whose
message says so (and is a bug to report), never a crash of the grader. The variants:
``per_build`` (each build the submission asks for, scored in proportion), ``scripted`` (what the
scripts did: needs the student's project) and ``deployed`` (one app's ``gcloud run deploy``).
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Callable

from ..builds import BuildUnit
from ..context import Context
from ..evidence import Evidence, at_line
from ..outcome import Outcome, Result
from .common import deploy_call, no_call

CHECKS: dict[str, Callable[..., Outcome]] = {}


def check(name: str):
    def register(fn: Callable[..., Outcome]) -> Callable[..., Outcome]:
        CHECKS[name] = fn
        return fn

    return register


def evaluate(ctx: Context) -> list[Result]:
    results = []
    for item in ctx.rubric.items:
        fn = CHECKS.get(item.check)
        try:
            if fn is None:
                raise KeyError(f"unknown check {item.check!r} in the rubric")
            outcome = fn(ctx, **item.args)
        except Exception as exc:  # a grader bug must not cost the whole grading
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            outcome = Outcome.fail(
                f"the grader could not run this check ({detail}); please report it to the "
                "course staff with this submission"
            )
        fraction = max(0.0, min(1.0, outcome.fraction))
        output = "\n".join(outcome.lines)
        evidence = outcome.evidence if fraction < 1.0 else None
        if item.manual:
            results.append(Result(item, None, fraction >= 1.0, output, evidence))
        else:
            score = round(item.points * fraction, 4)
            results.append(Result(item, score, fraction >= 1.0, output, evidence))
    return results


def _combine(outcomes: list[tuple[BuildUnit, Outcome]]) -> Outcome:
    """One item over several builds: the share of builds that pass, each one's lines."""
    if len(outcomes) == 1:
        return outcomes[0][1]
    lines: list[str] = []
    for unit, outcome in outcomes:
        mark = "✓" if outcome.fraction >= 1.0 else "✗"
        head, *rest = outcome.lines or [""]
        lines.append(f"{mark} {unit.label} ({unit.where()}): {head}")
        lines += [f"    {line}" for line in rest]
    fraction = sum(o.fraction for _, o in outcomes) / len(outcomes)
    failed = [o for _, o in outcomes if o.fraction < 1.0]
    return Outcome(fraction, lines, failed[0].evidence if failed else None)


def per_build(name: str, *, per_config: bool = False, needs_steps: bool = True):
    """A check of each build (``fn(ctx, unit, **args)``), registered like :func:`check`; with
    ``per_config``, of each Cloud Build file once. Failed when no Cloud Build file is read
    (and, with ``needs_steps``, when it has no steps)."""

    def register(fn: Callable[..., Outcome]) -> Callable[..., Outcome]:
        @functools.wraps(fn)
        def run(ctx: Context, **args) -> Outcome:
            units = list(ctx.units)
            if per_config:
                seen: set[str | None] = set()
                units = [u for u in units if not (u.config_rel in seen or seen.add(u.config_rel))]
            if not units:
                problem = ctx.config_problem or "the Cloud Build file could not be read"
                return Outcome.fail(
                    problem,
                    evidence=Evidence(
                        ctx.config_rel or "(no Cloud Build file)",
                        problem,
                        "deployment/cloudbuild.yaml with the build's steps",
                    ),
                )
            outcomes = []
            for unit in units:
                if unit.problem:
                    line = re.search(r"\(line (\d+)", unit.problem)
                    outcome = Outcome.fail(
                        unit.problem,
                        evidence=Evidence(
                            at_line(unit.config_rel, int(line.group(1)) if line else None),
                            unit.problem,
                            "a readable YAML file",
                        ),
                    )
                elif needs_steps and not unit.analysis.steps:
                    outcome = Outcome.fail(
                        f"{unit.where()}: no `steps` list",
                        evidence=Evidence(unit.where(), "no `steps` list", "the build's steps"),
                    )
                else:
                    outcome = fn(ctx, unit, **args)
                outcomes.append((unit, outcome))
            return _combine(outcomes)

        return check(name)(run)

    return register


def scripted(name: str):
    """A check of what the student's scripts did in the sandbox: registered like :func:`check`,
    failed as not run when the student ID (so the project the scripts should use) is unknown."""

    def register(fn: Callable[..., Outcome]) -> Callable[..., Outcome]:
        @functools.wraps(fn)
        def run(ctx: Context, **args) -> Outcome:
            if not ctx.project:
                return Outcome.fail(
                    "not run: the student ID is unknown, so the grader cannot tell which project "
                    "the scripts should use (pass --student-id)"
                )
            return fn(ctx, **args)

        return check(name)(run)

    return register


def deployed(name: str):
    """A check of one app's ``gcloud run deploy`` line: like :func:`scripted`, called as
    ``fn(ctx, app, call)`` with the call to check, failed when the script made none."""

    def register(fn: Callable[..., Outcome]) -> Callable[..., Outcome]:
        @functools.wraps(fn)
        def run(ctx: Context, app: str) -> Outcome:
            call = deploy_call(ctx, app)
            if call is None:
                return no_call(ctx, app)
            return fn(ctx, app, call)

        return scripted(name)(run)

    return register
