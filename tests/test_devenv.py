"""hw5kit.devenv: which environment each nox session gets (light or kit), the config's target
read without PyYAML the way the pipeline reads it, and the stamps that keep the two apart."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hw5kit import devenv
from hw5kit.pipeline import config

from .conftest import ROOT

GCP_CONFIG = (ROOT / "deployment.yaml").read_text().replace("\ntarget: local", "\ntarget: gcp")


@pytest.mark.parametrize("session", ["render", "setup", "check_prereq", "grade"])
def test_sessions_that_never_run_a_model_are_light_whatever_the_target(session):
    for args in ([], ["--target", "local"], ["--target=container"]):
        assert devenv.profile_for(session, args, ROOT) is devenv.LIGHT


def test_the_docs_session_gets_its_own_environment():
    for args in ([], ["--target", "gcp"], ["--out", "/tmp/site"]):
        assert devenv.profile_for("docs", args, ROOT) is devenv.DOCS
    assert devenv.DOCS.extras == ("docs",)
    assert devenv.env_dir(ROOT, devenv.DOCS) == ROOT / ".nox" / "docs"
    assert len({devenv.fingerprint(ROOT, p) for p in devenv.PROFILES.values()}) == 3


@pytest.mark.parametrize("session", ["tests", "bench", "quant", "hop", "loadtest", "lint"])
def test_sessions_that_run_models_get_the_kit_even_with_target_gcp(session):
    assert devenv.profile_for(session, ["--target", "gcp"], ROOT) is devenv.KIT


@pytest.mark.parametrize("session", sorted(devenv.TARGET_SESSIONS))
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--target", "gcp"], "light"),
        (["--target=gcp"], "light"),
        (["--only", "backend_v1", "--target", "gcp"], "light"),
        (["--target", "gcp", "--target", "local"], "kit"),  # the last one wins, as in argparse
        (["--target", "container"], "kit"),
        (["--target", "local"], "kit"),
        ([], "kit"),  # the repository's deployment.yaml says local
        (["--target"], "kit"),  # incomplete: the pipeline reports it
    ],
)
def test_pipeline_sessions_choose_by_the_target_argument(session, args, expected):
    assert devenv.profile_for(session, args, ROOT).name == expected


def test_without_target_argument_the_config_decides(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "deployment.yaml").write_text(GCP_CONFIG)
    assert devenv.profile_for("build", [], repo) is devenv.LIGHT
    assert devenv.profile_for("build", ["--root", str(repo)], ROOT) is devenv.LIGHT
    assert devenv.profile_for("deploy", ["--config", str(repo / "deployment.yaml")], ROOT).name == (
        "light"
    )
    assert devenv.profile_for("build", ["--target", "local"], repo) is devenv.KIT
    # an unreadable config: the kit, which runs every target (the pipeline reports the error)
    assert devenv.profile_for("build", ["--config", str(tmp_path / "missing.yaml")], ROOT).name == (
        "kit"
    )


@pytest.mark.parametrize(
    "line",
    [
        "target: gcp",
        'target: "gcp"',
        "target: 'gcp'",
        "target: gcp   # where to run",
        "target:   container",
        "target: local",
        "# target: gcp",
        "",
    ],
)
def test_the_config_target_is_read_as_the_pipeline_reads_it(tmp_path, line):
    text = (ROOT / "deployment.yaml").read_text().replace("\ntarget: local\n", "\n")
    path = tmp_path / "deployment.yaml"
    path.write_text(text + "\n" + line + "\n")
    assert devenv.config_target(path) == config.load(path).target


@pytest.mark.parametrize("value", ["[gcp]", "{a: 1}", "&anchor gcp", "!!str gcp"])
def test_a_target_the_light_reader_cannot_read_plainly_gives_none(tmp_path, value):
    path = tmp_path / "deployment.yaml"
    path.write_text(f"student_id: '1'\ntarget: {value}\n")
    # YAML reads these otherwise (or rejects them): the reader must not guess "local" or "gcp"
    assert devenv.config_target(path) is None


def test_stamps_keep_the_two_environments_apart(tmp_path, monkeypatch):
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "lock.txt").write_text("jinja2==3.1.6\n")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert devenv.fingerprint(tmp_path, devenv.KIT) != devenv.fingerprint(tmp_path, devenv.LIGHT)
    for profile in (devenv.KIT, devenv.LIGHT):
        monkeypatch.delenv(profile.override, raising=False)
        venv = devenv.env_dir(tmp_path, profile)
        assert venv == tmp_path / ".nox" / profile.name
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python").touch()
        stamp = {"fingerprint": devenv.fingerprint(tmp_path, profile)}
        (venv / devenv.STAMP).write_text(json.dumps(stamp))
        assert devenv.is_current(tmp_path, profile)
    # a lock change makes both stale
    (tmp_path / "requirements" / "lock.txt").write_text("jinja2==3.1.5\n")
    assert not devenv.is_current(tmp_path, devenv.KIT)
    assert not devenv.is_current(tmp_path, devenv.LIGHT)


def test_the_install_commands_are_pinned_by_the_lock_and_differ_only_in_extras(tmp_path):
    kit = devenv.install_command(tmp_path / "py", ROOT, devenv.KIT)
    light = devenv.install_command(tmp_path / "py", ROOT, devenv.LIGHT)
    assert ["-c", str(ROOT / devenv.LOCK)] == kit[kit.index("-c") : kit.index("-c") + 2]
    assert kit[:-1] == light[:-1]
    assert kit[-1] == f"{ROOT}[all]" and light[-1] == str(ROOT)


def test_which_prints_the_environment_a_session_needs():
    def which(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "hw5kit.devenv", "which", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert which("build", "--only", "backend_v1", "--target", "gcp") == "light"
    assert which("build") == "kit"
    assert which("grade", "tests/fixtures/submissions/good") == "light"
