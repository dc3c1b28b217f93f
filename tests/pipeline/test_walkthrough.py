"""The student guide's walk-through (docs/student/index.md, and its French version) runs as
written against the fake gcloud, on a project where nothing is set up yet, and the commands it
says setup runs are the ones it runs."""

import os
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from hw5kit.gcloud_fake import FakeGcloud

from ..conftest import ROOT, subprocess_env
from ..support.pipeline import PROJECT, make_repo, pipeline
from .test_setup import READ_ONLY

GUIDE = "docs/student/index.md"
GUIDE_FR = "docs/student/index.fr.md"


def code_lines(text: str) -> list[str]:
    """The lines of the fenced code blocks in ``text``, in order (not the Mermaid diagrams)."""
    lines, inside, diagram = [], False, False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            inside = not inside
            diagram = inside and stripped == "```mermaid"
            continue
        if inside and stripped and not diagram:
            lines.append(stripped)
    return lines


def walkthrough(name: str = GUIDE) -> list[str]:
    return code_lines((ROOT / name).read_text())


def nox_sessions() -> dict[str, str]:
    """nox session -> the pipeline command it runs, read from the noxfile."""
    source = (ROOT / "noxfile.py").read_text()
    session = r"def (\w+)\(session: nox.Session\) -> None:\n"
    body = r'(?:    .*\n)*?    pipeline\(session, "([\w-]+)"\)'
    return dict(re.findall(session + body, source))


def test_the_french_walkthrough_runs_the_same_commands():
    assert walkthrough(GUIDE_FR) == walkthrough(GUIDE)
    assert len(walkthrough(GUIDE)) > 10
    readme = (ROOT / "README.md").read_text()
    assert f"]({GUIDE})" in readme and f"]({GUIDE_FR})" in readme


def test_every_nox_command_of_the_walkthrough_is_a_session():
    sessions = nox_sessions()
    assert {"setup", "check_prereq", "render", "build", "deploy", "verify", "status"} <= set(
        sessions
    )
    for line in walkthrough():
        if line.startswith("nox "):
            assert shlex.split(line)[2] in sessions, line


@pytest.fixture
def fresh_student(tmp_path):
    fake = FakeGcloud(tmp_path / "gcloud-state")
    fake.install(tmp_path / "bin")
    fake.add_project(PROJECT, apis=(), repositories=(), readers=(), set_default=False)
    repo = make_repo(tmp_path / "repo", v3=False)  # the walkthrough deploys v1 and v2
    # step 5: the student's ID (the guide's example one) and the gcp target
    config = repo / "deployment.yaml"
    data = yaml.safe_load(config.read_text())
    assert data["student_id"] == "123456789"
    config.write_text(config.read_text().replace("target: local", "target: gcp"))
    env = fake.env(subprocess_env(tmp_path))
    env["PATH"] = f"{env['PATH']}{os.pathsep}{Path(sys.executable).parent}"
    return fake, repo, env


def test_the_walkthrough_runs_as_written_from_a_fresh_project(fresh_student):
    fake, repo, env = fresh_student
    sessions = nox_sessions()
    lines = walkthrough()
    documented = [shlex.split(line) for line in lines if line.startswith("gcloud ")]
    assert len(documented) == 4
    outputs = {}
    for line in lines:
        if not line.startswith("nox "):
            continue  # pip, git, and the gcloud commands setup runs
        words = shlex.split(line)
        session, posargs = words[2], words[4:] if "--" in words else []
        if session == "verify":
            posargs = [*posargs, "--skip-http"]  # the fake's run.app URLs do not resolve
        done = pipeline(sessions[session], *posargs, root=repo, env=env)
        assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
        outputs[line] = done.stdout
        if posargs == ["--dry-run"]:
            assert fake.calls() == []
            printed = [
                shlex.split(out) for out in done.stdout.splitlines() if out.startswith("  gcloud ")
            ]
            assert printed == documented
        if line == "nox -s setup":
            changed = [
                ["gcloud", *c["argv"]] for c in fake.calls() if c["command"] not in READ_ONLY
            ]
            assert changed == documented
            assert done.stdout.rstrip().splitlines()[-2] == (
                "All prerequisites are met. You can proceed with the assignment."
            )
        if line == "nox -s status":  # after v1: its two URLs, v2 not yet
            status = {row.split()[0]: row.split() for row in done.stdout.splitlines() if row}
            assert status["frontend_v1"][-1].startswith("https://frontendv1-")
            assert status["backend_v2"][-1] == "-"
    assert list(outputs)[-1] == "nox -s verify"
    assert "verify: all" in outputs["nox -s verify"] and "checks passed" in outputs["nox -s verify"]
    deployed = fake.project(PROJECT)["run"]
    assert sorted(deployed) == [
        f"us-central1/{name}" for name in ("backendv1", "backendv2", "frontendv1", "frontendv2")
    ]
