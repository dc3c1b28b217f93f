"""Short answers: what is checked automatically (present, not empty, not the template's text,
question 9's sources) and that the text reaches the report for a person; the student ID from
the matricule."""

from __future__ import annotations

import json

import pytest

from hw5kit.grading import answers, report

from ..support.submissions import COURSE_TEMPLATE
from .conftest import result

TEMPLATE = (COURSE_TEMPLATE / "SHORT_ANSWER_TEMPLATE.md").read_text()


def parsed(text: str) -> answers.ShortAnswers:
    return answers.parse(text, "SHORT_ANSWER_TEMPLATE.md")


def test_the_course_template_has_every_question_but_no_answer():
    found = parsed(TEMPLATE)
    assert sorted(found.sections) == [2, 4, 5, 7, 8, 9]
    for q in (2, 4, 5, 7, 8, 9):
        answer = found.answer(q, cite_sources=q == 9)
        assert answer.problems == [f"Question {q} is empty in SHORT_ANSWER_TEMPLATE.md"]
    assert found.header_problems() == [
        "the Name line still holds the template's text",
        "the Matricule line still holds the template's text",
    ]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("Your answer here", "still holds the template's placeholder"),
        ("<!-- à remplir -->\n\n**  **", "is empty"),
        ("TODO.", "still holds the template's placeholder"),
        ("Parce que le modèle est global.", None),
    ],
)
def test_an_answer_must_be_more_than_the_template(body, problem):
    found = parsed(TEMPLATE.replace("## Question 5\n", f"## Question 5\n{body}\n"))
    answer = found.answer(5)
    if problem is None:
        assert answer.ok and body in answer.text
    else:
        assert len(answer.problems) == 1 and problem in answer.problems[0]


@pytest.mark.parametrize(
    ("sources", "cited"),
    [
        ("Source : https://www.ibm.com/think/topics/quantization", True),
        ("Références\n- Jacob et al., 2018, CVPR", True),
        ("See doi:10.1109/CVPR.2018.00286", True),
        ("La quantification réduit la mémoire.", False),
    ],
)
def test_question_9_must_cite_its_sources(sources, cited):
    found = parsed(
        TEMPLATE.replace("## Question 9", f"## Question 9\nAvantages, inconvénients.\n{sources}")
    )
    answer = found.answer(9, cite_sources=True)
    assert answer.ok is cited
    if not cited:
        assert "cites no source" in answer.problems[0]


def test_headings_written_differently_are_found():
    text = "### Question 2 :\nDeux images.\n\n## question 4 — modèle\nAu build.\n## Q5\nOui.\n"
    found = parsed(text)
    assert found.sections[2] == "Deux images." and found.answer(4).ok and found.answer(5).ok
    assert "no '## Question 7' section" in found.answer(7).problems[0]


def test_answers_reach_the_report_for_a_person(materialize, grade_submission):
    grading = grade_submission(materialize("good"))
    q7 = result(grading, "Q7.1")
    assert q7.score is None and q7.passed
    assert "--- answer (SHORT_ANSWER_TEMPLATE.md) ---" in q7.output
    assert "En v1 il n'y a qu'un modèle" in q7.output
    test = next(t for t in report.results_json(grading)["tests"] if t["number"] == "7.1")
    assert "score" not in test and "max_score" not in test
    assert "graded by hand" in test["name"] and "En v1" in test["output"]
    assert "En v1" not in report.summary(grading)  # the summary lists statuses only


def test_a_pdf_report_instead_of_the_markdown_is_left_to_a_person(materialize, grade_submission):
    submission = materialize("pdf")
    (submission / "SHORT_ANSWER_TEMPLATE.md").unlink()
    (submission / "HW5_Camille_20261234.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    grading = grade_submission(submission)
    output = result(grading, "Q4.1").output
    assert "SHORT_ANSWER_TEMPLATE.md not found" in output
    assert "HW5_Camille_20261234.pdf" in output and "graded by hand only" in output


def test_the_matricule_gives_the_student_id_when_no_script_names_the_project(
    materialize, grade_submission
):
    submission = materialize("matricule")
    for script in (submission / "deployment").glob("*.sh"):
        script.unlink()
    (submission / "deployment" / "cloudbuild.yaml").unlink()
    grading = grade_submission(submission)
    assert grading.context.student_id == "20261234"
    assert grading.context.id_source == "from the matricule in the short answers"


def test_a_given_student_id_wins_and_a_mismatch_is_noted(materialize, grade_submission):
    grading = grade_submission(materialize("good"), student_id="20265555")
    assert grading.context.project == "hw5-20265555"
    assert any("hw5-20261234" in note for note in grading.context.notes)
    # the scripts push to another project's registry: refused, as Google would
    assert 'denied on resource "projects/hw5-20261234' in result(grading, "Q1.10").output
    assert "not in the student's registry" in result(grading, "Q3.2").output
    assert json.loads(json.dumps(report.results_json(grading)))["extra_data"]["project"] == (
        "hw5-20265555"
    )
