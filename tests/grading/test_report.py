"""results.json against Gradescope's autograder format, and the readable summary."""

from __future__ import annotations

import json

import jsonschema
import pytest

from hw5kit.grading import report
from hw5kit.grading.rubric import load

RUBRIC = load()
VISIBILITY = ["hidden", "after_due_date", "after_published", "visible"]
FORMATS = ["text", "html", "simple_format", "md", "ansi"]
# https://gradescope-autograders.readthedocs.io/en/latest/specs/ ("Output format")
GRADESCOPE_RESULTS = {
    "type": "object",
    "required": ["tests"],
    "additionalProperties": False,
    "properties": {
        "score": {"type": "number"},
        "execution_time": {"type": "number"},
        "output": {"type": "string"},
        "output_format": {"enum": FORMATS},
        "test_output_format": {"enum": FORMATS},
        "test_name_format": {"enum": FORMATS},
        "visibility": {"enum": VISIBILITY},
        "stdout_visibility": {"enum": VISIBILITY},
        "extra_data": {"type": "object"},
        "leaderboard": {"type": "array"},
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "score": {"type": "number"},
                    "max_score": {"type": "number"},
                    "status": {"enum": ["passed", "failed"]},
                    "name": {"type": "string"},
                    "name_format": {"enum": FORMATS},
                    "number": {"type": "string"},
                    "output": {"type": "string"},
                    "output_format": {"enum": FORMATS},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "visibility": {"enum": VISIBILITY},
                    "extra_data": {"type": "object"},
                },
            },
        },
    },
}


@pytest.fixture
def graded(materialize, grade_submission):
    return grade_submission(materialize("wrong_port"))


def test_results_follow_gradescope_s_format_and_add_up(graded):
    data = json.loads(json.dumps(report.results_json(graded, visibility="after_published")))
    jsonschema.validate(data, GRADESCOPE_RESULTS)
    tests = data["tests"]
    assert len(tests) == len(RUBRIC.items)
    automatic = [t for t in tests if "automatic" in t["tags"]]
    manual = [t for t in tests if "manual" in t["tags"]]
    assert all("score" in t and 0 <= t["score"] <= t["max_score"] for t in automatic)
    assert all("score" not in t and "max_score" not in t for t in manual)
    assert data["score"] == sum(t["score"] for t in automatic) == RUBRIC.automatic_points - 1
    assert sum(t["max_score"] for t in automatic) == RUBRIC.automatic_points
    failed = [t["number"] for t in tests if t["status"] == "failed"]
    assert failed == ["3.3"]
    assert {t["visibility"] for t in tests} == {"after_published"}
    assert data["stdout_visibility"] == "hidden"  # paths and timings are for staff
    questions = {q["question"]: q for q in data["extra_data"]["questions"]}
    assert questions["Q3"]["automatic_score"] == 9 and questions["Q3"]["automatic_max"] == 10
    assert questions["Q7"]["manual_points"] == 10 and questions["Q7"]["automatic_max"] == 0
    assert data["extra_data"]["rubric_total"] == 100


def test_the_summary_shows_per_question_totals_and_what_failed(graded):
    text = report.summary(graded, details=False)
    assert "Q3              9 / 10" in text
    assert "Q7                   -   10 points to grade (answer present)" in text
    assert "61 / 62   + 38 points graded by hand = 100" in text
    assert "FAIL Q3.3 [0/1]" in text and "--port=8080" in text
    assert "ok   Q1.1 [4/4]" in text and "valid, 6 steps" not in text  # details=False


def test_each_deduction_is_one_line_with_its_evidence(graded):
    """A TA reads the deductions without opening results.json: the points, the item, the file
    and line, the value found, what was expected."""
    text = report.summary(graded, details=False)
    line = (
        "-1     Q3.3   deployment/deploy_backend_v1.sh:10: found --port=8080; expected --port=8000"
    )
    assert report.deductions(graded) == [line]
    assert f"  {line}" in text.split("deductions", 1)[1].split("\n\n", 1)[0]
    data = report.results_json(graded)
    assert data["extra_data"]["deductions"] == [
        {
            "item": "Q3.3",
            "points": 1.0,
            "where": "deployment/deploy_backend_v1.sh:10",
            "found": "--port=8080",
            "expected": "--port=8000",
        }
    ]


def test_results_are_written_atomically(graded, tmp_path):
    target = tmp_path / "out" / "results.json"
    report.write_json(report.results_json(graded), target)
    assert json.loads(target.read_text())["score"] == RUBRIC.automatic_points - 1
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]
