"""The checks the rubric names, and the evaluation of a whole rubric.

A check takes the grading ``Context`` (and the item's ``args``) and returns an ``Outcome``: the
fraction of the item's points earned (0 or 1 for most items; build IDs earn a quarter each)
and lines that say what was found and, on failure, what to change, with the evidence of the
deduction (``evidence.Evidence``: where, what was found, what was expected). A check never
raises for anything a submission contains: an unexpected error becomes a failed item whose
message says so (and is a bug to report), never a crash of the grader.

The build items (Q1.2 to Q1.6, Q2.1) are judged on each build the submission asks for
(``builds.BuildUnit``), by effect: names written out count as much as names from
substitutions, the app's ``FROM`` is the one its Dockerfile really gets from the build
arguments the step passes, and only the substitutions item (Q1.7) judges their use. A build
of several units (one Cloud Build file per service, or one build per image) earns each item in
proportion to the builds that do it.
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from .. import naming
from ..gcloud_fake import cloudbuild as cb
from ..gcloud_fake import docker
from . import buildconfig as bc
from .builds import BuildUnit, parse_key_values, resolve_app_from
from .cloud import Call
from .evidence import Evidence, at_line, line_of
from .grader import SLOTS, Context
from .rubric import Item
from .runs import ScriptRun, deploy_script_name, where

__all__ = ["CHECKS", "Outcome", "Result", "evaluate", "parse_key_values"]

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
    evidence: Evidence | None = None

    @classmethod
    def ok(cls, *lines: str) -> Outcome:
        return cls(1.0, [line for line in lines if line])

    @classmethod
    def fail(cls, *lines: str, evidence: Evidence | None = None) -> Outcome:
        return cls(0.0, [line for line in lines if line], evidence)


@dataclass
class Result:
    item: Item
    score: float | None  # None: graded by hand
    passed: bool
    output: str
    evidence: Evidence | None = None

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
        evidence = outcome.evidence if fraction < 1.0 else None
        if item.manual:
            results.append(Result(item, None, fraction >= 1.0, output, evidence))
        else:
            score = round(item.points * fraction, 4)
            results.append(Result(item, score, fraction >= 1.0, output, evidence))
    return results


# --- Q1: the Cloud Build file ----------------------------------------------------------------


def _config_where(ctx: Context) -> str:
    return where(ctx.config_rel) if ctx.config_rel else "(no Cloud Build file)"


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


@per_build("cloudbuild_valid", per_config=True, needs_steps=False)
def cloudbuild_valid(ctx: Context, unit: BuildUnit) -> Outcome:
    rel = unit.config_rel or ""
    try:
        config = cb.load_config(ctx.snapshot.root / rel)
    except cb.ConfigProblem as exc:
        message = str(exc).replace(str(ctx.snapshot.root) + "/", "")
        found = re.search(r"\.(\w+): unused", message)
        return Outcome.fail(
            f"{where(rel)}: gcloud would refuse it: {message}",
            "Cloud Build's fields: https://cloud.google.com/build/docs/build-config-file-schema",
            evidence=Evidence(
                line_of(ctx.snapshot, rel, f"{found.group(1)}:" if found else ""),
                message,
                "a config gcloud accepts (Cloud Build's fields only, valid YAML)",
            ),
        )
    return Outcome.ok(f"{where(rel)}: valid, {len(config['steps'])} steps")


def _first_step(unit: BuildUnit, marker: str) -> int | None:
    """The step that builds ``marker``'s image (where its push should follow)."""
    builds = unit.analysis.builds_of(marker)
    return builds[0].command.step if builds else None


def _app_build_failed(unit: BuildUnit, item: str) -> Outcome | None:
    """By effect: when the app's own build step ran and failed, no app image exists, so it is
    neither tagged nor pushed (a step cancelled by an earlier failure is judged on what it
    would do; this is the step's own failure)."""
    step = _first_step(unit, bc.APP)
    said = unit.step_failure(step) if step is not None else None
    if said is None:
        return None
    return Outcome.fail(
        f"the app build (step {step}) failed ({said}): no app image was made, so it is not {item}",
        evidence=Evidence(
            unit.where(step), f"step {step} failed: {said}", f"the app image built and {item}"
        ),
    )


