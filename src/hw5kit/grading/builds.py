"""The builds a submission asks for, each read for what it does (grading by effect).

A ``BuildUnit`` is one build: the Cloud Build file it used, the substitutions the submit
script passed (``--substitutions``), the fake Cloud Build's record of it, and the analysis of
its docker commands (``buildconfig``) in which every name that is the base or the app image
counts the same whether it came from ``${_BASE_IMAGE_URI}`` / ``${_APP_URI}`` or was written
out (``buildconfig.roles``). The build items of the rubric are judged on each unit:

* one unit per ``gcloud builds submit`` the scripts issued (the course's layout: the same
  ``cloudbuild.yaml`` with other substitutions for each image; the older one: one Cloud Build
  file per service), so each build is graded for the service it builds;
* when no build was submitted (no student ID, a broken submit script), one unit per Cloud
  Build file found, read statically.

Each item charges only what lies in its own steps: a step that never ran because an earlier
one failed is judged on what it would do; the build's outcome is its own item (Q1.10).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..gcloud_fake import docker
from . import buildconfig as bc
from .evidence import at_line
from .layout import app_named_in
from .submission import FileProblem, load_yaml

if TYPE_CHECKING:
    from .cloud import Call
    from .context import Context

SHOWN = {
    bc.BASE: "${_BASE_IMAGE_URI}",
    bc.APP: "${_APP_URI}",
    bc.ID: "${BUILD_ID}",
    "@PORT@": "${_SERVING_PORT}",
    bc.DOCKERFILE: "${_TARGET_DOCKERFILE}",
}


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


@dataclass
class BuildUnit:
    config_rel: str | None
    analysis: bc.Analysis
    text: str = ""
    problem: str | None = None  # why the Cloud Build file cannot be read
    call: Call | None = None
    values: dict[str, str] = field(default_factory=dict)  # the substitutions passed
    record: dict[str, Any] | None = None  # the fake Cloud Build's record of the build
    app: str | None = None  # the image this build is for
    lines: list[int] = field(default_factory=list)  # where each step starts
    substituted: set[str] = field(default_factory=set)  # roles named by a substitution

    # -- naming things for people -- #
    @property
    def label(self) -> str:
        if self.app:
            return self.app
        return Path(self.config_rel).name if self.config_rel else "(no Cloud Build file)"

    def where(self, step: int | None = None) -> str:
        line = self.lines[step] if step is not None and step < len(self.lines) else None
        return at_line(self.config_rel, line)

    def written(self, marker: str) -> str | None:
        """The written-out repository standing for ``marker`` in this config, if any."""
        return next((lit for lit, m in self.analysis.literals.items() if m == marker), None)

    def show(self, text: str | None) -> str:
        """Markers back to what the student wrote: ``${...}``, or the name written out."""
        if text is None:
            return "(none)"
        for marker, shown in SHOWN.items():
            if marker in (bc.BASE, bc.APP):
                shown = self.written(marker) or shown
            text = text.replace(marker, shown)
        return re.sub(r"@([A-Z_]+)@", r"${\1}", text)

    def effective(self, marker: str) -> str | None:
        """The name ``marker`` stands for in this build: what the submit passed for its
        substitution when the config uses it, else the name written out in the config."""
        key = bc.ROLE_SUBSTITUTIONS.get(marker, "")
        if marker in self.substituted:
            return self.values.get(key)
        return self.written(marker) or self.values.get(key)

    def mark(self, ref: str) -> str:
        """``ref`` with the base or the app repository as its marker, however it is written
        (a Dockerfile's ``FROM us-central1-docker.pkg.dev/.../base_image:latest``)."""
        repo = bc._repo(ref)
        for marker in bc.ROLE_SUBSTITUTIONS:
            if repo and (
                repo == self.effective(marker) or self.analysis.literals.get(repo) == marker
            ):
                return marker + ref[len(repo) :]
        return ref

    # -- what the fake Cloud Build did -- #
    def _as_markers(self, refs: list[str]) -> set[str]:
        """The fake's ``repo:tag`` records of the base and the app, as markers."""
        build_id = (self.record or {}).get("id") or ""
        out = set()
        for ref in refs:
            marked = self.mark(ref)
            if marked != ref:
                repo, _, tag = marked.rpartition(":")
                out.add(f"{repo}:{bc.ID if tag == build_id else tag}")
        return out

    @property
    def effect_pushed(self) -> set[str]:
        return self._as_markers(list(((self.record or {}).get("fake") or {}).get("pushed") or []))

    @property
    def effect_built(self) -> set[str]:
        """The tags this build made (``docker build -t``, ``docker tag``), not the pulled ones."""
        return self._as_markers(list(((self.record or {}).get("fake") or {}).get("built") or []))

    def pushed(self, ref: str) -> bool:
        return self.analysis.pushed(ref) or ref in self.effect_pushed

    def tags_of(self, marker: str) -> set[str]:
        tags = self.analysis.tags_of(marker)
        return tags | {t for t in self.effect_built if bc._repo(t) == marker}

    def step_failure(self, step: int) -> str | None:
        """What the fake Cloud Build said when step ``step`` failed, if it ran and failed."""
        steps = (self.record or {}).get("steps") or []
        if step >= len(steps) or steps[step].get("status") != "FAILURE" or self.call is None:
            return None
        prefix = f"Step #{step}: "
        said = [
            line[len(prefix) :]
            for line in self.call.stdout.splitlines()
            if line.startswith(prefix) and not line.startswith(f"{prefix}docker ")
        ]
        return said[-1] if said else "failed"

    # -- the Dockerfiles an app build reads -- #
    def dockerfiles(self, build: bc.Build, apps: list[str]) -> list[str]:
        """The Dockerfile(s) ``build`` reads, as paths in the submission (the target of this
        build, or every app's when no build says which)."""
        file = (build.file or "Dockerfile").removeprefix("./")
        step = (
            self.analysis.steps[build.command.step]
            if build.command.step < len(self.analysis.steps)
            else {}
        )
        folder = str(step.get("dir") or "") if isinstance(step, dict) else ""
        if bc.DOCKERFILE in file:
            target = self.values.get("_TARGET_DOCKERFILE")
            if target:
                names = [file.replace(bc.DOCKERFILE, target.removeprefix("./"))]
            elif self.app:
                names = [file.replace(bc.DOCKERFILE, f"Dockerfile.{self.app}")]
            else:
                names = [file.replace(bc.DOCKERFILE, f"Dockerfile.{a}") for a in apps]
        else:
            names = [file]
        return [str(PurePosixPath(folder) / n) if folder else n for n in names]


def config_rel_of(ctx: Context, call: Call) -> str | None:
    """The Cloud Build file a ``builds submit`` call used, as a path in the snapshot."""
    config = call.flags.get("--config") or "cloudbuild.yaml"
    # lexical, as the fake reads it (no link followed): the names are the script's own
    path = Path(os.path.normpath(os.path.join(call.cwd, str(config))))
    for root in ctx.workspace_roots:
        with contextlib.suppress(ValueError):
            rel = str(path.relative_to(root.resolve()))
            for candidate in (rel, Path(rel).name):
                if ctx.snapshot.exists(candidate):
                    return candidate
            if rel == "deployment/cloudbuild.yaml":
                for fallback in ("cloudbuild.yaml", "deployment/cloudbuild_template.yaml"):
                    if ctx.snapshot.exists(fallback):
                        return fallback
    return None


def _app_of(unit: BuildUnit, apps: list[str]) -> str | None:
    candidates = [
        (unit.values.get("_APP_URI") or "").rsplit("/", 1)[-1],
        (unit.written(bc.APP) or "").rsplit("/", 1)[-1],
        (unit.values.get("_TARGET_DOCKERFILE") or "").removeprefix("./").partition(".")[2],
    ]
    for name in candidates:
        if name in apps:
            return name
    if unit.config_rel:
        return app_named_in(Path(unit.config_rel).name, apps)
    return None


def make_unit(
    ctx: Context, rel: str, call: Call | None = None, record: dict | None = None
) -> BuildUnit:
    apps = list(ctx.assignment["apps"])
    values = parse_key_values(str(call.flags.get("--substitutions") or "")) if call else {}
    try:
        text = ctx.snapshot.read_text(rel)
        raw = load_yaml(text, rel)
    except FileProblem as exc:
        return BuildUnit(rel, bc.analyse(None), problem=str(exc), call=call, values=values)
    if not isinstance(raw, dict):
        problem = f"{rel} is not a YAML mapping with `steps` (found {type(raw).__name__})"
        return BuildUnit(rel, bc.analyse(None), text, problem, call, values)
    first = bc.analyse(raw)
    # only names the steps really write out (the submit's values may appear nowhere in them,
    # or only as the defaults of the `substitutions:` block)
    steps_text = json.dumps([raw.get("steps"), raw.get("images")], default=str)
    literals = {k: v for k, v in bc.roles(first, apps, values).items() if k in steps_text}
    analysis = bc.analyse(raw, literals) if literals else first
    unit = BuildUnit(rel, analysis, text, None, call, values, record)
    tagged = {bc._repo(t) for b in first.builds for t in b.tags}
    unit.substituted = {m for m in bc.ROLE_SUBSTITUTIONS if m in tagged}
    unit.lines = bc.step_lines(text)
    unit.app = _app_of(unit, apps)
    return unit


def build_units(ctx: Context, static_rels: list[str]) -> list[BuildUnit]:
    """One unit per build submitted (course builds only), else one per Cloud Build file."""
    units = []
    for call in ctx.runs.submit_calls():
        rel = config_rel_of(ctx, call)
        if rel is not None:
            units.append(make_unit(ctx, rel, call, ctx.build_records.get(call.build_id or "")))
    if units:
        return units
    return [make_unit(ctx, rel) for rel in static_rels]


def resolve_app_from(
    ctx: Context, unit: BuildUnit, build: bc.Build
) -> list[tuple[str, docker.DockerfileFroms | None]]:
    """Each Dockerfile the app build reads, with its FROM lines resolved by the build
    arguments the step passes (None: the submission has no such file)."""
    out = []
    for rel in unit.dockerfiles(build, list(ctx.assignment["apps"])):
        try:
            text = ctx.snapshot.read_text(rel)
        except FileProblem:
            out.append((rel, None))
            continue
        out.append((rel, docker.resolve_froms(text, build.build_args)))
    return out
