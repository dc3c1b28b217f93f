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
    for item in spec.get("lost") or {}:
        output = result(grading, item).output
        assert output.strip(), f"{name}: {item} failed without saying why"


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
