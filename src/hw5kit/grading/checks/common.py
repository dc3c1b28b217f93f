"""What the checks of several questions share: the scripts' runs and calls shown as the
student wrote them (the grader's copies of the submission shown as ``.``), and which script,
build or deploy a call belongs to."""

from __future__ import annotations

from ..builds import BuildUnit
from ..cloud import Call
from ..context import Context
from ..evidence import Evidence
from ..outcome import Outcome
from ..runs import ScriptRun, deploy_script_name


def hide_workspace(ctx: Context, text: str) -> str:
    """The grader's copies of the submission shown as the submission itself."""
    for root in ctx.workspace_roots:
        text = text.replace(f"{root}/", "").replace(str(root), ".")
    return text


def shown_call(ctx: Context, call: Call) -> str:
    """The command line as the script issued it, the workspace's path shown as `.`."""
    text = call.shown()
    for root in ctx.workspace_roots:
        text = text.replace(f"{root}/", "./").replace(str(root), ".")
    return text


def describe_run(run: ScriptRun) -> str:
    result = run.result
    if result is None:
        return f"`{run.command()}`: not run"
    if result.killed:
        return (
            f"`{run.command()}`: stopped by the grader after {result.duration:.1f} s: "
            f"{result.killed}"
        )
    return f"`{run.command()}`: {result.describe()} after {result.duration:.1f} s"


def output_tail(ctx: Context, run: ScriptRun) -> list[str]:
    if run.result is None:
        return []
    text = run.result.tail()
    for root in ctx.workspace_roots:
        text = text.replace(f"{root}/", "").replace(str(root), ".")
    return ["its output ends with:", text] if text else []


def unit_of(ctx: Context, call: Call) -> BuildUnit | None:
    return next((u for u in ctx.units if u.call is call), None)


def script_of(ctx: Context, call: Call) -> str | None:
    """The submission's path of the script that made ``call``."""
    for run in [*ctx.runs.submit, *(r for runs in ctx.runs.deploys.values() for r in runs)]:
        if any(c is call for c in run.calls):
            return run.rel
    return None


def deploy_runs_of(ctx: Context, app: str) -> list[ScriptRun]:
    return ctx.runs.deploys.get(app) or []


def deploy_call(ctx: Context, app: str) -> Call | None:
    calls = ctx.runs.deploy_calls(app)
    good = [c for c in calls if c.exit == 0]
    parsed = [c for c in calls if c.parsed]
    return (good or parsed or [None])[-1]


def no_call(ctx: Context, app: str) -> Outcome:
    name = deploy_script_name(app)
    rel = next((r.rel for r in deploy_runs_of(ctx, app) if r.rel), None)
    return Outcome.fail(
        f"no `gcloud run deploy` from {name} to check (see its 'runs and deploys' item)",
        evidence=Evidence(rel or f"(no {name})", "no gcloud run deploy", f"{name} deploying {app}"),
    )