def _tags_shown(unit: BuildUnit, tags) -> str:
    return ", ".join(sorted(unit.show(t) for t in tags))


@per_build("base_tags")
def base_tags(ctx: Context, unit: BuildUnit) -> Outcome:
    a = unit.analysis
    if not a.builds_of(bc.BASE):
        return Outcome.fail(
            "no `docker build` makes the base image (built from Dockerfile.base, tagged "
            "${_BASE_IMAGE_URI}): build it with -t ${_BASE_IMAGE_URI}:${BUILD_ID} -t "
            "${_BASE_IMAGE_URI}:latest",
            evidence=Evidence(
                unit.where(),
                "no docker build of the base image",
                "a step building Dockerfile.base with -t BASE:${BUILD_ID} -t BASE:latest",
            ),
        )
    build = a.builds_of(bc.BASE)[0]
    tags = unit.tags_of(bc.BASE)
    wanted = [f"{bc.BASE}:{bc.ID}", f"{bc.BASE}:latest"]
    absent = [t for t in wanted if t not in tags]
    found = _tags_shown(unit, tags)
    origin = "" if bc.BASE in unit.substituted else " (the name written out, which counts too)"
    if absent:
        return Outcome.fail(
            f"the base image is tagged {found}; missing: {', '.join(unit.show(t) for t in absent)}",
            "tag it with the build ID (a fixed version) and latest (what the next build starts "
            "from)",
            evidence=Evidence(
                unit.where(build.command.step),
                f"tags {found}",
                f"also {', '.join(unit.show(t) for t in absent)}",
            ),
        )
    return Outcome.ok(f"the base image is tagged {found}{origin}")


@per_build("base_pushed")
def base_pushed(ctx: Context, unit: BuildUnit) -> Outcome:
    wanted = [f"{bc.BASE}:{bc.ID}", f"{bc.BASE}:latest"]
    absent = [t for t in wanted if not unit.pushed(t)]
    if absent:
        shown = ", ".join(unit.show(t) for t in absent)
        return Outcome.fail(
            f"not pushed: {shown}",
            "push each tag (a `docker push` step, or list it under `images:`)",
            evidence=Evidence(
                unit.where(_first_step(unit, bc.BASE)),
                f"no push of {shown}",
                f"a docker push of {shown}",
            ),
        )
    effect = " (the fake Cloud Build pushed them)" if set(wanted) <= unit.effect_pushed else ""
    return Outcome.ok(f"pushed: {', '.join(unit.show(t) for t in wanted)}{effect}")


@per_build("app_tags")
def app_tags(ctx: Context, unit: BuildUnit) -> Outcome:
    a = unit.analysis
    if not a.builds_of(bc.APP):
        return Outcome.fail(
            "no `docker build` makes the app image (built from ${_TARGET_DOCKERFILE}, tagged "
            "${_APP_URI}): build it with -t ${_APP_URI}:${BUILD_ID}",
            evidence=Evidence(
                unit.where(),
                "no docker build of the app image",
                "a step building ${_TARGET_DOCKERFILE} with -t APP:${BUILD_ID}",
            ),
        )
    build = a.builds_of(bc.APP)[-1]
    tags = unit.tags_of(bc.APP)
    wanted = f"{bc.APP}:{bc.ID}"
    extra = sorted(t for t in tags if t != wanted)
    failed = _app_build_failed(unit, f"tagged {unit.show(wanted)}")
    if failed is not None:
        return failed
    problems = []
    if wanted not in tags:
        problems.append(f"the app image is not tagged {unit.show(wanted)}")
    if extra:
        problems.append(
            f"the app image is also tagged {', '.join(unit.show(t) for t in extra)}: it gets the "
            "build ID only (each deploy names the exact build; latest belongs to the base)"
        )
    if problems:
        return Outcome.fail(
            *problems,
            evidence=Evidence(
                unit.where(build.command.step),
                f"tags {_tags_shown(unit, tags) or '(none)'}",
                f"{unit.show(wanted)} only",
            ),
        )
    return Outcome.ok(f"the app image is tagged {unit.show(wanted)} only")


