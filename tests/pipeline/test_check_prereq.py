"""setup/check_prereq.sh against the fake gcloud: the course's messages, non-interactive."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hw5kit.gcloud_fake import FakeGcloud

from ..conftest import ROOT, subprocess_env
from ..support.pipeline import PROJECT, make_repo, pipeline

SCRIPT = ROOT / "setup" / "check_prereq.sh"
SUCCESS = "All prerequisites are met. You can proceed with the assignment."


def check(env, *args, stdin=None):
    # python3 with PyYAML (the kit's interpreter) is one of the course's prerequisites
    env = {**env, "PATH": f"{env['PATH']}{os.pathsep}{Path(sys.executable).parent}"}
    return subprocess.run(
        ["bash", SCRIPT, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def test_a_ready_project_passes_with_the_course_success_line(cloud):
    done = check(cloud.env, "--student-id", "123456789")
    assert done.returncode == 0, done.stdout
    assert done.stdout.rstrip().endswith(SUCCESS)
    assert f"Repository us-central1-docker.pkg.dev/{PROJECT}/hw5-images exists" in done.stdout
    commands = [c["command"] for c in cloud.fake.calls()]
    assert commands == ["config get-value", "services list", "artifacts repositories describe"]


def test_the_student_id_comes_from_the_environment_or_stdin(cloud):
    assert check({**cloud.env, "STUDENT_ID": " 123456789 "}).returncode == 0
    asked = check(cloud.env, stdin="123456789\n")
    assert asked.returncode == 0 and asked.stdout.rstrip().endswith(SUCCESS)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("other-project", "Project is not set to hw5-123456789. Please set the project to"),
        ("no-run", "Cloud Run is not enabled. Please enable Cloud Run before running"),
        ("no-build", "Cloud Build is not enabled. Please enable Cloud Build before running"),
        ("no-registry", "Artifact Registry is not enabled."),
        (
            "no-repository",
            "Repository us-central1-docker.pkg.dev/hw5-123456789/hw5-images does not exist",
        ),
    ],
)
def test_each_missing_piece_fails_with_the_course_message(tmp_path, setup, message):
    fake = FakeGcloud(tmp_path / "state")
    fake.install(tmp_path / "bin")
    apis = {"run.googleapis.com", "cloudbuild.googleapis.com", "artifactregistry.googleapis.com"}
    apis -= {
        "no-run": {"run.googleapis.com"},
        "no-build": {"cloudbuild.googleapis.com"},
        "no-registry": {"artifactregistry.googleapis.com"},
    }.get(setup, set())
    repositories = () if setup == "no-repository" else (("us-central1", "hw5-images"),)
    fake.add_project(PROJECT, apis=apis, repositories=repositories)
    if setup == "other-project":
        fake.add_project("hw5-987654321")
    done = check(fake.env(subprocess_env(tmp_path)), "--student-id=123456789")
    assert done.returncode == 1
    assert message in done.stdout
    assert SUCCESS not in done.stdout


def test_without_gcloud_it_says_so(tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("bash", "sed", "grep"):
        (bare / tool).symlink_to(shutil.which(tool))
    done = check({"PATH": str(bare)}, "--student-id", "1")
    assert done.returncode == 1
    assert "gcloud is not installed. Please install gcloud" in done.stdout


def test_the_nox_session_passes_the_configured_student_id(tmp_path, cloud):
    repo = make_repo(tmp_path / "repo")
    env = {**cloud.env, "PATH": f"{cloud.env['PATH']}{os.pathsep}{Path(sys.executable).parent}"}
    done = pipeline("check-prereq", root=repo, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Checking if the project is set to hw5-123456789..." in done.stdout
