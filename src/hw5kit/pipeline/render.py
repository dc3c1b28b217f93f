"""Render ``templates/*.j2`` into the files the assignment asks for, under ``deployment/``.

One Jinja environment (``StrictUndefined``: a missing value is an error, never an empty
string), one context (``context.build``). Outputs:

* ``deployment/cloudbuild.yaml``: the Cloud Build config every service uses
* ``deployment/submit_build.sh``: ``gcloud builds submit`` per image, with the four substitutions
* ``deployment/deploy_<service>.sh``: ``gcloud run deploy`` for each service (v3: one per
  model, ``deploy_backend_v3_<model>.sh``)
* with v3: ``deployment/cloudbuild_v3.yaml`` (the same build, plus the model as a build
  argument) and ``deployment/openapi_v3.yaml``, the API gateway's OpenAPI 2.0 document, whose
  backend addresses are placeholders until deploy renders it again with the Cloud Run URLs
  (``render_openapi``)

The rendered files are committed; ``check`` (``nox -s render -- --check``, and a test) fails
when they differ from a fresh render.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2

from . import context
from .deployment import Config

OUTPUT_DIR = "deployment"
CLOUDBUILD = context.CLOUDBUILD
CLOUDBUILD_V3 = context.CLOUDBUILD_V3
SUBMIT = "submit_build.sh"
OPENAPI_V3 = "openapi_v3.yaml"
OPENAPI_TEMPLATE = "openapi_v3.yaml.j2"


@dataclass(frozen=True)
class Rendered:
    path: str  # relative to the repository root
    text: str
    executable: bool


def environment(templates: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - shell and YAML, not HTML
    )
    env.filters["sh"] = context.shell_quote
    env.filters["dq"] = context.shell_double_quote
    return env


def render_all(config: Config, templates: Path) -> list[Rendered]:
    env = environment(templates)
    ctx = context.build(config)
    cloudbuild = env.get_template("cloudbuild.yaml.j2")
    out = [
        Rendered(f"{OUTPUT_DIR}/{CLOUDBUILD}", cloudbuild.render(ctx=ctx, model_arg=False), False),
        Rendered(
            f"{OUTPUT_DIR}/{SUBMIT}", env.get_template("submit_build.sh.j2").render(ctx=ctx), True
        ),
    ]
    deploy = env.get_template("deploy_service.sh.j2")
    for s in ctx.services:
        out.append(Rendered(f"{OUTPUT_DIR}/{s.deploy_script}", deploy.render(ctx=ctx, s=s), True))
    if ctx.model_builds:
        out.append(
            Rendered(
                f"{OUTPUT_DIR}/{CLOUDBUILD_V3}", cloudbuild.render(ctx=ctx, model_arg=True), False
            )
        )
    if ctx.gateway is not None:
        out.append(Rendered(f"{OUTPUT_DIR}/{OPENAPI_V3}", render_openapi(config, templates), False))
    return out


def render_openapi(config: Config, templates: Path, addresses: dict[str, str] | None = None) -> str:
    """The gateway's OpenAPI 2.0 document: with placeholder backend addresses (the committed
    copy), or with ``addresses`` (service name -> URL), the one deploy hands to the gateway."""
    gw = context.gateway(config, addresses)
    if gw is None:
        raise ValueError(f"{config.source} has no v3 backends: there is no gateway to render")
    return environment(templates).get_template(OPENAPI_TEMPLATE).render(gw=gw)


def write(root: Path, files: list[Rendered]) -> list[str]:
    """Write the files that changed (atomically); return their paths."""
    changed = []
    for f in files:
        target = root / f.path
        if target.exists() and target.read_text() == f.text:
            if f.executable and not os.access(target, os.X_OK):
                target.chmod(0o755)
                changed.append(f.path)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "w") as fh:
            fh.write(f.text)
        os.chmod(tmp, 0o755 if f.executable else 0o644)
        os.replace(tmp, target)
        changed.append(f.path)
    return changed


def differences(root: Path, files: list[Rendered]) -> list[tuple[str, str]]:
    """(path, what is wrong: a unified diff, "missing" or "not executable") per stale file."""
    problems = []
    for f in files:
        target = root / f.path
        if not target.exists():
            problems.append((f.path, "missing"))
            continue
        current = target.read_text()
        if current != f.text:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                f.text.splitlines(keepends=True),
                fromfile=f"{f.path} (committed)",
                tofile=f"{f.path} (fresh render)",
            )
            problems.append((f.path, "".join(diff)))
        elif f.executable and not os.access(target, os.X_OK):
            problems.append((f.path, "not executable (chmod +x)"))
    return problems