def _from_problem(
    ctx: Context, unit: BuildUnit, build: bc.Build, base_tags: set[str]
) -> tuple[str, Evidence] | None:
    """Why the app's Dockerfile does not start FROM an image the base build makes, with the
    build arguments the step really passes (None: it does, or no Dockerfile to read)."""
    passed = ", ".join(f"{k}={unit.show(v)}" for k, v in build.build_args.items()) or "none"
    step_where = unit.where(build.command.step)
    for rel, froms in resolve_app_from(ctx, unit, build):
        if froms is None:
            continue  # the course provides the Dockerfiles: a stand-in was used
        external = [f for f in froms.froms if not f.from_stage]
        if not external:
            return (
                f"{rel} has no FROM",
                Evidence(rel, "no FROM line", "FROM the base image"),
            )
        if any(bc.normalize(unit.mark(f.image)) in base_tags for f in external):
            continue
        line = external[0]
        wanted = " or ".join(sorted(unit.show(t) for t in base_tags)) or "the base image"
        at = f"{rel}:{line.line}"
        if line.unset or line.undeclared or not line.image:
            names = line.unset or line.undeclared
            declared = ", ".join(
                f"ARG {n} ({rel}:{froms.declared[n]})" for n in names if n in froms.declared
            )
            unused = froms.unused_build_args
            said = unit.step_failure(build.command.step)
            detail = (
                f"`FROM {line.written}` ({at}) gets "
                + (f"{line.image!r}" if line.image else "nothing")
                + f": the step passes --build-arg {passed}"
                + (f", but the Dockerfile reads {declared or ', '.join(names)}" if names else "")
                + (f"; docker ignores {', '.join(unused)} (not an ARG of {rel})" if unused else "")
            )
            return (
                detail + (f" (the fake Cloud Build: {said})" if said else ""),
                Evidence(
                    f"{step_where}, {at}",
                    f"--build-arg {passed}; FROM {line.written} -> {line.image or '(empty)'}",
                    f"a build argument named {' or '.join(names) or 'as the ARG in FROM'} "
                    f"holding {wanted}",
                ),
            )
        return (
            f"the app image starts FROM {unit.show(line.image)} ({at}), not the base image this "
            f"build makes ({wanted})",
            Evidence(at, f"FROM {unit.show(line.image)}", f"FROM {wanted}"),
        )
    return None


@per_build("app_from_base")
def app_from_base(ctx: Context, unit: BuildUnit) -> Outcome:
    a = unit.analysis
    apps = a.builds_of(bc.APP)
    if not apps:
        return Outcome.fail(
            "no `docker build` makes the app image",
            evidence=Evidence(unit.where(), "no docker build of the app image", "one"),
        )
    build = apps[-1]
    problems = []
    evidence = None
    dockerfile = (build.file or "").removeprefix("./")
    targets = {bc.DOCKERFILE, *(f"Dockerfile.{x}" for x in ([unit.app] if unit.app else []))}
    target_value = unit.values.get("_TARGET_DOCKERFILE", "").removeprefix("./")
    if target_value:
        targets.add(target_value)
    if PurePath(dockerfile).name not in targets and dockerfile not in targets:
        shown = unit.show(build.file) if build.file else "(none: ./Dockerfile)"
        problems.append(f"the app build uses -f {shown}; build -f ${{_TARGET_DOCKERFILE}}")
        evidence = Evidence(
            unit.where(build.command.step), f"-f {shown}", "-f ${_TARGET_DOCKERFILE}"
        )
    base_tags = unit.tags_of(bc.BASE)
    found = _from_problem(ctx, unit, build, base_tags) if base_tags else None
    if not base_tags:
        problems.append("no base image is built in this build to start FROM")
        evidence = evidence or Evidence(unit.where(), "no base build", "the base image built first")
    elif found:
        problems.append(found[0])
        evidence = evidence or found[1]
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
            evidence = evidence or Evidence(
                unit.where(app.step),
                f"step {app.step} may start before step {base.step}",
                "waitFor the base build",
            )
    if problems:
        return Outcome.fail(*problems, evidence=evidence)
    arg = ", ".join(f"{k}={unit.show(v)}" for k, v in build.build_args.items()) or "no argument"
    return Outcome.ok(
        f"the app image is built from {unit.show(build.file or 'Dockerfile')} with {arg}, FROM "
        "the base image this build makes"
    )


