"""The rubric as data: the course's totals, every check known, manual items, and the table of
the grading pages."""

from __future__ import annotations

import pytest
import yaml

from hw5kit.grading import checks, rubric

from ..conftest import ROOT

COURSE_TOTALS = {
    "Q1": 40,
    "Q2": 5,
    "Q3": 10,
    "Q4": 6,
    "Q5": 6,
    "Q6": 10,
    "Q7": 10,
    "Q8": 8,
    "Q9": 5,
}


def test_question_totals_are_the_course_s():
    r = rubric.load()
    assert {q.id: q.points for q in r.questions} == COURSE_TOTALS
    assert r.total == 100
    assert r.automatic_points + r.manual_points == 100


def test_every_item_names_a_known_check_and_manual_items_are_the_short_answers():
    r = rubric.load()
    for item in r.items:
        assert item.check in checks.CHECKS, item.id
        assert item.manual == (item.check == "short_answer"), item.id
    answered = sorted(i.args["question"] for i in r.items if i.manual)
    assert answered == [2, 4, 5, 7, 8, 9]  # the sections of SHORT_ANSWER_TEMPLATE.md


def test_a_rubric_whose_items_do_not_add_up_is_refused():
    data = yaml.safe_load(rubric.RUBRIC_PATH.read_text())
    data["questions"][0]["items"][0]["points"] += 1
    with pytest.raises(
        rubric.RubricError, match="Q1 is worth 40 points but its items add up to 41"
    ):
        rubric.parse(data)


def test_the_grading_pages_table_is_generated_from_the_rubric(tmp_path):
    """Both languages' grading pages hold the table, and it is the rubric's."""
    assert [p.name for p in rubric.PAGES] == ["index.md", "index.fr.md"]
    assert rubric.main(["docs", "--check"]) == 0, f"stale: run {rubric.COMMAND}"
    for page in rubric.PAGES:
        text = page.read_text()
        assert rubric.render_page(text) == text, f"{page} is stale: run {rubric.COMMAND}"
        for item in rubric.load().items:
            assert f"| {item.id} |" in text
    page = (ROOT / "docs" / "ta" / "index.fr.md").read_text()
    stale = tmp_path / "index.fr.md"
    stale.write_text(page.replace("| Q1.2 | 5 |", "| Q1.2 | 6 |"))
    assert rubric.main(["docs", "--check", "--path", str(stale)]) == 1
    assert rubric.main(["readme", "--path", str(stale)]) == 0  # the old name still works
    assert stale.read_text() == page
    bare = tmp_path / "bare.md"
    bare.write_text("# no table\n")
    assert rubric.main(["docs", "--check", "--path", str(bare)]) == 1
