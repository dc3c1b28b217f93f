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


def test_failure_messages_name_the_mistake(materialize, grade_submission):
    grading = grade_submission(materialize("wrong_port"))
    assert "--port=8080" in result(grading, "Q3.3").output
    grading = grade_submission(materialize("misspelt_substitution"))
    assert "did you mean ${_SERVING_PORT}" in result(grading, "Q1.7").output
    grading = grade_submission(materialize("deliverables_yaml_syntax_error"))
    assert "line 15" in result(grading, "Q1.11").output
    grading = grade_submission(materialize("scripts_at_the_top"))
    assert "found at the top of the submission" in result(grading, "Q1.8").output
    grading = grade_submission(materialize("submit_takes_the_image_as_argument"))
    runs = result(grading, "Q1.8").output
    assert "run again once per image" in runs and "4 build(s) submitted" in runs


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


def test_issue_18_cases_are_graded_by_effect_and_say_why(materialize, grade_submission):
    """Each case of issue 18 says, in its item's output and its deduction line, what the TA
    needs: the values found, where, and what was expected."""
    grading = grade_submission(materialize("build_arg_name_mismatch"))
    output = result(grading, "Q1.5").output
    assert "BASE_IMAGE_URI" in output and "--build-arg BASE_IMAGE=" in output
    assert "should not be blank" in output  # what the fake Cloud Build said
    line = next(d for d in report.deductions(grading) if " Q1.5 " in d)
    assert "deployment/cloudbuild.yaml:" in line and "Dockerfile.backend_v1:2" in line

    grading = grade_submission(materialize("build_arg_name_mismatch_with_a_default"))
    assert "starts FROM python:3.11-slim" in result(grading, "Q1.5").output

    grading = grade_submission(materialize("hard_coded_image_uris"))
    assert "written out" in result(grading, "Q1.2").output
    assert "hw5-images/base_image:${BUILD_ID}" in result(grading, "Q1.2").output
    assert "written out" in result(grading, "Q1.7").output

    grading = grade_submission(materialize("bare_url_deliverables"))
    assert "bare URL" in result(grading, "Q1.11").output
    assert result(grading, "Q3.8").passed and result(grading, "Q6.9").passed

    grading = grade_submission(materialize("per_service_files_at_the_top"))
    assert "4 build(s) submitted" in result(grading, "Q1.8").output
    per_build = result(grading, "Q1.2").output
    assert all(f"✓ {app} (cloudbuild_{app}.yaml" in per_build for app in submissions.APPS)
    assert any("one per service" in n for n in grading.context.notes)

    grading = grade_submission(materialize("serving_url_in_the_other_url_form"))
    assert "carries no project" in result(grading, "Q3.7").output
    grading = grade_submission(materialize("serving_url_in_another_region"))
    assert "region us-east1 (ue), not us-central1 (uc)" in result(grading, "Q3.7").output
    grading = grade_submission(materialize("serving_url_in_another_project"))
    assert "project hash" in result(grading, "Q6.7").output
    grading = grade_submission(materialize("cloud_run_name_too_long"))
    assert "must be less than 50 characters" in result(grading, "Q3.1").output
