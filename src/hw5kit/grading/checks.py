"""The checks the rubric names, and the evaluation of a whole rubric.

A check takes the grading ``Context`` (and the item's ``args``) and returns an ``Outcome``: the
fraction of the item's points earned (0 or 1 for most items; build IDs earn a quarter each)
and lines that say what was found and, on failure, what to change. A check never raises for
anything a submission contains: an unexpected error becomes a failed item whose message says
so (and is a bug to report), never a crash of the grader.
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..gcloud_fake import cloudbuild as cb
from . import buildconfig as bc
from .cloud import Call
from .grader import SLOTS, Context
from .rubric import Item
from .runs import ScriptRun, deploy_script_name, where

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
IMAGE_NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
MARKERS = {
    bc.BASE: "${_BASE_IMAGE_URI}",
    bc.APP: "${_APP_URI}",
    bc.ID: "${BUILD_ID}",
    "@PORT@": "${_SERVING_PORT}",
    bc.DOCKERFILE: "${_TARGET_DOCKERFILE}",
}
MAX_ANSWER = 6000
_ROUTINE_LOG = re.compile(
    r"Step #\d+: (docker |\(fake|FROM |Successfully|using cache|cache image|Status:|"
    r"[\w.-]+: digest|failure allowed)"
)


@dataclass
class Outcome:
    fraction: float
    lines: list[str] = field(default_factory=list)

    @classmethod
    def ok(cls, *lines: str) -> Outcome:
        return cls(1.0, [line for line in lines if line])

    @classmethod
    def fail(cls, *lines: str) -> Outcome:
        return cls(0.0, [line for line in lines if line])


@dataclass
class Result:
    item: Item
    score: float | None  # None: graded by hand
    passed: bool
    output: str

    @property
    def manual(self) -> bool:
        return self.item.manual

    @property
    def lost(self) -> float:
        return 0.0 if self.score is None else self.item.points - self.score


CHECKS: dict[str, Callable[..., Outcome]] = {}


def check(name: str):
    def register(fn: Callable[..., Outcome]) -> Callable[..., Outcome]:
        CHECKS[name] = fn
        return fn

    return register


def show(text: str | None) -> str:
    """Markers back to the ${...} a student wrote."""
    if text is None:
        return "(none)"
    for marker, shown in MARKERS.items():
        text = text.replace(marker, shown)
    return re.sub(r"@([A-Z_]+)@", r"${\1}", text)


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
        if item.manual:
            results.append(Result(item, None, fraction >= 1.0, output))
        else:
            score = round(item.points * fraction, 4)
            results.append(Result(item, score, fraction >= 1.0, output))
    return results


# --- Q1: the Cloud Build file ----------------------------------------------------------------


def _config_where(ctx: Context) -> str:
    return where(ctx.config_rel) if ctx.config_rel else "(no Cloud Build file)"


def analysed(name: str):
    """A check of the Cloud Build file's analysis: registered like :func:`check`, called as
    ``fn(ctx, analysis, **args)`` only when the file was read and has steps, else failed."""

    def register(fn: Callable[..., Outcome]) -> Callable[..., Outcome]:
        @functools.wraps(fn)
        def run(ctx: Context, **args) -> Outcome:
            if ctx.analysis is None:
                return Outcome.fail(ctx.config_problem or "the Cloud Build file could not be read")
            if not ctx.analysis.steps:
                return Outcome.fail(f"{_config_where(ctx)}: no `steps` list")
            return fn(ctx, ctx.analysis, **args)

        return check(name)(run)

    return register


@check("cloudbuild_valid")
def cloudbuild_valid(ctx: Context) -> Outcome:
    if ctx.config_problem or ctx.config_rel is None:
        return Outcome.fail(ctx.config_problem or "no Cloud Build file")
    try:
        config = cb.load_config(ctx.snapshot.root / ctx.config_rel)
    except cb.ConfigProblem as exc:
        message = str(exc).replace(str(ctx.snapshot.root) + "/", "")
        return Outcome.fail(
            f"{_config_where(ctx)}: gcloud would refuse it: {message}",
            "Cloud Build's fields: https://cloud.google.com/build/docs/build-config-file-schema",
        )
    return Outcome.ok(
        f"{_config_where(ctx)}: valid, {len(config['steps'])} steps",
    )


@analysed("base_tags")
def base_tags(ctx: Context, a: bc.Analysis) -> Outcome:
    if not a.builds_of(bc.BASE):
        return Outcome.fail(
            "no `docker build` tags ${_BASE_IMAGE_URI}: build the base image with "
            "-t ${_BASE_IMAGE_URI}:${BUILD_ID} -t ${_BASE_IMAGE_URI}:latest"
        )
    tags = a.tags_of(bc.BASE)
    wanted = [f"{bc.BASE}:{bc.ID}", f"{bc.BASE}:latest"]
    absent = [t for t in wanted if t not in tags]
    found = ", ".join(sorted(show(t) for t in tags))
    if absent:
        return Outcome.fail(
            f"the base image is tagged {found}; missing: {', '.join(show(t) for t in absent)}",
            "tag it with the build ID (a fixed version) and latest (what the next build starts "
            "from)",
        )
    return Outcome.ok(f"the base image is tagged {found}")


@analysed("base_pushed")
def base_pushed(ctx: Context, a: bc.Analysis) -> Outcome:
    wanted = [f"{bc.BASE}:{bc.ID}", f"{bc.BASE}:latest"]
    absent = [t for t in wanted if not a.pushed(t)]
    if absent:
        return Outcome.fail(
            f"not pushed: {', '.join(show(t) for t in absent)}",
            "push each tag (a `docker push` step, or list it under `images:`)",
        )
    return Outcome.ok(f"pushed: {', '.join(show(t) for t in wanted)}")


@analysed("app_tags")
def app_tags(ctx: Context, a: bc.Analysis) -> Outcome:
    if not a.builds_of(bc.APP):
        return Outcome.fail(
            "no `docker build` tags ${_APP_URI}: build the app image with "
            "-t ${_APP_URI}:${BUILD_ID}"
        )
    tags = a.tags_of(bc.APP)
    wanted = f"{bc.APP}:{bc.ID}"
    extra = sorted(t for t in tags if t != wanted)
    problems = []
    if wanted not in tags:
        problems.append("the app image is not tagged ${_APP_URI}:${BUILD_ID}")
    if extra:
        problems.append(
            f"the app image is also tagged {', '.join(show(t) for t in extra)}: it gets the "
            "build ID only (each deploy names the exact build; latest belongs to the base)"
        )
    if problems:
        return Outcome.fail(*problems)
    return Outcome.ok("the app image is tagged ${_APP_URI}:${BUILD_ID} only")


@analysed("app_from_base")
def app_from_base(ctx: Context, a: bc.Analysis) -> Outcome:
    apps = a.builds_of(bc.APP)
    if not apps:
        return Outcome.fail("no `docker build` tags ${_APP_URI}")
    build = apps[-1]
    problems = []
    dockerfile = (build.file or "").removeprefix("./")
    if dockerfile != bc.DOCKERFILE:
        problems.append(
            f"the app build uses -f {show(build.file) if build.file else '(none: ./Dockerfile)'}"
            "; build -f ${_TARGET_DOCKERFILE}"
        )
    base_args = {k: v for k, v in build.build_args.items() if v.startswith(bc.BASE)}
    if not base_args:
        problems.append(
            "the app build passes no build argument holding the base image (e.g. --build-arg "
            "BASE_IMAGE=${_BASE_IMAGE_URI}:${BUILD_ID}): its Dockerfile cannot start FROM the base"
        )
    bases = a.builds_of(bc.BASE)
    if bases:
        base = bases[0].command
        app = build.command
        if app.step == base.step:
            after = a.commands.index(app) > a.commands.index(base)
        else:
            after = a.runs_after(app.step, base.step)
        if not after:
            problems.append(
                f"the app build (step {app.step}) does not wait for the base build (step "
                f"{base.step}): check waitFor"
            )
    if problems:
        return Outcome.fail(*problems)
    arg = ", ".join(f"{k}={show(v)}" for k, v in base_args.items())
    return Outcome.ok(f"the app image is built from ${{_TARGET_DOCKERFILE}} with {arg}")


@analysed("app_pushed")
def app_pushed(ctx: Context, a: bc.Analysis) -> Outcome:
    if not a.pushed(f"{bc.APP}:{bc.ID}"):
        return Outcome.fail(
            "${_APP_URI}:${BUILD_ID} is not pushed: add a `docker push` step or list it under "
            "`images:` (Cloud Run deploys only what is in Artifact Registry)"
        )
    return Outcome.ok("${_APP_URI}:${BUILD_ID} is pushed")


@analysed("substitutions_used")
def substitutions_used(ctx: Context, a: bc.Analysis) -> Outcome:
    problems = [
        f"${{{name}}} is never used"
        for name in ctx.assignment["substitutions"]
        if name not in a.referenced
    ]
    problems += bc.unknown_references(a)
    if problems:
        return Outcome.fail(*problems)
    return Outcome.ok("uses " + ", ".join(f"${{{n}}}" for n in ctx.assignment["substitutions"]))


@analysed("cache_step")
def cache_step(ctx: Context, a: bc.Analysis) -> Outcome:
    bases = a.builds_of(bc.BASE)
    if not bases:
        return Outcome.fail("no base image build to speed up")
    base = bases[0]
    first = a.commands.index(base.command)
    before = a.commands[:first]
    pulls = [c for c in before if c.verb == "pull" and any(_is_base(x) for x in c.args)]
    cache = [c for c in base.cache_from if _is_base(c)]
    if pulls:
        pull = pulls[0]
        if not pull.tolerant:
            return Outcome.fail(
                f"step {pull.step} pulls the base image, but a failed pull fails the build: the "
                "very first build has no base to pull; add allowFailure: true (or `|| exit 0`)"
            )
        if not cache:
            return Outcome.fail(
                f"step {pull.step} pulls the base image, but the base build ignores it: add "
                "--cache-from ${_BASE_IMAGE_URI}:latest"
            )
        return Outcome.ok(
            f"step {pull.step} pulls {show(pull.args[-1])} (a failure allowed) and the base "
            f"build uses --cache-from {show(cache[0])}"
        )
    if base.command.conditional and any(
        c.verb in ("manifest", "pull", "image", "inspect") and any(_is_base(x) for x in c.args)
        for c in a.commands[: first + 1]
    ):
        return Outcome.ok("the base build is skipped when the base image already exists")
    if base.command.conditional and _script_mentions_existing_base(a, base.command.step):
        return Outcome.ok("the base build is skipped when the base image already exists")
    return Outcome.fail(
        "nothing before the base build avoids rebuilding it from scratch: add a first step that "
        "pulls ${_BASE_IMAGE_URI}:latest (allowFailure: true) and build the base with "
        "--cache-from ${_BASE_IMAGE_URI}:latest, or skip the base build when it exists"
    )


def _is_base(ref: str) -> bool:
    return ref.startswith(bc.BASE)


def _script_mentions_existing_base(a: bc.Analysis, step: int) -> bool:
    for index in range(step + 1):
        s = a.steps[index]
        text = " ".join(str(v) for v in (s.get("script"), *(s.get("args") or [])) if v)
        if "_BASE_IMAGE_URI" in text and re.search(
            r"gcloud\s+(artifacts\s+docker\s+images|container\s+images)", text
        ):
            return True
    return False


# --- Q1: the submit script -----------------------------------------------------------------


def _shown(ctx: Context, call: Call) -> str:
    """The command line as the script issued it, the workspace's path shown as `.`."""
    text = call.shown()
    for root in ctx.workspace_roots:
        text = text.replace(f"{root}/", "./").replace(str(root), ".")
    return text


