"""Q1.8 to Q1.10: the submit script, by what it did in the sandbox (it runs and submits, with
the right arguments, and the build succeeds)."""

from __future__ import annotations

import re
from pathlib import Path

from ... import naming
from .. import buildconfig as bc
from ..builds import parse_key_values
from ..cloud import Call
from ..context import Context
from ..evidence import Evidence, line_of
from ..outcome import Outcome
from ..runs import where
from .common import describe_run, hide_workspace, output_tail, script_of, shown_call, unit_of
from .registry import scripted

_ROUTINE_LOG = re.compile(
    r"Step #\d+: (docker |\(fake|FROM |Successfully|using cache|cache image|Status:|"
    r"[\w.-]+: digest|failure allowed)"
)


def _submit_header(ctx: Context) -> list[str]:
    runs = ctx.runs
    lines = []
    for rel in runs.submit_rels or ([runs.submit_rel] if runs.submit_rel else []):
        lines.append(f"submit script: {where(rel)}")
    lines += runs.submit_notes
    lines += [describe_run(r) for r in runs.submit if r.result is not None]
    return lines


@scripted("submit_runs")
def submit_runs(ctx: Context) -> Outcome:
    runs = ctx.runs
    if not runs.submit or runs.submit[0].problem:
        problem = runs.submit[0].problem if runs.submit else "not run"
        if problem == "not found":
            problem = (
                "no submit script found (looked for deployment/submit_build.sh, "
                "submit_build.sh, the course's submit_build_template.sh, then submit*.sh)"
            )
        return Outcome.fail(
            problem,
            evidence=Evidence(
                runs.submit_rel or "(no submit script)", problem, "deployment/submit_build.sh"
            ),
        )
    calls = runs.submit_calls()
    asked = [c for run in runs.submit for c in run.calls if c.argv[:2] == ["builds", "submit"]]
    header = _submit_header(ctx)
    if calls:
        shown = [f"  {shown_call(ctx, c)}" for c in calls[:4]]
        return Outcome.ok(*header, f"{len(calls)} build(s) submitted:", *shown)
    if asked:
        return Outcome.fail(
            *header,
            f"gcloud refused `{shown_call(ctx, asked[0])}`: {asked[0].error()}",
            evidence=Evidence(
                _submit_where(ctx, asked[0]),
                f"gcloud refused it: {asked[0].error()}",
                "a `gcloud builds submit` gcloud accepts",
            ),
        )
    return Outcome.fail(
        *header,
        "the script never called `gcloud builds submit`",
        *output_tail(ctx, runs.submit[-1]),
        evidence=Evidence(
            runs.submit_rel or "(no submit script)",
            describe_run(runs.submit[-1]) + ", no `gcloud builds submit`",
            "a `gcloud builds submit` of the build",
        ),
    )


def _name_problem(ctx: Context, key: str, value: str, app: str | None) -> str | None:
    """Why ``value`` is not right for the image substitution ``key`` (None: it is)."""
    a = ctx.assignment
    registry = ctx.registry
    name = value.rsplit("/", 1)[-1]
    if key == "_APP_URI" and (value != f"{registry}/{name}" or name not in a["apps"]):
        return f"expected {registry}/APP with APP one of {', '.join(a['apps'])}"
    if key == "_BASE_IMAGE_URI" and (
        value != f"{registry}/{name}" or not naming.IMAGE_NAME_RE.match(name) or name in a["apps"]
    ):
        return f"expected {registry}/base_image (no tag: the build adds :${{BUILD_ID}} and :latest)"
    return None