@per_build("app_pushed")
def app_pushed(ctx: Context, unit: BuildUnit) -> Outcome:
    wanted = f"{bc.APP}:{bc.ID}"
    failed = _app_build_failed(unit, "pushed")
    if failed is not None:
        return failed
    if not unit.pushed(wanted):
        return Outcome.fail(
            f"{unit.show(wanted)} is not pushed: add a `docker push` step or list it under "
            "`images:` (Cloud Run deploys only what is in Artifact Registry)",
            evidence=Evidence(
                unit.where(_first_step(unit, bc.APP)),
                f"no push of {unit.show(wanted)}",
                f"a push of {unit.show(wanted)}",
            ),
        )
    effect = " (the fake Cloud Build pushed it)" if wanted in unit.effect_pushed else ""
    return Outcome.ok(f"{unit.show(wanted)} is pushed{effect}")


@per_build("substitutions_used", per_config=True)
def substitutions_used(ctx: Context, unit: BuildUnit) -> Outcome:
    a = unit.analysis
    unused = [name for name in ctx.assignment["substitutions"] if name not in a.referenced]
    problems = [f"${{{name}}} is never used" for name in unused]
    written = [unit.written(m) for m in (bc.BASE, bc.APP) if unit.written(m)]
    if written:
        problems.append(
            "the image names are written out (" + ", ".join(written) + ") instead of coming "
            "from the substitutions: the same file cannot build the other images"
        )
    misspelt = bc.unknown_references(a)
    problems += misspelt
    if problems:
        found = f"{', '.join(unused)} unused" if unused else (misspelt or problems)[0]
        needle = next((n.split("}")[0].lstrip("${") for n in misspelt), (written or [""])[0])
        return Outcome.fail(
            *problems,
            evidence=Evidence(
                line_of(ctx.snapshot, unit.config_rel, needle) if needle else unit.where(),
                found,
                "the four substitutions " + ", ".join(ctx.assignment["substitutions"]) + " used",
            ),
        )
    return Outcome.ok("uses " + ", ".join(f"${{{n}}}" for n in ctx.assignment["substitutions"]))


@per_build("cache_step", per_config=True)
def cache_step(ctx: Context, unit: BuildUnit) -> Outcome:
    a = unit.analysis
    bases = a.builds_of(bc.BASE)
    if not bases:
        return Outcome.fail(
            "no base image build to speed up",
            evidence=Evidence(unit.where(), "no base build", "a cached base build"),
        )
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
                "very first build has no base to pull; add allowFailure: true (or `|| exit 0`)",
                evidence=Evidence(
                    unit.where(pull.step),
                    f"docker pull {unit.show(pull.args[-1])} that may not fail",
                    "allowFailure: true (or `|| exit 0`)",
                ),
            )
        if not cache:
            return Outcome.fail(
                f"step {pull.step} pulls the base image, but the base build ignores it: add "
                "--cache-from ${_BASE_IMAGE_URI}:latest",
                evidence=Evidence(
                    unit.where(base.command.step),
                    "no --cache-from on the base build",
                    "--cache-from ${_BASE_IMAGE_URI}:latest",
                ),
            )
        return Outcome.ok(
            f"step {pull.step} pulls {unit.show(pull.args[-1])} (a failure allowed) and the base "
            f"build uses --cache-from {unit.show(cache[0])}"
        )
    if base.command.conditional and any(
        c.verb in ("manifest", "pull", "image", "inspect") and any(_is_base(x) for x in c.args)
        for c in a.commands[: first + 1]
    ):
        return Outcome.ok("the base build is skipped when the base image already exists")
    if base.command.conditional and _script_mentions_existing_base(unit, base.command.step):
        return Outcome.ok("the base build is skipped when the base image already exists")
    return Outcome.fail(
        "nothing before the base build avoids rebuilding it from scratch: add a first step that "
        "pulls ${_BASE_IMAGE_URI}:latest (allowFailure: true) and build the base with "
        "--cache-from ${_BASE_IMAGE_URI}:latest, or skip the base build when it exists",
        evidence=Evidence(
            unit.where(base.command.step),
            "the base is built from scratch every time",
            "a pull of BASE:latest (failure allowed) + --cache-from, or a skipped base build",
        ),
    )