def _describe_run(run: ScriptRun) -> str:
    result = run.result
    if result is None:
        return f"`{run.command()}`: not run"
    if result.killed:
        return (
            f"`{run.command()}`: stopped by the grader after {result.duration:.1f} s: "
            f"{result.killed}"
        )
    return f"`{run.command()}`: {result.describe()} after {result.duration:.1f} s"


def _output_tail(ctx: Context, run: ScriptRun) -> list[str]:
    if run.result is None:
        return []
    text = run.result.tail()
    for root in ctx.workspace_roots:
        text = text.replace(f"{root}/", "").replace(str(root), ".")
    return ["its output ends with:", text] if text else []


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
            call = _deploy_call(ctx, app)
            if call is None:
                return _no_call(ctx, app)
            return fn(ctx, app, call)

        return scripted(name)(run)

    return register


def _submit_header(ctx: Context) -> list[str]:
    runs = ctx.runs
    lines = []
    if runs.submit_rel:
        lines.append(f"submit script: {where(runs.submit_rel)}")
    lines += runs.submit_notes
    lines += [_describe_run(r) for r in runs.submit if r.result is not None]
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
        return Outcome.fail(problem)
    calls = runs.submit_calls()
    asked = [c for run in runs.submit for c in run.calls if c.argv[:2] == ["builds", "submit"]]
    header = _submit_header(ctx)
    if calls:
        shown = [f"  {_shown(ctx, c)}" for c in calls[:4]]
        return Outcome.ok(*header, f"{len(calls)} build(s) submitted:", *shown)
    if asked:
        return Outcome.fail(
            *header, f"gcloud refused `{_shown(ctx, asked[0])}`: {asked[0].error()}"
        )
    return Outcome.fail(
        *header,
        "the script never called `gcloud builds submit`",
        *_output_tail(ctx, runs.submit[-1]),
    )


