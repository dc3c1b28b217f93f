"""Q1.1 to Q1.7 and Q2.1: the Cloud Build file, judged on each build the submission asks for.

The build items are judged by effect (``builds.BuildUnit``): names written out count as much as
names from substitutions, the app's ``FROM`` is the one its Dockerfile really gets from the
build arguments the step passes, and only the substitutions item (Q1.7) judges their use. A
submission of several builds (one Cloud Build file per service, or one build per image) earns
each item in proportion to the builds that do it.
"""

from __future__ import annotations

import re
from pathlib import PurePath

from ...gcloud_fake import cloudbuild as cb
from .. import buildconfig as bc
from ..builds import BuildUnit, resolve_app_from
from ..context import Context
from ..evidence import Evidence, line_of
from ..outcome import Outcome
from ..runs import where
from .registry import per_build


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
