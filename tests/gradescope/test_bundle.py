"""The Gradescope bundle without a container: its layout (Gradescope's documented zip), the
staff config, the results.json schema written from Gradescope's format, and run_autograder's
runner on this machine, including every way grading can fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile

import pytest
import yaml

from hw5kit.gradescope import bundle as bundle_mod
from hw5kit.gradescope import config as config_mod
from hw5kit.gradescope import failure, results, runner

from ..support import submissions
from .conftest import META, assert_same_grading, grade_directly

# --- the zip ----------------------------------------------------------------------------------


def test_the_zip_has_setup_sh_and_run_autograder_at_its_root_executable(bundle_zip):
    with zipfile.ZipFile(bundle_zip) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    for name in ("setup.sh", "run_autograder"):
        assert name in infos, f"{name} must be at the zip's root (not in a folder)"
        assert (infos[name].external_attr >> 16) & 0o777 == 0o755
    assert {"autograder.yaml", "requirements.txt", "report_failure.py", "bundle.json"} <= set(infos)
    wheels = [n for n in infos if n.startswith("wheels/")]
    assert any(n.startswith("wheels/hw5kit-") for n in wheels)
    heavy = [n for n in wheels if n.split("/")[1].split("-")[0].lower() in ("torch", "numpy")]
    assert heavy == [], "the bundle installs the light environment only"
    assert bundle_zip.stat().st_size < 8 * 2**20


def test_every_wheel_is_pinned_by_hash_and_the_kit_wheel_carries_rubric_and_photos(bundle_dir):
    lines = [
        line for line in (bundle_dir / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    wheels = sorted((bundle_dir / "wheels").glob("*.whl"))
    assert len(lines) == len(wheels)
    for wheel in wheels:
        digest = bundle_mod._sha256(wheel.read_bytes())
        assert any(f"--hash=sha256:{digest}" in line for line in lines), wheel.name
    kit = next(w for w in wheels if w.name.startswith("hw5kit-"))
    names = zipfile.ZipFile(kit).namelist()
    assert "hw5kit/grading/rubric.yaml" in names
    assert "hw5kit/gradescope/results.schema.json" in names
    assert "hw5kit/gradescope/files/setup.sh" in names
    assert sum(n.startswith("hw5kit/assets/photos/") and n.endswith((".png", ".jpg"))
               for n in names) >= 4  # fmt: skip
    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    assert manifest["config"] == config_mod.Config().__dict__
    assert manifest["files"]["setup.sh"] == bundle_mod._sha256(
        (bundle_dir / "setup.sh").read_bytes()
    )


def test_the_zip_is_reproducible_and_a_tampered_wheel_is_refused_by_pip(bundle_dir, tmp_path):
    first = bundle_mod.build(tmp_path / "a.zip", wheels_dir=bundle_dir / "wheels")
    time.sleep(1.1)
    second = bundle_mod.build(tmp_path / "b.zip", wheels_dir=bundle_dir / "wheels")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    assert first.files == second.files
    # pip's hash-checking mode (what setup.sh uses) refuses a wheel that is not the one pinned
    wheels = tmp_path / "wheels"
    shutil.copytree(bundle_dir / "wheels", wheels)
    idna = next(wheels.glob("idna-*.whl"))
    with zipfile.ZipFile(idna, "a") as zf:
        zf.writestr("idna/extra.py", "# changed\n")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-index", "--find-links", str(wheels),
         "--require-hashes", "-r", str(bundle_dir / "requirements.txt"), "-d", str(tmp_path / "d")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0
    assert "hash" in (done.stdout + done.stderr).lower()


def test_setup_sh_installs_offline_from_the_bundle_only():
    text = (bundle_mod.FILES / "setup.sh").read_text()
    assert "--no-index" in text and "--require-hashes" in text
    assert "python3.11" in text and "bubblewrap" in text


# --- the staff config -------------------------------------------------------------------------


def test_the_default_config_is_the_documented_defaults():
    assert config_mod.load() == config_mod.Config()
    data = yaml.safe_load(config_mod.DEFAULT.read_text())
    assert set(data) == config_mod.KEYS


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"visibilty": "hidden"}, "unknown key(s) visibilty"),
        ({"visibility": "secret"}, "visibility 'secret' must be one of"),
        ({"sandbox": "none"}, "sandbox 'none' must be one of"),
        ({"live": "yes please"}, "live must be true or false"),
        ({"script_timeout": -1}, "script_timeout must be a positive number"),
        ({"time_limit": 3600}, "above Gradescope's largest autograder timeout"),
        ({"script_timeout": 60, "time_limit": 90}, "at least twice as long"),
        (["visible"], "expected keys and values"),
    ],
)
def test_bad_config_values_are_refused_naming_the_key(data, message):
    with pytest.raises(config_mod.ConfigError) as exc:
        config_mod.parse(data)
    assert message in str(exc.value)


def test_the_config_becomes_the_grader_s_options():
    config = config_mod.parse({"visibility": "after_due_date", "live": True, "script_timeout": 12})
    assert config.grader_args() == [
        "--visibility", "after_due_date", "--timeout", "12", "--sandbox", "auto", "--live",
    ]  # fmt: skip


def test_a_bad_config_stops_the_build_before_anything_is_downloaded(tmp_path):
    bad = tmp_path / "autograder.yaml"
    bad.write_text("visibility: sometimes\n")
    with pytest.raises(bundle_mod.BundleError, match="visibility 'sometimes'"):
        bundle_mod.build(tmp_path / "x.zip", config_path=bad, wheels_dir=tmp_path / "none")
    assert not (tmp_path / "x.zip").exists()


# --- Gradescope's results format ----------------------------------------------------------------


def test_the_schema_accepts_gradescope_s_documented_example():
    # the example of https://gradescope-autograders.readthedocs.io/en/latest/specs/
    example = {
        "score": 44.0,
        "execution_time": 136,
        "output": "Text relevant to the entire submission",
        "output_format": "simple_format",
        "test_output_format": "text",
        "test_name_format": "text",
        "visibility": "after_due_date",
        "stdout_visibility": "visible",
        "extra_data": {},
        "tests": [
            {
                "score": 2.0, "max_score": 2.0, "status": "passed", "name": "Your name here",
                "name_format": "text", "number": "1.1", "output": "Giant multiline string",
                "output_format": "text", "tags": ["tag1", "tag2", "tag3"],
                "visibility": "visible", "extra_data": {},
            }
        ],
        "leaderboard": [
            {"name": "Accuracy", "value": 0.926},
            {"name": "Time", "value": 15.1, "order": "asc"},
            {"name": "Stars", "value": "*****"},
        ],
    }  # fmt: skip
    assert results.problems(example) == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d.pop("score"), "(top level)"),  # no score anywhere
        (lambda d: d.update(visibility="public"), "visibility"),
        (lambda d: d.update(stdout_visibilty="hidden"), "(top level)"),
        (lambda d: d["tests"][0].update(status="ok"), "tests/0/status"),
        (lambda d: d["tests"][0].update(number=1.1), "tests/0/number"),
        (lambda d: d["tests"][0].update(max_points=2), "tests/0"),
        (lambda d: d.update(output_format="markdown"), "output_format"),
    ],
)
def test_the_schema_refuses_what_gradescope_does_not_document(change, where):
    data = {"score": 1.0, "tests": [{"name": "t", "max_score": 2.0, "status": "passed"}]}
    change(data)
    found = results.problems(data)
    assert found and any(p.startswith(where) for p in found), found


def test_a_failure_report_follows_the_format():
    data = failure.failure_results("grader", "it broke", "log line\n" * 2000)
    assert results.problems(data) == []
    assert "not with your work" in data["output"] and "it broke" in data["output"]
    assert len(data["extra_data"]["autograder_error"]["log_tail"]) <= failure.LOG_KEPT


# --- the runner on this machine ---------------------------------------------------------------


@pytest.fixture
def autograder(tmp_path, bundle_dir):
    """A Gradescope-like /autograder under tmp_path: source (the bundle), submission (good/
    filled), results, the metadata."""
    root = tmp_path / "autograder"
    shutil.copytree(bundle_dir, root / "source")
    submissions.materialize("good", root / "submission")
    (root / "results").mkdir()
    (root / "submission_metadata.json").write_text(json.dumps(META))
    return root


def _fake_python(tmp_path, body: str):
    path = tmp_path / "fake-python"
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)
    return str(path)


def test_the_runner_gives_what_the_grader_gives_and_closes_its_files(autograder, tmp_path):
    code = runner.run(
        autograder / "source" / "autograder.yaml", root=autograder, log=lambda m: None
    )
    assert code == runner.GRADED
    got = json.loads((autograder / "results" / "results.json").read_text())
    assert results.problems(got) == []
    mode = got["extra_data"]["sandbox"]
    direct = grade_directly(
        autograder / "submission", tmp_path / "direct.json", meta=META, sandbox=mode, tmp=tmp_path
    )
    origin = str(autograder / "submission")
    assert_same_grading(got, direct, origin)
    assert got["score"] == 62 and got["extra_data"]["student_id"] == submissions.STUDENT_ID
    assert got["extra_data"]["student_id_source"] == "given to the grader"
    assert os.stat(autograder / "source").st_mode & 0o777 == 0o700
    assert os.stat(autograder / "results").st_mode & 0o777 == 0o700
    assert os.stat(autograder / "submission_metadata.json").st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("users", "note"),
    [
        ([{"email": "a@example.com", "id": 1, "name": "Ada"}], "no student ID (sid) for Ada"),
        ([{"email": "a@example.com", "id": 1, "name": "Ada", "sid": "x y/z"}], "cannot be a"),
        ([], "names no submitter"),
    ],
)
def test_without_a_usable_sid_the_scripts_project_gives_the_id(autograder, users, note):
    meta = {**META, "users": users}
    (autograder / "submission_metadata.json").write_text(json.dumps(meta))
    assert runner.run(root=autograder, log=lambda m: None) == runner.GRADED
    got = json.loads((autograder / "results" / "results.json").read_text())
    assert results.problems(got) == []
    assert note in got["output"].splitlines()[0]
    assert got["extra_data"]["student_id"] == submissions.STUDENT_ID  # from hw5-<id>
    assert got["score"] == 62


def test_a_group_submission_is_graded_with_the_first_member_s_id(autograder):
    meta = {
        **META,
        "users": [*META["users"], {"email": "b@x.org", "id": 2, "name": "B", "sid": "9"}],
    }
    (autograder / "submission_metadata.json").write_text(json.dumps(meta))
    assert runner.run(root=autograder, log=lambda m: None) == runner.GRADED
    got = json.loads((autograder / "results" / "results.json").read_text())
    assert "group submission of 2" in got["output"]
    assert got["extra_data"]["student_id"] == submissions.STUDENT_ID


def test_a_grader_that_cannot_run_gives_a_results_json_saying_why(autograder, tmp_path):
    python = _fake_python(
        tmp_path,
        "echo 'grading: no sandbox for the submission scripts: bwrap missing' >&2\nexit 2\n",
    )
    code = runner.run(root=autograder, python=python, log=lambda m: None)
    assert code == runner.FAILED
    got = results.load_checked(autograder / "results" / "results.json")
    assert got["score"] == 0 and got["tests"] == []
    error = got["extra_data"]["autograder_error"]
    assert error["stage"] == "grader" and "exit status 2" in error["message"]
    assert "no sandbox for the submission scripts" in got["output"]


def test_a_grading_past_the_time_limit_is_stopped_and_said(autograder, tmp_path):
    marker = tmp_path / "still-running"
    python = _fake_python(tmp_path, f"(sleep 5; touch {marker}) &\nsleep 60\n")
    config = tmp_path / "autograder.yaml"
    config.write_text("script_timeout: 1\ntime_limit: 2\n")
    started = time.monotonic()
    code = runner.run(config, root=autograder, python=python, log=lambda m: None)
    assert code == runner.FAILED and time.monotonic() - started < 30
    got = results.load_checked(autograder / "results" / "results.json")
    assert got["extra_data"]["autograder_error"]["stage"] == "timeout"
    assert "time limit (2 s" in got["output"]
    time.sleep(6)
    assert not marker.exists(), "the grader's processes must not outlive the time limit"


def test_results_off_gradescope_s_format_are_not_uploaded(autograder, tmp_path):
    python = _fake_python(
        tmp_path,
        'while [ "$1" != --out ]; do shift; done\n'
        'echo \'{"score": 1, "tests": [{"status": "ok"}]}\' > "$2"\n',
    )
    assert runner.run(root=autograder, python=python, log=lambda m: None) == runner.FAILED
    got = results.load_checked(autograder / "results" / "results.json")
    assert got["extra_data"]["autograder_error"]["stage"] == "results"
    assert "tests/0/status" in got["extra_data"]["autograder_error"]["message"]


def test_a_bad_config_inside_the_bundle_gives_a_results_json(autograder, tmp_path):
    config = tmp_path / "autograder.yaml"
    config.write_text("visibility: [\n")
    assert runner.run(config, root=autograder, log=lambda m: None) == runner.FAILED
    got = results.load_checked(autograder / "results" / "results.json")
    assert got["extra_data"]["autograder_error"]["stage"] == "config"


def _run_autograder_script(autograder, env_path: str, tmp_path):
    env = {"PATH": env_path, "HW5_AUTOGRADER_ROOT": str(autograder),
           "HW5_AUTOGRADER_VENV": str(tmp_path / "no-venv")}  # fmt: skip
    return subprocess.run(
        ["/bin/bash", str(autograder / "source" / "run_autograder")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_run_autograder_says_what_went_wrong_when_the_kit_cannot_start(autograder, tmp_path):
    done = _run_autograder_script(autograder, os.environ["PATH"], tmp_path)
    assert done.returncode == 0, done.stderr
    got = results.load_checked(autograder / "results" / "results.json")
    assert got["extra_data"]["autograder_error"]["stage"] == "install"
    assert "was setup.sh run?" in got["output"]
    # without any python3 either, the fixed last-resort file is still Gradescope's format
    (autograder / "results" / "results.json").unlink()
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("mkdir", "mktemp", "tee", "rm", "cat"):
        (tools / name).symlink_to(shutil.which(name))
    done = _run_autograder_script(autograder, str(tools), tmp_path)
    assert done.returncode == 0, done.stderr
    got = results.load_checked(autograder / "results" / "results.json")
    assert got["score"] == 0 and "not with your work" in got["output"]