def parse_key_values(raw: str | None) -> dict[str, str]:
    """gcloud's KEY=VALUE,... syntax (with the ^DELIM^ escape for values holding commas)."""
    if not raw:
        return {}
    delimiter = ","
    match = re.match(r"^\^([^^]+)\^", raw)
    if match:
        delimiter = match.group(1)
        raw = raw[match.end() :]
    out = {}
    for item in raw.split(delimiter):
        key, eq, value = item.partition("=")
        if eq:
            out[key.strip()] = value
    return out


def _submit_problems(ctx: Context, call: Call) -> list[str]:
    a = ctx.assignment
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
    absent = [k for k in a["substitutions"] if k not in subs]
    if absent:
        problems.append(f"--substitutions lacks {', '.join(absent)}")
    registry = ctx.registry
    app = None
    app_uri = subs.get("_APP_URI")
    if app_uri is not None:
        name = app_uri.rsplit("/", 1)[-1]
        if app_uri != f"{registry}/{name}" or name not in a["apps"]:
            problems.append(
                f"_APP_URI={app_uri}; expected {registry}/APP with APP one of "
                f"{', '.join(a['apps'])}"
            )
        else:
            app = name
    base_uri = subs.get("_BASE_IMAGE_URI")
    if base_uri is not None:
        name = base_uri.rsplit("/", 1)[-1]
        if base_uri != f"{registry}/{name}" or not IMAGE_NAME_RE.match(name) or name in a["apps"]:
            problems.append(
                f"_BASE_IMAGE_URI={base_uri}; expected {registry}/base_image (no tag: the "
                "build adds :${BUILD_ID} and :latest)"
            )
    port = subs.get("_SERVING_PORT")
    if port is not None and port != str(a["serving_port"]):
        problems.append(f"_SERVING_PORT={port}; the services listen on {a['serving_port']}")
    dockerfile = subs.get("_TARGET_DOCKERFILE")
    if dockerfile is not None and app and dockerfile.removeprefix("./") != f"Dockerfile.{app}":
        problems.append(f"_TARGET_DOCKERFILE={dockerfile}; {app} is built from Dockerfile.{app}")
    extra = sorted(k for k in subs if k not in a["substitutions"])
    if extra:
        problems.append(f"--substitutions also sets {', '.join(extra)} (misspelt?)")
    return problems


