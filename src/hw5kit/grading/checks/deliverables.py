"""Q1.11, Q3.8-Q3.9 and Q6.8-Q6.9: what deliverables.yaml records (the four build IDs, each
service's URL), checked live with ``--live``."""

from __future__ import annotations

import re

from ..context import SLOTS, Context
from ..evidence import Evidence, line_of
from ..outcome import Outcome
from .registry import check


def _deliverables_where(ctx: Context, *needles: str) -> str:
    return line_of(ctx.snapshot, ctx.deliverables_rel or "deliverables.yaml", *needles)


def _deliverables_problem(ctx: Context) -> Outcome | None:
    if ctx.deliverables_problem:
        line = re.search(r"\(line (\d+)", ctx.deliverables_problem)
        rel = ctx.deliverables_rel or "deliverables.yaml"
        return Outcome.fail(
            ctx.deliverables_problem,
            evidence=Evidence(
                f"{rel}:{line.group(1)}" if line else rel,
                ctx.deliverables_problem,
                "deliverables.yaml in the course's layout",
            ),
        )
    return None


@check("build_ids")
def build_ids(ctx: Context) -> Outcome:
    broken = _deliverables_problem(ctx)
    if broken:
        return broken
    lines, good, missing = list(ctx.deliverables_notes), 0, []
    for app, (version, part) in SLOTS.items():
        where_ = f"services.{version}.{part}.build_id"
        problem = ctx.deliverable_problem(app, "build_id")
        if problem:
            lines.append(f"✗ {problem}")
            missing.append(where_)
            continue
        build_id = ctx.build_id(app)
        live = (ctx.live.builds.get(app) if ctx.live else None) or (None, "")
        if live[0] is False:
            lines.append(f"✗ {where_}: {build_id}: {live[1]}")
            missing.append(where_)
            continue
        good += 1
        lines.append(f"✓ {where_}: {build_id}" + (f" ({live[1]})" if live[1] else ""))
    if not ctx.live:
        lines.append("(not checked against Cloud Build: run with --live)")
    evidence = None
    if missing:
        found = "bare URLs, no build IDs" if ctx.deliverables_notes else f"no usable {missing[0]}"
        evidence = Evidence(
            _deliverables_where(ctx, missing[0].split(".")[2] + ":", "services"),
            f"{found} ({len(missing)} of {len(SLOTS)})",
            "a build ID (UUID) under each service",
        )
    return Outcome(good / len(SLOTS), lines, evidence)


@check("service_url")
def service_url(ctx: Context, app: str) -> Outcome:
    broken = _deliverables_problem(ctx)
    if broken:
        return broken
    version, part = SLOTS[app]
    where_ = f"services.{version}.{part}.service_url"
    problem = ctx.deliverable_problem(app, "service_url")
    if problem:
        return Outcome.fail(
            problem,
            evidence=Evidence(
                _deliverables_where(ctx, f"{part}:"), problem, f"the {app} Cloud Run URL"
            ),
        )
    url = ctx.service_url(app)
    lines = [*ctx.deliverables_notes, f"{where_}: {url}"]
    if not ctx.live:
        return Outcome.ok(*lines, "(not checked live: run with --live)")
    ok, detail = ctx.live.services.get(app, (None, ["not checked"]))
    lines += detail
    if ok is False:
        return Outcome(
            0.0,
            lines,
            Evidence(
                _deliverables_where(ctx, str(url)),
                f"{url}: {detail[0] if detail else ''}",
                "a service that answers",
            ),
        )
    return Outcome(1.0, lines)
