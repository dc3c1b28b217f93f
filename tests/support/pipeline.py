"""Helpers for pipeline and fake-gcloud tests: a throw-away copy of the repository, the fake
gcloud installed in front of PATH, and the pipeline CLI run as a real subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hw5kit.gcloud_fake import FakeGcloud

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "hw5-123456789"
REGISTRY = f"us-central1-docker.pkg.dev/{PROJECT}/hw5-images"
COPIED = ("deployment.yaml", "deliverables.yaml", "deployment", "templates", "setup", "apps")
SERVICES = ("backend_v1", "frontend_v1", "backend_v2", "frontend_v2")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
RUN_URL = r"https://[a-z0-9-]+-[a-z2-7]{10}-uc\.a\.run\.app"

# Until the container issue adds the real Dockerfiles, a copy gets minimal ones of the same
# shape (a base, and services FROM ${BASE_IMAGE_URI}) so the fake Cloud Build can check them.
PLACEHOLDER_BASE = "FROM python:3.11-slim\n"
PLACEHOLDER_SERVICE = "ARG BASE_IMAGE_URI\nFROM ${BASE_IMAGE_URI}\nARG SERVING_PORT\n"


def make_repo(dest: Path, *, v3: bool = True) -> Path:
    """Copy what the pipeline reads and writes into ``dest``; return it. ``v3=False`` keeps
    only the course's v1 and v2 in the copy's config (and its rendered files): the tests of the
    course's shape stay about it, v3 has its own (tests/v3)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest / name)
    for dockerfile in ROOT.glob("Dockerfile*"):
        shutil.copy2(dockerfile, dest / dockerfile.name)
    if not (dest / "Dockerfile.base").exists():
        (dest / "Dockerfile.base").write_text(PLACEHOLDER_BASE)
    for service in SERVICES:
        if not (dest / f"Dockerfile.{service}").exists():
            (dest / f"Dockerfile.{service}").write_text(PLACEHOLDER_SERVICE)
    if not v3:
        drop_v3(dest)
    return dest


def drop_v3(repo: Path) -> None:
    """Remove v3 (its services and the gateway) from the copy's config, and re-render."""
    import yaml

    from hw5kit.pipeline import config, render

    path = repo / "deployment.yaml"
    data = yaml.safe_load(path.read_text())
    data["services"] = {k: v for k, v in data["services"].items() if v.get("version") != "v3"}
    data.pop("gateway", None)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    files = render.render_all(config.load(path), repo / "templates")
    keep = {f.path for f in files}
    for old in (repo / "deployment").iterdir():
        if f"deployment/{old.name}" not in keep:
            old.unlink()
    render.write(repo, files)


@dataclass
class Cloud:
    """A ready fake project and the environment that puts its gcloud first on PATH."""

    fake: FakeGcloud
    env: dict[str, str]

    def gcloud(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["gcloud", *args], env=self.env, cwd=cwd, capture_output=True, text=True
        )


def pipeline(
    *args: str, root: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m hw5kit.pipeline ARGS --root ROOT`` as the nox sessions run it."""
    return subprocess.run(
        [sys.executable, "-m", "hw5kit.pipeline", *args, "--root", str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def deployed_copy(tmp: Path, env: dict[str, str]) -> tuple[Path, FakeGcloud]:
    """A copy of the repository built and deployed with ``--target gcp`` against a fake gcloud
    of its own (under ``tmp``): its deliverables.yaml then holds what a real deployment writes.
    ``env`` is the subprocesses' base environment (``tests.conftest.subprocess_env``)."""
    from hw5kit.gcloud_fake import GATEWAY_APIS, HW5_APIS

    repo = make_repo(tmp / "repo")
    fake = FakeGcloud(tmp / "cloud")
    fake.install(tmp / "bin")
    fake.add_project(PROJECT, apis=(*HW5_APIS, *GATEWAY_APIS))  # setup's, with v3 configured
    env = fake.env(env)
    for command in ("build", "deploy"):
        done = pipeline(command, "--target", "gcp", root=repo, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
    return repo, fake