def _call_label(call: Call) -> str:
    app = parse_key_values(str(call.flags.get("--substitutions") or "")).get("_APP_URI", "")
    return app.rsplit("/", 1)[-1] or "(no _APP_URI)"


@scripted("submit_arguments")
def submit_arguments(ctx: Context) -> Outcome:
    calls = ctx.runs.submit_calls()
    if not calls:
        return Outcome.fail("no `gcloud builds submit` that gcloud accepted: nothing to check")
    lines, bad = [], 0
    for call in calls:
        problems = _submit_problems(ctx, call)
        label = _call_label(call)
        if problems:
            bad += 1
            lines.append(f"{label}: " + "; ".join(problems))
        else:
            lines.append(
                f"{label}: the Cloud Build file, the repository, {ctx.assignment['region']}, "
                "the four substitutions: right"
            )
    if bad:
        return Outcome.fail(*lines)
    return Outcome.ok(*lines)


@scripted("submit_build")
def submit_build(ctx: Context) -> Outcome:
    calls = ctx.runs.submit_calls()
    if not calls:
        return Outcome.fail("no build was submitted")
    lines, bad = [], 0
    for call in calls:
        label = _call_label(call)
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
        detail = failure.group(1) if failure else call.error()
        lines.append(f"{label}: the build failed: {detail}")
        lines += [f"    {s}" for s in steps[-3:]]
    if bad:
        return Outcome.fail(*lines)
    return Outcome.ok(*lines)


