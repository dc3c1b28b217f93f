"""``python -m hw5kit.pipeline``: help, exit statuses, and messages for bad input."""

import subprocess
import sys

from ..conftest import ROOT, subprocess_env
from ..support.pipeline import make_repo, pipeline


def test_help_lists_every_command():
    done = subprocess.run(
        [sys.executable, "-m", "hw5kit.pipeline", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    for command in ("render", "build", "deploy", "verify", "stop", "status", "check-prereq"):
        assert command in done.stdout
    verify = subprocess.run(
        [sys.executable, "-m", "hw5kit.pipeline", "verify", "--help"],
        capture_output=True,
        text=True,
    )
    assert "--skip-http" in verify.stdout and "--target {local,container,gcp}" in verify.stdout


def test_a_bad_config_exits_2_naming_the_key(tmp_path):
    repo = make_repo(tmp_path / "repo")
    text = (repo / "deployment.yaml").read_text().replace("region: us-central1", "region: Iowa")
    (repo / "deployment.yaml").write_text(text)
    done = pipeline("build", root=repo, env=subprocess_env(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {repo}/deployment.yaml: region: expected a region")


def test_render_check_shows_the_diff_and_render_fixes_it(tmp_path):
    repo = make_repo(tmp_path / "repo")
    env = subprocess_env(tmp_path)
    assert pipeline("render", "--check", root=repo, env=env).returncode == 0
    text = (repo / "deployment.yaml").read_text().replace('"123456789"', '"20012345"')
    (repo / "deployment.yaml").write_text(text)
    stale = pipeline("render", "--check", root=repo, env=env)
    assert stale.returncode == 1
    assert '-PROJECT_ID="hw5-123456789"' in stale.stdout
    assert '+PROJECT_ID="hw5-20012345"' in stale.stdout
    assert "run `nox -s render` and commit it" in stale.stdout
    wrote = pipeline("render", root=repo, env=env)
    assert "render: 11 of 12 files changed" in wrote.stdout  # openapi_v3.yaml names no project
    assert pipeline("render", "--check", root=repo, env=env).returncode == 0


def test_only_selects_services_and_rejects_unknown_names(tmp_path):
    # checked before anything is built (no container engine is needed to say so)
    done = pipeline(
        "build", "--target", "container", "--only", "backend_v1,backend_v9", root=ROOT,
        env=subprocess_env(tmp_path),
    )  # fmt: skip
    assert done.returncode == 2
    assert "no service named 'backend_v9'" in done.stderr
    assert "known: backend_v1, frontend_v1, backend_v2, frontend_v2" in done.stderr
