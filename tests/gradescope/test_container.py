"""The bundle run the way Gradescope runs it (marks: container, slow): an image built here
from Gradescope's default base, Ubuntu 22.04 (made with debootstrap; Debian 12 where Ubuntu's
archive does not answer), the bundle unzipped into /autograder/source and setup.sh run once;
then, for each submission, a fresh container with the submission in /autograder/submission,
a metadata file, and /autograder/run_autograder. Each results.json must pass the check against
Gradescope's documented format and match what `python -m hw5kit.grading` (`nox -s grade`)
gives for the same folder, with user namespaces (bubblewrap where the image's allows it) and
without them (the grader's fallback sandbox), for a hostile submission too; and when the
grader itself cannot run, the results.json says so.

The image is kept in the project's container store and reused while the bundle's bytes do not
change (the bundle is reproducible); the figures are printed (`-s`).
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from hw5kit import devenv
from hw5kit.containers.engine import PODMAN_TOOLS, detect, docker_daemon_answers
from hw5kit.gradescope import local, results

from ..conftest import need, subprocess_env
from ..support import submissions
from ..support.pipeline import PROJECT, deployed_copy
from .conftest import META, assert_same_grading, comparable, grade_directly

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(1800)]

FIGURES: dict[str, str] = {}


@pytest.fixture(scope="module")
def engine():
    if not docker_daemon_answers():
        missing = devenv.ensure_system_packages(PODMAN_TOOLS)
        need(not missing, f"a Docker daemon, or {', '.join(PODMAN_TOOLS)} (missing: {missing})")
    found = detect(install=False, log=print)
    need(found.kind == "podman", "the Gradescope-like image is made with podman (debootstrap)")
    return found


@pytest.fixture(scope="module")
def image(engine, bundle_zip):
    started = time.monotonic()
    made = local.image_for(engine, bundle_zip, "auto")
    FIGURES["image"] = (
        f"{made.ref} on {made.flavor}: {'built' if made.built else 'reused'} in "
        f"{time.monotonic() - started:.0f} s; bundle {bundle_zip.stat().st_size / 2**20:.1f} MiB"
    )
    print(FIGURES["image"])
    return made


@pytest.fixture(scope="module")
def bwrap_in_image(engine, image) -> bool:
    """Whether the image has bubblewrap (setup.sh installs it). Any version will do: Ubuntu
    22.04's 0.6.1 lacks --size, and the grader then bounds /tmp and /dev/shm itself."""
    done = engine.call(["run", "--rm", "--network", "none", image.ref, "bwrap", "--version"],
                       check=False, timeout=120)  # fmt: skip
    return done.returncode == 0


@pytest.fixture(scope="module", autouse=True)
def _print_figures():
    yield
    print("\nGradescope bundle in a container:\n  " + "\n  ".join(FIGURES.values()))


def _graded(run: local.Run, label: str) -> dict:
    assert run.results is not None, f"{run.problem}\n{run.stdout[-3000:]}"
    assert run.status == 0, run.stdout[-3000:]
    assert results.problems(run.results) == [], results.problems(run.results)
    assert not run.source_changed, "the bundle's or the kit's files changed during grading"
    assert run.leftovers == [], f"processes left running: {run.leftovers}"
    FIGURES[label] = (
        f"{label}: run_autograder {run.seconds:.1f} s ({run.total_seconds:.1f} s with the "
        f"container), score {run.results['score']:g}, sandbox "
        f"{run.results.get('extra_data', {}).get('sandbox')}"
    )
    return run.results


def _scripts_line(results: dict) -> str:
    """The summary's line on how the scripts were isolated."""
    return next(x for x in results["output"].splitlines() if x.startswith("scripts: "))


def _same_as_nox_grade(got: dict, folder, tmp_path, meta=META):
    direct = grade_directly(
        folder, tmp_path / "direct.json", meta=meta, sandbox=got["extra_data"]["sandbox"],
        tmp=tmp_path,
    )  # fmt: skip
    # the container's own bubblewrap and namespaces, not the host's: the tests check that line
    got = {**got, "output": got["output"].replace(_scripts_line(got), _scripts_line(direct))}
    # in the container the folder is /autograder/submission, here its copy's own path
    got = json.loads(json.dumps(got).replace("/autograder/submission", str(folder)))
    assert_same_grading(got, direct, str(folder))
    return direct


@pytest.mark.parametrize("userns", [True, False], ids=["userns", "no-userns"])
def test_the_repository_deployed_by_the_fake_pipeline_gets_every_automatic_point(
    userns, engine, image, bwrap_in_image, tmp_path
):
    repo, _ = deployed_copy(tmp_path, subprocess_env(tmp_path))
    meta = local.metadata(PROJECT.removeprefix("hw5-"))
    run = local.run_submission(engine, image.ref, repo, meta, userns=userns)
    got = _graded(run, f"own repository ({'userns' if userns else 'no userns'})")
    assert got["score"] == 62
    expected = "bwrap" if userns and bwrap_in_image else "user"
    assert got["extra_data"]["sandbox"] == expected
    said = _scripts_line(got)
    if expected == "bwrap":  # Ubuntu 22.04's bubblewrap 0.6.1: no --size, still bubblewrap
        assert "this bubblewrap has no --size" in said, said
    elif bwrap_in_image:  # installed, its namespaces refused: said so, not "install it"
        assert "bubblewrap is installed, but user namespaces are refused here" in said, said
        assert "install bubblewrap" not in said.lower(), said
    _same_as_nox_grade(got, repo, tmp_path, meta)


