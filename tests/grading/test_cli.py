"""``python -m hw5kit.grading``: help, errors, one or several submissions, Gradescope's
metadata."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..support import submissions


def grading(*args, cwd=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "hw5kit.grading", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def test_help_documents_every_option():
    done = grading("--help")
    assert done.returncode == 0
    for option in (
        "SUBMISSION_DIR",
        "--live",
        "--out",
        "--student-id",
        "--gradescope-metadata",
        "--sandbox",
        "--timeout",
        "--url-map",
        "--visibility",
        "run_autograder",
    ):
        assert option in done.stdout, option


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/submission"], "not a folder"),
        (["{tmp}", "--student-id", "Bad ID!"], "expected the ID in hw5-<ID>"),
        (["{tmp}", "--url-map", "nope"], "expected FROM=TO"),
        (["{tmp}", "--timeout", "0"], "--timeout must be positive"),
        (["{tmp}", "{tmp}", "--out", "x.json"], "give a folder"),
        (["{tmp}", "--gradescope-metadata", "{tmp}/missing.json"], "cannot read the student's sid"),
    ],
)
def test_bad_arguments_stop_with_a_message(args, message, tmp_path):
    done = grading(*(a.format(tmp=tmp_path) for a in args), cwd=tmp_path)
    assert done.returncode == 2 or (done.returncode == 1 and "sid" in message)
    assert message in done.stderr
    assert not (tmp_path / "results.json").exists()


def test_one_submission_writes_results_and_prints_the_summary(tmp_path):
    submission = submissions.materialize("wrong_port", tmp_path / "sub")
    metadata = tmp_path / "submission_metadata.json"
    metadata.write_text(json.dumps({"users": [{"name": "C. T.", "sid": "20261234"}]}))
    done = grading(submission, "--gradescope-metadata", metadata, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "total          61 / 62" in done.stdout
    assert f"results: {'results.json'}" in done.stdout
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["score"] == 61
    assert data["extra_data"]["student_id_source"] == "given to the grader"


def test_several_submissions_get_one_result_each(tmp_path):
    dirs = [submissions.materialize(n, tmp_path / n) for n in ("good", "app_not_pushed")]
    done = grading(*dirs, "--out", tmp_path / "results", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "good: 62 / 62 automatic" in done.stdout
    assert "app_not_pushed: 59 / 62 automatic" in done.stdout
    assert "graded 2 submissions in" in done.stdout
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [
        "app_not_pushed.json",
        "good.json",
    ]