# --- deliverables ------------------------------------------------------------------------------


def _deliverables_problem(ctx: Context) -> Outcome | None:
    if ctx.deliverables_problem:
        return Outcome.fail(ctx.deliverables_problem)
    return None


@check("build_ids")
def build_ids(ctx: Context) -> Outcome:
    broken = _deliverables_problem(ctx)
    if broken:
        return broken
    lines, good = [], 0
    for app, (version, part) in SLOTS.items():
        where_ = f"services.{version}.{part}.build_id"
        problem = ctx.deliverable_problem(app, "build_id")
        if problem:
            lines.append(f"✗ {problem}")
            continue
        build_id = ctx.build_id(app)
        live = (ctx.live.builds.get(app) if ctx.live else None) or (None, "")
        if live[0] is False:
            lines.append(f"✗ {where_}: {build_id}: {live[1]}")
            continue
        good += 1
        lines.append(f"✓ {where_}: {build_id}" + (f" ({live[1]})" if live[1] else ""))
    if not ctx.live:
        lines.append("(not checked against Cloud Build: run with --live)")
    return Outcome(good / len(SLOTS), lines)


@check("service_url")
def service_url(ctx: Context, app: str) -> Outcome:
    broken = _deliverables_problem(ctx)
    if broken:
        return broken
    version, part = SLOTS[app]
    where_ = f"services.{version}.{part}.service_url"
    problem = ctx.deliverable_problem(app, "service_url")
    if problem:
        return Outcome.fail(problem)
    url = ctx.service_url(app)
    lines = [f"{where_}: {url}"]
    if not ctx.live:
        return Outcome.ok(*lines, "(not checked live: run with --live)")
    ok, detail = ctx.live.services.get(app, (None, ["not checked"]))
    lines += detail
    return Outcome(0.0 if ok is False else 1.0, lines)


# --- Q3 / Q6: the deploy scripts ---------------------------------------------------------


def _deploy_runs(ctx: Context, app: str) -> list[ScriptRun]:
    return ctx.runs.deploys.get(app) or []


def _deploy_call(ctx: Context, app: str) -> Call | None:
    calls = ctx.runs.deploy_calls(app)
    good = [c for c in calls if c.exit == 0]
    parsed = [c for c in calls if c.parsed]
    return (good or parsed or [None])[-1]


def _no_call(ctx: Context, app: str) -> Outcome:
    return Outcome.fail(
        f"no `gcloud run deploy` from {deploy_script_name(app)} to check (see its "
        "'runs and deploys' item)"
    )


@scripted("deploy_runs")
def deploy_runs(ctx: Context, app: str) -> Outcome:
    runs = _deploy_runs(ctx, app)
    name = deploy_script_name(app)
    if not runs or runs[0].problem:
        problem = runs[0].problem if runs else "not run"
        if problem == "not found":
            problem = f"{name} not found (looked in deployment/ and at the top of the submission)"
        return Outcome.fail(problem)
    lines = [f"{where(runs[0].rel or name)}"]
    lines += ctx.runs.deploy_notes.get(app, [])
    lines += [_describe_run(r) for r in runs]
    calls = ctx.runs.deploy_calls(app)
    good = [c for c in calls if c.exit == 0]
    if good:
        call = good[-1]
        lines.append(f"  {_shown(ctx, call)}")
        lines.append(f"  -> {call.service_url}")
        if not call.flags.get("--allow-unauthenticated"):
            lines.append(
                "  note: without --allow-unauthenticated the service answers 403 to browsers and "
                "to the frontend, unless allUsers was granted roles/run.invoker another way"
            )
        return Outcome.ok(*lines)
    asked = [c for run in runs for c in run.calls if c.argv[:2] == ["run", "deploy"]]
    if asked:
        return Outcome.fail(*lines, f"`{_shown(ctx, asked[-1])}` failed: {asked[-1].error()}")
    return Outcome.fail(
        *lines, "the script never called `gcloud run deploy`", *_output_tail(ctx, runs[-1])
    )


