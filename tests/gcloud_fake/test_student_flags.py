"""Flags student scripts use that the kit does not (the grader runs their scripts against the
fake): accepted with gcloud's meaning."""

from __future__ import annotations

from pathlib import Path

from hw5kit.gcloud_fake import FakeGcloud, cli

PROJECT = "hw5-20261234"
IMAGE = f"us-central1-docker.pkg.dev/{PROJECT}/hw5-images/frontend_v1:tag"


def gcloud(fake: FakeGcloud, *argv: str):
    return cli.run(list(argv), state_dir=fake.state_dir, env={}, cwd=Path("/"))


def test_update_env_vars_merges_and_cannot_be_combined_with_set_env_vars(tmp_path):
    fake = FakeGcloud(tmp_path)
    fake.add_project(PROJECT)
    fake.configure(require_built_images=False)
    base = ["run", "deploy", "frontendv1", "--region=us-central1", f"--image={IMAGE}"]
    assert gcloud(fake, *base, "--set-env-vars=A=1,B=2", "--concurrency=80").code == 0
    done = gcloud(fake, *base, "--update-env-vars=B=3,SERVING_URL=https://x.a.run.app", "--async")
    assert done.code == 0, done.stderr
    container = fake.project(PROJECT)["run"]["us-central1/frontendv1"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "A": "1",
        "B": "3",
        "SERVING_URL": "https://x.a.run.app",
    }
    both = gcloud(fake, *base, "--set-env-vars=A=1", "--update-env-vars=B=2")
    assert both.code == 2 and "At most one of --set-env-vars | --update-env-vars" in both.stderr
    bad = gcloud(fake, *base, "--ingress=everyone")
    assert bad.code == 2 and "Invalid choice: 'everyone'" in bad.stderr


def test_builds_submit_accepts_async_and_a_machine_type(tmp_path):
    fake = FakeGcloud(tmp_path / "state")
    fake.add_project(PROJECT)
    source = tmp_path / "src"
    source.mkdir()
    (source / "Dockerfile").write_text("FROM python:3.11-slim\n")
    (source / "cloudbuild.yaml").write_text(
        "steps:\n- name: gcr.io/cloud-builders/docker\n  args: [build, -t, img, .]\n"
    )
    done = cli.run(
        ["builds", "submit", "--async", "--machine-type=e2-highcpu-8", "--config=cloudbuild.yaml"],
        state_dir=fake.state_dir,
        env={},
        cwd=source,
    )
    assert done.code == 0, done.stderr
    bad = cli.run(
        ["builds", "submit", "--machine-type=huge"], state_dir=fake.state_dir, env={}, cwd=source
    )
    assert bad.code == 2 and "Invalid choice: 'huge'" in bad.stderr