def _is_base(ref: str) -> bool:
    return ref.startswith(bc.BASE)


def _script_mentions_existing_base(unit: BuildUnit, step: int) -> bool:
    names = ["_BASE_IMAGE_URI", *([unit.written(bc.BASE)] if unit.written(bc.BASE) else [])]
    for index in range(step + 1):
        s = unit.analysis.steps[index]
        text = " ".join(str(v) for v in (s.get("script"), *(s.get("args") or [])) if v)
        if any(name in text for name in names) and re.search(
            r"gcloud\s+(artifacts\s+docker\s+images|container\s+images)", text
        ):
            return True
    return False


# --- Q1: the submit script -----------------------------------------------------------------


def _hide_workspace(ctx: Context, text: str) -> str:
    """The grader's copies of the submission shown as the submission itself."""
    for root in ctx.workspace_roots:
        text = text.replace(f"{root}/", "").replace(str(root), ".")
    return text


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
    for rel in runs.submit_rels or ([runs.submit_rel] if runs.submit_rel else []):
        lines.append(f"submit script: {where(rel)}")
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
        shown = [f"  {_shown(ctx, c)}" for c in calls[:4]]
        return Outcome.ok(*header, f"{len(calls)} build(s) submitted:", *shown)
    if asked:
        return Outcome.fail(
            *header,
            f"gcloud refused `{_shown(ctx, asked[0])}`: {asked[0].error()}",
            evidence=Evidence(
                _submit_where(ctx, asked[0]),
                f"gcloud refused it: {asked[0].error()}",
                "a `gcloud builds submit` gcloud accepts",
            ),
        )
    return Outcome.fail(
        *header,
        "the script never called `gcloud builds submit`",
        *_output_tail(ctx, runs.submit[-1]),
        evidence=Evidence(
            runs.submit_rel or "(no submit script)",
            _describe_run(runs.submit[-1]) + ", no `gcloud builds submit`",
            "a `gcloud builds submit` of the build",
        ),
    )


def _unit_of(ctx: Context, call: Call) -> BuildUnit | None:
    return next((u for u in ctx.units if u.call is call), None)


def _script_of(ctx: Context, call: Call) -> str | None:
    """The submission's path of the script that made ``call``."""
    for run in [*ctx.runs.submit, *(r for runs in ctx.runs.deploys.values() for r in runs)]:
        if any(c is call for c in run.calls):
            return run.rel
    return None


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
    unit = _unit_of(ctx, call)
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
    unit = _unit_of(ctx, call)
    if unit and unit.app:
        return unit.app
    app = parse_key_values(str(call.flags.get("--substitutions") or "")).get("_APP_URI", "")
    return app.rsplit("/", 1)[-1] or "(no _APP_URI)"


def _submit_where(ctx: Context, call: Call, *needles: str) -> str:
    return line_of(ctx.snapshot, _script_of(ctx, call), *needles, "builds submit")


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
        detail = _hide_workspace(ctx, failure.group(1) if failure else call.error())
        lines.append(f"{label}: the build failed: {detail}")
        lines += [f"    {s}" for s in steps[-3:]]
        if evidence is None:
            unit = _unit_of(ctx, call)
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