@deployed("deploy_image")
def deploy_image(ctx: Context, app: str, call: Call) -> Outcome:
    image = str(call.flags.get("--image") or "")
    if not image:
        return Outcome.fail("no --image: deploy the image Cloud Build pushed")
    expected_repo = f"{ctx.registry}/{app}"
    ref = cb.parse_reference(image)
    if ref is None:
        return Outcome.fail(f"--image={image} is not an image reference")
    if ref.repository != expected_repo:
        other = ref.repository.rsplit("/", 1)[-1]
        if ref.repository.rsplit("/", 1)[0] == ctx.registry and other in ctx.assignment["apps"]:
            return Outcome.fail(f"deploys the {other} image, not {app}: {image}")
        return Outcome.fail(
            f"--image={image} is not in the student's registry: expected {expected_repo}:BUILD_ID"
        )
    if ref.digest:
        return Outcome.ok(f"--image={image}")
    recorded = ctx.build_id(app)
    if not ref.tag or ref.tag == "latest":
        return Outcome.fail(
            f"--image={image}: the app image is tagged with its build ID only, so "
            f"{expected_repo}:latest does not exist; deploy {expected_repo}:BUILD_ID"
        )
    if recorded and ref.tag != recorded:
        return Outcome.fail(
            f"--image={image}: deliverables.yaml records build {recorded} for {app}; deploy that "
            "build (or record the one deployed)"
        )
    if not recorded and not UUID_RE.match(ref.tag):
        return Outcome.fail(f"--image={image}: the tag {ref.tag!r} is not a build ID")
    return Outcome.ok(f"--image={image}")


@deployed("deploy_port")
def deploy_port(ctx: Context, app: str, call: Call) -> Outcome:
    port = call.flags.get("--port")
    expected = str(ctx.assignment["serving_port"])
    if port is None:
        return Outcome.fail(
            f"no --port: Cloud Run would send requests to 8080, the app listens on {expected}"
        )
    if str(port) != expected:
        return Outcome.fail(f"--port={port}; the app listens on {expected} (_SERVING_PORT)")
    return Outcome.ok(f"--port={port}")


@deployed("serving_url")
def serving_url(ctx: Context, app: str, call: Call) -> Outcome:
    version = SLOTS[app][0]
    backend = f"backend_{version}"
    env = parse_key_values(str(call.flags.get("--set-env-vars") or ""))
    env.update(parse_key_values(str(call.flags.get("--update-env-vars") or "")))
    value = env.get("SERVING_URL")
    if value is None:
        return Outcome.fail(
            "the frontend is deployed without SERVING_URL (--set-env-vars=SERVING_URL=...): it "
            "cannot reach its backend"
        )
    expected = {
        u.rstrip("/"): label
        for u, label in (
            (ctx.service_url(backend), "the URL deliverables.yaml records for it"),
            (ctx.runs.backend_urls.get(version), "the URL its deploy gave"),
        )
        if u
    }
    if value.rstrip("/") in expected:
        return Outcome.ok(f"SERVING_URL={value}: {backend}, {expected[value.rstrip('/')]}")
    other = "v2" if version == "v1" else "v1"
    others = {
        u.rstrip("/")
        for u in (ctx.service_url(f"backend_{other}"), ctx.runs.backend_urls.get(other))
        if u
    }
    if value.rstrip("/") in others:
        return Outcome.fail(f"SERVING_URL={value} is the {other} backend, not the {version} one")
    known = " or ".join(sorted(expected)) or "(unknown: no v1 backend URL anywhere)"
    return Outcome.fail(f"SERVING_URL={value!r} is not the {backend} URL ({known})")


# --- short answers -----------------------------------------------------------------------------


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