def test_on_debian_12_with_user_namespaces_the_scripts_run_in_bubblewrap(
    engine, bundle_zip, tmp_path
):
    """Debian 12's bubblewrap (0.8) has what the grader asks of it: with user namespaces the
    container grades in the bwrap sandbox, with the same results as `nox -s grade`."""
    made = local.image_for(engine, bundle_zip, "debian-12")
    folder = submissions.materialize("wrong_port", tmp_path / "wrong_port")
    run = local.run_submission(engine, made.ref, folder, META, userns=True)
    got = _graded(run, "wrong_port on Debian 12 (userns)")
    assert got["extra_data"]["sandbox"] == "bwrap"
    _same_as_nox_grade(got, folder, tmp_path)


@pytest.mark.parametrize("name", ["course_template", "wrong_port", "misspelt_substitution"])
def test_corpus_submissions_grade_as_nox_grade_does(name, engine, image, tmp_path):
    if name == "course_template":
        folder = tmp_path / name
        shutil.copytree(submissions.COURSE_TEMPLATE, folder)
    else:
        folder = submissions.materialize(name, tmp_path / name)
    run = local.run_submission(engine, image.ref, folder, META)
    got = _graded(run, name)
    direct = _same_as_nox_grade(got, folder, tmp_path)
    lost = {t["number"]: t["max_score"] - t["score"] for t in got["tests"]
            if "score" in t and t["score"] < t["max_score"]}  # fmt: skip
    if name == "course_template":
        assert got["score"] <= 2
    else:
        expected = submissions.corpus()[name]["lost"]
        assert lost == {k.removeprefix("Q"): float(v) for k, v in expected.items()}
    assert direct["score"] == got["score"]


def test_without_a_student_id_in_the_metadata_the_scripts_give_it(engine, image, tmp_path):
    folder = submissions.materialize("good", tmp_path / "good")
    meta = local.metadata(None)
    run = local.run_submission(engine, image.ref, folder, meta)
    got = _graded(run, "good, no sid in the metadata")
    assert got["score"] == 62
    assert "no student ID (sid) for Student User" in got["output"].splitlines()[0]
    assert got["extra_data"]["student_id"] == submissions.STUDENT_ID


HOSTILE = """#!/bin/bash
# hw5hostile: attacks the autograder, then submits nothing
forged='{"score": 100.0, "output": "FORGED", "tests": []}'
echo "$forged" > /autograder/results/results.json
cat /autograder/submission_metadata.json
cat /autograder/source/autograder.yaml
echo 'echo pwned' >> /autograder/run_autograder
kit=/opt/hw5kit/lib/python3.11/site-packages/hw5kit
echo 'import os; os.system("touch /tmp/pwned")' >> $kit/__init__.py
rm -rf /autograder/source /opt/hw5kit /autograder/submission 2>&1 | head -3
(setsid sh -c "sleep 2; echo '$forged' > /autograder/results/results.json; sleep 600" &)
nohup sleep 600 >/dev/null 2>&1 &
kill -9 -1
exit 0
"""


@pytest.mark.parametrize("userns", [True, False], ids=["userns", "no-userns"])
def test_a_hostile_submission_changes_nothing_and_is_graded_as_nox_grade_does(
    userns, engine, image, tmp_path
):
    spec = {"write": {"deployment/submit_build.sh": HOSTILE}}
    folder = submissions.materialize("hostile", tmp_path / "hostile", spec)
    run = local.run_submission(engine, image.ref, folder, META, userns=userns)
    time.sleep(0)  # the harness waited; _graded checks files and processes
    got = _graded(run, f"hostile ({'userns' if userns else 'no userns'})")
    text = json.dumps(got)
    assert "FORGED" not in text and got["score"] < 62
    assert "student0@example.com" not in text, "the metadata (e-mails) was readable"
    assert "script_timeout" not in text, "the bundle's files were readable"
    submit = next(t for t in got["tests"] if t["number"] == "1.8")
    assert submit["status"] == "failed"
    direct = grade_directly(
        folder, tmp_path / "direct.json", meta=META, sandbox=got["extra_data"]["sandbox"],
        tmp=tmp_path,
    )  # fmt: skip
    # the attacks' own messages differ here and there (paths that exist in one place only)
    assert [(t["number"], t.get("score"), t["status"]) for t in got["tests"]] == [
        (t["number"], t.get("score"), t["status"]) for t in direct["tests"]
    ]
    assert got["score"] == direct["score"]


def test_a_broken_installation_still_leaves_a_results_json_saying_so(engine, image, tmp_path):
    folder = submissions.materialize("good", tmp_path / "good")
    run = local.run_submission(
        engine, image.ref, folder, META,
        prepare="rm -rf /opt/hw5kit/lib/python3.11/site-packages/hw5kit",
    )  # fmt: skip
    assert run.results is not None, run.problem
    assert results.problems(run.results) == []
    error = run.results["extra_data"]["autograder_error"]
    assert error["stage"] == "install" and "was setup.sh run?" in error["message"]
    assert "No module named 'hw5kit'" in error["log_tail"]
    assert run.results["score"] == 0 and "not with your work" in run.results["output"]


def test_a_sandbox_the_container_refuses_gives_a_results_json_saying_so(engine, image, tmp_path):
    folder = submissions.materialize("good", tmp_path / "good")
    config = tmp_path / "autograder.yaml"
    config.write_text("sandbox: bwrap\n")
    run = local.run_submission(engine, image.ref, folder, META, userns=False, config=config)
    assert run.results is not None, run.problem
    assert results.problems(run.results) == []
    error = run.results["extra_data"]["autograder_error"]
    assert error["stage"] == "grader" and "exit status 2" in error["message"]
    assert "bubblewrap" in run.results["output"]
    assert comparable(run.results, "") != {}  # a results.json, not a crash