def _submit_problems(ctx: Context, call: Call) -> list[str]:
    a = ctx.assignment
    unit = unit_of(ctx, call)
    problems = []
    cwd = Path(call.cwd)
    roots = [r.resolve() for r in ctx.workspace_roots]
    source_arg = call.positionals[0] if call.positionals else "."
    source = (cwd / source_arg).resolve()
    if source not in roots:
        problems.append(
            f"uploads {source_arg}, not the repository root (the Dockerfiles are there): use "
            "${SCRIPT_DIR}/.."
        )
    config_arg = str(call.flags.get("--config") or "cloudbuild.yaml")
    if "Unable to read file" in call.stderr or "no such file" in call.stderr:
        problems.append(f"--config {config_arg}: no such file in the submission")
    created = re.search(r"/locations/([a-z0-9-]+)/builds/", call.stderr)
    region = call.flags.get("--region") or (created.group(1) if created else None)
    if region is None or (region == "global" and "--region" not in call.flags):
        problems.append(f"no --region: the build would run in `global`, not {a['region']}")
    elif region != a["region"]:
        problems.append(f"--region={region}; the assignment uses {a['region']}")
    project = call.flags.get("--project")
    if project and project != ctx.project:
        problems.append(f"--project={project}, not the student's project {ctx.project}")
    subs = parse_key_values(str(call.flags.get("--substitutions") or ""))
    # by effect: a substitution the config does not use may be absent when the config writes
    # the name out instead (Q1.7 judges that); what the build then names is checked below
    used = unit.analysis.referenced if unit and not unit.problem else set(a["substitutions"])
    absent = [k for k in a["substitutions"] if k not in subs and k in used]
    if absent:
        problems.append(f"--substitutions lacks {', '.join(absent)}")
    app = None
    for key, marker in (("_APP_URI", bc.APP), ("_BASE_IMAGE_URI", bc.BASE)):
        value = subs.get(key)
        written = unit.written(marker) if unit and key not in subs else None
        if value is not None:
            problem = _name_problem(ctx, key, value, None)
            if problem:
                problems.append(f"{key}={value}; {problem}")
            elif key == "_APP_URI":
                app = value.rsplit("/", 1)[-1]
        elif written:
            problem = _name_problem(ctx, key, written, None)
            if problem:
                problems.append(f"the Cloud Build file names the image {written}; {problem}")
            elif key == "_APP_URI":
                app = written.rsplit("/", 1)[-1]
    port = subs.get("_SERVING_PORT")
    if port is not None and port != str(a["serving_port"]):
        problems.append(f"_SERVING_PORT={port}; the services listen on {a['serving_port']}")
    dockerfile = subs.get("_TARGET_DOCKERFILE")
    if dockerfile is None and unit and unit.analysis.builds_of(bc.APP):
        file = unit.analysis.builds_of(bc.APP)[-1].file or ""
        dockerfile = None if bc.DOCKERFILE in file else file
    if dockerfile is not None and app and dockerfile.removeprefix("./") != f"Dockerfile.{app}":
        problems.append(f"_TARGET_DOCKERFILE={dockerfile}; {app} is built from Dockerfile.{app}")
    extra = sorted(k for k in subs if k not in a["substitutions"])
    if extra:
        problems.append(f"--substitutions also sets {', '.join(extra)} (misspelt?)")
    return problems


def _call_label(ctx: Context, call: Call) -> str:
    unit = unit_of(ctx, call)
    if unit and unit.app:
        return unit.app
    app = parse_key_values(str(call.flags.get("--substitutions") or "")).get("_APP_URI", "")
    return app.rsplit("/", 1)[-1] or "(no _APP_URI)"


def _submit_where(ctx: Context, call: Call, *needles: str) -> str:
    return line_of(ctx.snapshot, script_of(ctx, call), *needles, "builds submit")


@scripted("submit_arguments")
def submit_arguments(ctx: Context) -> Outcome:
    calls = ctx.runs.submit_calls()
    if not calls:
        return Outcome.fail(
            "no `gcloud builds submit` that gcloud accepted: nothing to check",
            evidence=Evidence(
                ctx.runs.submit_rel or "(no submit script)",
                "no build submitted",
                "gcloud builds submit --config ... --region ... --substitutions ...",
            ),
        )
    lines, bad, evidence = [], 0, None
    for call in calls:
        problems = _submit_problems(ctx, call)
        label = _call_label(ctx, call)
        if problems:
            bad += 1
            lines.append(f"{label}: " + "; ".join(problems))
            found, _, expected = problems[0].partition("; expected ")
            evidence = evidence or Evidence(
                _submit_where(ctx, call, "--substitutions", "--region"),
                found,
                expected
                or f"the Cloud Build file, the repository root, {ctx.assignment['region']} and "
                "the images of the student's registry",
            )
        else:
            lines.append(
                f"{label}: the Cloud Build file, the repository, {ctx.assignment['region']}, "
                "the images' names: right"
            )
    if bad:
        return Outcome(0.0, lines, evidence)
    return Outcome.ok(*lines)


@scripted("submit_build")
def submit_build(ctx: Context) -> Outcome:
    calls = ctx.runs.submit_calls()
    if not calls:
        return Outcome.fail(
            "no build was submitted",
            evidence=Evidence(
                ctx.runs.submit_rel or "(no submit script)", "no build", "a successful build"
            ),
        )
    lines, bad, evidence = [], 0, None
    for call in calls:
        label = _call_label(ctx, call)
        if call.exit == 0 and call.build_id:
            lines.append(f"{label}: build {call.build_id} succeeded")
            continue
        bad += 1
        failure = re.search(r"BUILD FAILURE: (.*)", call.stderr)
        steps = [
            line
            for line in call.stdout.splitlines()
            if re.match(r"Step #\d+: ", line) and not _ROUTINE_LOG.search(line)
        ]
        detail = hide_workspace(ctx, failure.group(1) if failure else call.error())
        lines.append(f"{label}: the build failed: {detail}")
        lines += [f"    {s}" for s in steps[-3:]]
        if evidence is None:
            unit = unit_of(ctx, call)
            step = re.search(r"build step (\d+)", detail)
            where_ = (
                unit.where(int(step.group(1)))
                if unit and step
                else (unit.where() if unit else _submit_where(ctx, call))
            )
            said = steps[-1].split(": ", 1)[-1] if steps else detail
            evidence = Evidence(where_, f"build {label} failed: {said}", "a build that succeeds")
    if bad:
        return Outcome(0.0, lines, evidence)
    return Outcome.ok(*lines)
