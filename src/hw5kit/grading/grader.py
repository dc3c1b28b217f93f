"""Grading one submission: snapshot, student ID, scripts run in the sandbox against the fake
gcloud, static reading of the Cloud Build file, deliverables and short answers, optional live
checks, then every rubric item scored (``checks/``) into a ``Grading``.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import naming
from ..pipeline import deliverables as dl
from . import answers as answers_mod
from . import buildconfig, builds, checks, layout
from .cloud import CallLimits, FakeCloud
from .context import Context, Options
from .folders import grading_folder
from .relay import GcloudRelay
from .rubric import load
from .runs import Runner, ScriptRun, deploy_script_name
from .sandbox import Sandbox
from .submission import FileProblem, Snapshot, load_yaml

PROJECT_RE = re.compile(r"\bhw5-([0-9a-z][0-9a-z-]*[0-9a-z]|[0-9a-z])\b")
DESCRIBE_MISSING = "Cannot find service ["


def _student_ids(snapshot: Snapshot, rels: list[str]) -> Counter:
    found: Counter = Counter()
    for rel in rels:
        try:
            text = snapshot.read_text(rel)
        except FileProblem:
            continue
        for match in PROJECT_RE.finditer(text.lower()):
            candidate = match.group(1)
            # hw5-images and hw5-api are other resources: a student ID has digits in practice
            if any(ch.isdigit() for ch in candidate) and not naming.student_id_problem(candidate):
                found[candidate] += 1
    return found


def find_student_id(ctx: Context, script_rels: list[str]) -> None:
    from_scripts = _student_ids(ctx.snapshot, script_rels)
    matricule = ""
    if ctx.answers and ctx.answers.matricule:
        digits = re.sub(r"\D", "", ctx.answers.matricule)
        matricule = digits if 4 <= len(digits) <= 12 else ""
    if ctx.options.student_id:
        ctx.student_id = naming.normalize_student_id(ctx.options.student_id)
        ctx.id_source = "given to the grader"
        others = sorted(set(from_scripts) - {ctx.student_id})
        if others:
            ctx.notes.append(
                f"the scripts name the project(s) {', '.join('hw5-' + o for o in others)}, but "
                f"the student's project is {ctx.project}"
            )
        return
    if from_scripts:
        ctx.student_id = from_scripts.most_common(1)[0][0]
        ctx.id_source = "from the project ID in the submission's files"
        if len(from_scripts) > 1:
            ctx.notes.append(
                "the files name several projects: "
                + ", ".join(f"hw5-{k} ({v}x)" for k, v in from_scripts.most_common())
                + f"; graded against {ctx.project}"
            )
        if matricule and matricule != ctx.student_id:
            ctx.notes.append(
                f"the short answers give the matricule {matricule}, the scripts use {ctx.project}"
            )
        return
    if matricule and not naming.student_id_problem(matricule):
        ctx.student_id = matricule
        ctx.id_source = "from the matricule in the short answers"
        return
    ctx.notes.append(
        "could not tell the student ID (no hw5-<id> project in the scripts, no matricule in "
        "the short answers): pass --student-id; checks that need the project fail"
    )


def read_config(ctx: Context, rel: str | None) -> None:
    ctx.config_rel = rel
    ctx.config_problem = ctx.config_raw = None
    ctx.analysis = None
    if rel is None:
        ctx.config_problem = (
            "no Cloud Build file found (looked for deployment/cloudbuild.yaml, cloudbuild.yaml "
            "and the course's cloudbuild_template.yaml, then any YAML file with `steps`)"
        )
        return
    try:
        text = ctx.snapshot.read_text(rel)
        ctx.config_raw = load_yaml(text, rel)
    except FileProblem as exc:
        ctx.config_problem = str(exc)
        return
    if not isinstance(ctx.config_raw, dict):
        ctx.config_problem = (
            f"{rel} is not a YAML mapping with `steps` (found {type(ctx.config_raw).__name__})"
        )
        return
    ctx.analysis = buildconfig.analyse(ctx.config_raw)


def read_deliverables(ctx: Context) -> None:
    rel = ctx.snapshot.locate("deliverables.yaml", ("", "deployment"))
    ctx.deliverables_rel = rel
    if rel is None:
        ctx.deliverables_problem = "deliverables.yaml not found in the submission"
        return
    try:
        text = ctx.snapshot.read_text(rel)
        data = load_yaml(text, rel)  # size, binary, alias and syntax checks
    except FileProblem as exc:
        ctx.deliverables_problem = str(exc)
        return
    data, ctx.deliverables_notes = layout.normalize_deliverables(data)
    ctx.deliverables = data
    for problem in dl.problems(data, "gcp"):
        ctx.deliverables_problems[problem.where] = problem


def _run_scripts(ctx: Context, base: Path) -> None:
    assert ctx.project is not None
    limits = ctx.options.limits
    cloud = FakeCloud(
        base / "state",
        ctx.project,
        CallLimits(limits.gcloud_timeout, limits.gcloud_memory, int(limits.gcloud_timeout)),
    )
    python = ctx.sandbox.python or "/usr/bin/python3"
    with GcloudRelay(
        base, cloud.handle, python=python, limit=ctx.options.limits.gcloud_calls
    ) as relay:
        runner = Runner(
            ctx.snapshot,
            ctx.sandbox,
            cloud,
            relay,
            base,
            assignment=ctx.assignment,
            analysis=ctx.analysis,
        )
        runs = ctx.runs
        runs.submit_rels = list(ctx.submit_rels)
        runs.submit_rel = runs.submit_rels[0] if runs.submit_rels else None
        runs.submit, runs.submit_notes = runner.run_submits(runs.submit_rels)
        ctx.build_records = cloud.builds()
        cloud.allow_any_image()
        for version in ("v1", "v2"):
            backend, frontend = f"backend_{version}", f"frontend_{version}"
            rel = ctx.snapshot.locate(deploy_script_name(backend))
            runs.deploys[backend], runs.deploy_notes[backend] = runner.run_deploy(
                rel, ctx.build_id(backend)
            )
            deployed = [c for c in runs.deploy_calls(backend) if c.exit == 0 and c.service_url]
            if deployed:
                runs.backend_urls[version] = deployed[-1].service_url or ""
            rel = ctx.snapshot.locate(deploy_script_name(frontend))
            front_runs, notes = runner.run_deploy(rel, ctx.build_id(frontend))
            missing = _missing_backend(front_runs[-1])
            if missing and version not in runs.backend_urls:
                image = f"{ctx.registry}/{backend}:{ctx.build_id(backend) or 'stand-in'}"
                url = cloud.deploy_stand_in(
                    missing, image, ctx.assignment["region"], ctx.assignment["serving_port"]
                )
                if url:
                    runs.backend_urls[version] = url
                    runs.stand_ins.append(missing)
                    notes.append(
                        f"the frontend looks up the Cloud Run service {missing!r}, which "
                        f"deploy_{backend}.sh did not deploy: the grader deployed a stand-in "
                        f"{missing!r} ({url}) and ran the frontend's script again"
                    )
                    again, more = runner.run_deploy(rel, ctx.build_id(frontend))
                    front_runs += again
                    notes += more
            runs.deploys[frontend], runs.deploy_notes[frontend] = front_runs, notes
        ctx.workspace_roots = [runner.runs_dir / str(i) for i in range(1, runner.count + 1)]
        ctx.gcloud_peak_kib = cloud.peak_call_kib
        ctx.layout_notes = runner.layout_notes


def _missing_backend(run: ScriptRun) -> str | None:
    if any(c.command == "run deploy" and c.exit == 0 for c in run.calls):
        return None
    for call in run.calls:
        if call.command == "run services describe" and DESCRIBE_MISSING in call.stderr:
            return call.positionals[0] if call.positionals else None
    return None


@dataclass
class Grading:
    context: Context
    results: list[Any]
    duration: float


def grade(
    submission: Path, options: Options | None = None, *, sandbox: Sandbox | None = None
) -> Grading:
    """Grade the submission folder; never raises for anything the submission contains."""
    options = options or Options()
    started = time.monotonic()
    rubric = load()
    sandbox = sandbox or Sandbox.detect(options.sandbox, options.limits)
    with grading_folder() as base:
        snapshot = Snapshot.take(Path(submission), base / "snapshot")
        ctx = Context(rubric, options, snapshot, sandbox)
        ctx.answers = answers_mod.find(snapshot)
        if ctx.answers.path and not ctx.answers.problem:
            for problem in ctx.answers.header_problems():
                ctx.notes.append(f"{ctx.answers.path}: {problem}")
        read_deliverables(ctx)
        ctx.config_rels, config_notes = layout.locate_configs(snapshot)
        ctx.submit_rels, submit_notes = layout.locate_submits(snapshot)
        ctx.notes += config_notes + submit_notes
        read_config(ctx, ctx.config_rels[0] if ctx.config_rels else None)
        scripts = [
            rel
            for rel in (
                *ctx.submit_rels,
                *(snapshot.locate(deploy_script_name(a)) for a in rubric.assignment["apps"]),
                *ctx.config_rels,
            )
            if rel
        ]
        find_student_id(ctx, scripts)
        if ctx.project:
            try:
                _run_scripts(ctx, base)
            except Exception as exc:  # a grader bug: the static checks still count
                ctx.notes.append(
                    f"the grader could not run the scripts ({type(exc).__name__}: {exc}); "
                    "please report it to the course staff with this submission"
                )
        try:
            ctx.units = builds.build_units(ctx, ctx.config_rels)
        except Exception as exc:  # a grader bug: the items say the file could not be read
            ctx.notes.append(
                f"the grader could not read the builds ({type(exc).__name__}: {exc}); please "
                "report it to the course staff with this submission"
            )
        used = sorted({u.config_rel for u in ctx.units if u.call and u.config_rel})
        if used and ctx.config_rel not in used:
            ctx.notes.append(
                f"graded {', '.join(used)}: the Cloud Build file(s) the submit script submits "
                f"(found first: {ctx.config_rel})"
            )
        if used:
            read_config(ctx, used[0])
        if options.live:
            from . import live

            try:
                ctx.live = live.run(ctx)
            except Exception as exc:
                ctx.notes.append(f"the live checks failed to run ({type(exc).__name__}: {exc})")
        results = checks.evaluate(ctx)
    return Grading(ctx, results, time.monotonic() - started)


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False)


__all__ = ["Context", "Grading", "Options", "grade"]