# --- deliverables ------------------------------------------------------------------------------


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


# --- Q3 / Q6: the deploy scripts ---------------------------------------------------------


def _deploy_runs(ctx: Context, app: str) -> list[ScriptRun]:
    return ctx.runs.deploys.get(app) or []


def _deploy_call(ctx: Context, app: str) -> Call | None:
    calls = ctx.runs.deploy_calls(app)
    good = [c for c in calls if c.exit == 0]
    parsed = [c for c in calls if c.parsed]
    return (good or parsed or [None])[-1]


def _no_call(ctx: Context, app: str) -> Outcome:
    name = deploy_script_name(app)
    rel = next((r.rel for r in _deploy_runs(ctx, app) if r.rel), None)
    return Outcome.fail(
        f"no `gcloud run deploy` from {name} to check (see its 'runs and deploys' item)",
        evidence=Evidence(rel or f"(no {name})", "no gcloud run deploy", f"{name} deploying {app}"),
    )


def _deploy_where(ctx: Context, call: Call, *needles: str) -> str:
    return line_of(ctx.snapshot, _script_of(ctx, call), *needles, "run deploy")


@scripted("deploy_runs")
def deploy_runs(ctx: Context, app: str) -> Outcome:
    runs = _deploy_runs(ctx, app)
    name = deploy_script_name(app)
    if not runs or runs[0].problem:
        problem = runs[0].problem if runs else "not run"
        if problem == "not found":
            problem = f"{name} not found (looked in deployment/ and at the top of the submission)"
        return Outcome.fail(
            problem,
            evidence=Evidence(
                f"(no {name})" if "not found" in problem else name, problem, f"deployment/{name}"
            ),
        )
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
        return Outcome.fail(
            *lines,
            f"`{_shown(ctx, asked[-1])}` failed: {asked[-1].error()}",
            evidence=Evidence(
                _deploy_where(ctx, asked[-1]),
                f"gcloud: {asked[-1].error()}",
                "a `gcloud run deploy` that succeeds",
            ),
        )
    return Outcome.fail(
        *lines,
        "the script never called `gcloud run deploy`",
        *_output_tail(ctx, runs[-1]),
        evidence=Evidence(
            runs[0].rel or name,
            _describe_run(runs[-1]) + ", no `gcloud run deploy`",
            f"a `gcloud run deploy` of {app}",
        ),
    )


@deployed("deploy_image")
def deploy_image(ctx: Context, app: str, call: Call) -> Outcome:
    image = str(call.flags.get("--image") or "")
    expected_repo = naming.image_uri(
        ctx.assignment["region"], ctx.project or "", ctx.assignment["repository"], app
    )
    at = _deploy_where(ctx, call, "--image")

    def fail(message: str, expected: str = f"{expected_repo}:BUILD_ID") -> Outcome:
        return Outcome.fail(message, evidence=Evidence(at, f"--image={image}", expected))

    if not image:
        return fail("no --image: deploy the image Cloud Build pushed")
    ref = docker.parse_reference(image)
    if ref is None:
        return fail(f"--image={image} is not an image reference")
    if ref.repository != expected_repo:
        other = ref.repository.rsplit("/", 1)[-1]
        if ref.repository.rsplit("/", 1)[0] == ctx.registry and other in ctx.assignment["apps"]:
            return fail(f"deploys the {other} image, not {app}: {image}")
        return fail(
            f"--image={image} is not in the student's registry: expected {expected_repo}:BUILD_ID"
        )
    if ref.digest:
        return Outcome.ok(f"--image={image}")
    recorded = ctx.build_id(app)
    if not ref.tag or ref.tag == "latest":
        return fail(
            f"--image={image}: the app image is tagged with its build ID only, so "
            f"{expected_repo}:latest does not exist; deploy {expected_repo}:BUILD_ID"
        )
    if recorded and ref.tag != recorded:
        return fail(
            f"--image={image}: deliverables.yaml records build {recorded} for {app}; deploy that "
            "build (or record the one deployed)",
            f"{expected_repo}:{recorded}",
        )
    if not recorded and not naming.is_build_id(ref.tag):
        return fail(f"--image={image}: the tag {ref.tag!r} is not a build ID")
    return Outcome.ok(f"--image={image}")


