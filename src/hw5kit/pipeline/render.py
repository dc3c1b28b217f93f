"""Render ``templates/*.j2`` into the files the assignment asks for, under ``deployment/``.

One Jinja environment (``StrictUndefined``: a missing value is an error, never an empty
string), one context (``context.build``). Outputs:

* ``deployment/cloudbuild.yaml``: the Cloud Build config every service uses
* ``deployment/submit_build.sh``: ``gcloud builds submit`` per image, with the four substitutions
* ``deployment/deploy_<service>.sh``: ``gcloud run deploy`` for each service

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
from .config import Config

OUTPUT_DIR = "deployment"
CLOUDBUILD = "cloudbuild.yaml"
SUBMIT = "submit_build.sh"


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
    out = [
        Rendered(
            f"{OUTPUT_DIR}/{CLOUDBUILD}",
            env.get_template("cloudbuild.yaml.j2").render(ctx=ctx),
            False,
        ),
        Rendered(
            f"{OUTPUT_DIR}/{SUBMIT}", env.get_template("submit_build.sh.j2").render(ctx=ctx), True
        ),
    ]
    deploy = env.get_template("deploy_service.sh.j2")
    for s in ctx.services:
        out.append(Rendered(f"{OUTPUT_DIR}/{s.deploy_script}", deploy.render(ctx=ctx, s=s), True))
    return out


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
