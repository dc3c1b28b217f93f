"""The corpus: a good submission gets every automatic point, each broken one (one mistake)
loses exactly the points tests/fixtures/submissions/corpus.yaml says, the course's untouched
templates get close to nothing, and 20 submissions are graded in well under a minute."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from hw5kit.grading import report
from hw5kit.grading.rubric import load

from ..support import submissions
from .conftest import lost_points, result

CORPUS = submissions.corpus()
RUBRIC = load()
ITEMS = {i.id: i for i in RUBRIC.items}


def test_the_corpus_holds_at_least_15_broken_submissions_with_rubric_derived_losses():
    broken = {name: spec for name, spec in CORPUS.items() if spec.get("lost")}
    assert len(broken) >= 15
    for name, spec in CORPUS.items():
        assert spec.get("mistake"), name
        # the TA's justification of the points, in one line
        assert isinstance(spec.get("ta"), str) and "\n" not in spec["ta"].strip(), name
        for item, points in (spec.get("lost") or {}).items():
            assert item in ITEMS and not ITEMS[item].manual, (name, item)
            assert 0 < points <= ITEMS[item].points, (name, item)
        for item in spec.get("manual_failed") or []:
            assert ITEMS[item].manual, (name, item)


def test_the_good_submission_gets_every_automatic_point(materialize, grade_submission):
    grading = grade_submission(materialize("good"))
    failed = {r.item.id: r.output for r in grading.results if not r.passed}
    assert failed == {}
    assert report.score(grading) == RUBRIC.automatic_points
    assert grading.context.student_id == submissions.STUDENT_ID
    assert grading.context.sandbox.mode == "bwrap"


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_mistake_loses_exactly_the_expected_points(name, materialize, grade_submission):
    spec = CORPUS[name]
    grading = grade_submission(materialize(name))
    assert lost_points(grading) == {k: float(v) for k, v in (spec.get("lost") or {}).items()}, (
        report.summary(grading)
    )
    manual_failed = sorted(r.item.id for r in grading.results if r.manual and not r.passed)
    assert manual_failed == sorted(spec.get("manual_failed") or [])
    summary = report.summary(grading, details=False)
    deductions = report.deductions(grading)
    assert len(deductions) == len(spec.get("lost") or {}), summary
    for item in spec.get("lost") or {}:
        output = result(grading, item).output
        assert output.strip(), f"{name}: {item} failed without saying why"
        # one line per deduction in the summary: the item, where, what was found and expected
        line = next(d for d in deductions if f" {item} " in d)
        assert "found " in line and "; expected " in line and "\n" not in line, line
        assert line in summary


# What an item's output must say for a variant: (item, text), as a TA would want to read it.
EXPLAINED = {
    "wrong_port": [("Q3.3", "--port=8080")],
    "misspelt_substitution": [("Q1.7", "did you mean ${_SERVING_PORT}")],
    "deliverables_yaml_syntax_error": [("Q1.11", "line 15")],
    "scripts_at_the_top": [("Q1.8", "found at the top of the submission")],
    "submit_takes_the_image_as_argument": [
        ("Q1.8", "run again once per image"),
        ("Q1.8", "4 build(s) submitted"),
    ],
    # issue 18: the values found, where, what the fake Cloud Build said
    "build_arg_name_mismatch": [
        ("Q1.5", "reads ARG BASE_IMAGE_URI (Dockerfile.backend_v1:1)"),
        ("Q1.5", "--build-arg BASE_IMAGE="),
        ("Q1.5", "should not be blank"),
    ],
    "build_arg_name_mismatch_with_a_default": [("Q1.5", "starts FROM python:3.11-slim")],
    "hard_coded_image_uris": [
        ("Q1.2", "hw5-images/base_image:${BUILD_ID}"),
        ("Q1.2", "the name written out, which counts too"),
        ("Q1.7", "written out"),
    ],
    "bare_url_deliverables": [("Q1.11", "bare URL"), ("Q3.8", "services.v1.back_end.service_url")],
    "per_service_files_at_the_top": [
        ("Q1.8", "4 build(s) submitted"),
        *[("Q1.2", f"✓ {app} (cloudbuild_{app}.yaml") for app in submissions.APPS],
    ],
    "serving_url_in_the_other_url_form": [("Q3.7", "carries no project")],
    "serving_url_in_another_region": [("Q3.7", "region us-east1 (ue), not us-central1 (uc)")],
    "serving_url_in_another_project": [("Q6.7", "project hash")],
    "cloud_run_name_too_long": [("Q3.1", "must be less than 50 characters")],
}


@pytest.mark.parametrize("name", sorted(EXPLAINED))
def test_failure_messages_name_the_mistake(name, materialize, grade_submission):
    grading = grade_submission(materialize(name))
    for item, text in EXPLAINED[name]:
        assert text in result(grading, item).output, (item, result(grading, item).output)


def test_a_deduction_line_points_at_both_files_and_older_layouts_get_a_note(
    materialize, grade_submission
):
    grading = grade_submission(materialize("build_arg_name_mismatch"))
    line = next(d for d in report.deductions(grading) if " Q1.5 " in d)
    assert "deployment/cloudbuild.yaml:32, Dockerfile.backend_v1:2: found --build-arg" in line
    grading = grade_submission(materialize("per_service_cloud_build_files"))
    assert sum("one per service" in n for n in grading.context.notes) == 2  # builds, scripts


@pytest.mark.parametrize("student_id", [None, submissions.STUDENT_ID])
def test_the_course_untouched_templates_score_close_to_zero(student_id, grade_submission):
    grading = grade_submission(submissions.COURSE_TEMPLATE, student_id=student_id)
    assert report.score(grading) <= 2, report.summary(grading)
    assert all(not r.passed for r in grading.results if r.manual)
    if student_id:  # the template's script ran and gcloud refused its empty values
        assert "gcloud refused" in result(grading, "Q1.8").output


def test_the_course_template_files_are_the_repository_s_own_deliverables_template():
    from ..conftest import ROOT

    fixture = (submissions.COURSE_TEMPLATE / "deliverables.yaml").read_text()
    assert fixture == (ROOT / "deliverables.yaml").read_text()


@pytest.mark.slow
def test_grading_20_submissions_takes_well_under_a_minute(tmp_path):
    """A benchmark figure, printed: the CLI grades 20 corpus submissions in one process."""
    names = ["good", *sorted(n for n, s in CORPUS.items() if s.get("lost"))][:20]
    assert len(names) == 20
    dirs = [submissions.materialize(n, tmp_path / "subs" / n) for n in names]
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "hw5kit.grading", *map(str, dirs), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    figure = re.search(r"graded 20 submissions in ([0-9.]+) s", done.stdout)
    assert figure, done.stdout
    print(f"\nbenchmark: {figure.group(0)}")
    assert sorted(p.stem for p in out.glob("*.json")) == sorted(names)
    good = json.loads((out / "good.json").read_text())
    assert good["score"] == RUBRIC.automatic_points