@deployed("deploy_port")
def deploy_port(ctx: Context, app: str, call: Call) -> Outcome:
    port = call.flags.get("--port")
    expected = str(ctx.assignment["serving_port"])
    at = _deploy_where(ctx, call, "--port")
    if port is None:
        return Outcome.fail(
            f"no --port: Cloud Run would send requests to 8080, the app listens on {expected}",
            evidence=Evidence(at, "no --port (Cloud Run's default 8080)", f"--port={expected}"),
        )
    if str(port) != expected:
        return Outcome.fail(
            f"--port={port}; the app listens on {expected} (_SERVING_PORT)",
            evidence=Evidence(at, f"--port={port}", f"--port={expected}"),
        )
    return Outcome.ok(f"--port={port}")


def _deliverables_urls(ctx: Context) -> list[str]:
    return [u for app in SLOTS for u in [ctx.service_url(app)] if u]


@deployed("serving_url")
def serving_url(ctx: Context, app: str, call: Call) -> Outcome:
    """SERVING_URL against the backend's URL, across Cloud Run's two URL forms
    (``naming.compare_run_urls``): the one deliverables.yaml records (a real URL: name,
    region and project compared) and the one the grader's fake deploy gave (name and region
    only: the fake's project stands in for the student's)."""
    version = SLOTS[app][0]
    backend = f"backend_{version}"
    env = parse_key_values(str(call.flags.get("--set-env-vars") or ""))
    env.update(parse_key_values(str(call.flags.get("--update-env-vars") or "")))
    value = env.get("SERVING_URL")
    at = _deploy_where(ctx, call, "SERVING_URL", "--set-env-vars")
    if value is None:
        return Outcome.fail(
            "the frontend is deployed without SERVING_URL (--set-env-vars=SERVING_URL=...): it "
            "cannot reach its backend",
            evidence=Evidence(at, "no SERVING_URL", f"SERVING_URL=<the {backend} URL>"),
        )
    evidence = naming.ProjectEvidence.of(_deliverables_urls(ctx))
    candidates = [
        (ctx.service_url(backend), "the URL deliverables.yaml records for it", True),
        (ctx.runs.backend_urls.get(version), "the URL its deploy gave", False),
    ]
    compared = []
    for url, label, real in candidates:
        if url:
            result = naming.compare_run_urls(value, url, evidence, ignore_project=not real)
            compared.append((url, label, result))
    same = [label for _url, label, result in compared if result.same]
    if same:
        return Outcome.ok(f"SERVING_URL={value}: {backend}, {' and '.join(same)}")
    recorded = [c for c in compared if c[1] == candidates[0][1]]
    for _url, label, result in recorded or compared:  # the fake's only without a real URL
        if result.same is None:
            return Outcome.ok(f"SERVING_URL={value}: {backend}, {label}: {result.note}")
    other = "v2" if version == "v1" else "v1"
    for url in (ctx.service_url(f"backend_{other}"), ctx.runs.backend_urls.get(other)):
        if url and naming.compare_run_urls(value, url, evidence).same is not False:
            return Outcome.fail(
                f"SERVING_URL={value} is the {other} backend, not the {version} one",
                evidence=Evidence(
                    at,
                    f"SERVING_URL={value} (the {other} backend)",
                    f"the {backend} URL {candidates[0][0] or ''}".strip(),
                ),
            )
    if not compared:
        return Outcome.fail(
            f"SERVING_URL={value!r}: no {backend} URL anywhere to compare it with",
            evidence=Evidence(at, f"SERVING_URL={value}", f"the {backend} URL"),
        )
    url, label, result = compared[0]
    return Outcome.fail(
        f"SERVING_URL={value!r} is not the {backend} URL ({label}: {url}): {result.describe()}",
        evidence=Evidence(at, f"SERVING_URL={value} ({result.describe()})", url),
    )


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
