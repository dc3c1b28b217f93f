"""The short answers (SHORT_ANSWER_TEMPLATE.md, in French): their figures are what the committed
reports give (`python -m hw5kit.answers`), every course section is answered and is not the
course template's text, each answer points to code that exists, question 9 cites its sources,
and the grader's own checks pass on the file."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from hw5kit import answers
from hw5kit.grading import answers as graded

from .conftest import ROOT
from .support.submissions import COURSE_TEMPLATE

FILE = ROOT / answers.ANSWERS
QUESTIONS = [2, 4, 5, 7, 8, 9]
# the figure blocks each measured answer must hold
BLOCKS = {2: "q2-rebuild", 4: "q4-coldstart", 5: "q5-hop", 7: "q7-models", 9: "q9-quant"}
LINK_RE = re.compile(r"\]\(([^)\s]+)\)")
CODE_PREFIXES = ("src/", "apps/", "templates/", "deployment/", "tests/", "Dockerfile")


def text() -> str:
    return FILE.read_text()


def sections() -> dict[int, str]:
    return graded.parse(text(), answers.ANSWERS).sections


def local_links(body: str) -> list[str]:
    return [link for link in LINK_RE.findall(body) if not re.match(r"[a-z]+:", link)]


# ---- the figures -----------------------------------------------------------------------------
def test_the_figures_are_what_the_committed_reports_give(capsys):
    assert answers.update(text(), answers.render_blocks(ROOT)) == text()
    assert answers.main(["--check"]) == 0
    assert "every figure matches the reports" in capsys.readouterr().out


def copy_repo(tmp_path):
    """The answers and the four reports in a folder of their own."""
    for rel, _ in answers.REPORTS.values():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    shutil.copy(FILE, tmp_path / answers.ANSWERS)
    return tmp_path


def prose(body: str) -> str:
    return answers.BLOCK_RE.sub("", body)


def test_a_changed_report_makes_check_fail_and_the_command_rewrites_only_the_blocks(
    tmp_path, capsys
):
    root = copy_repo(tmp_path)
    hop_json = root / answers.REPORTS["hop"][0]
    results = json.loads(hop_json.read_text())
    results["services"]["backend_v1"]["after_run"]["rss_bytes"] = 999 * answers.MiB
    hop_json.write_text(json.dumps(results))
    before = (root / answers.ANSWERS).read_text()
    assert answers.main(["--check", "--root", str(root)]) == 1
    out = capsys.readouterr()
    assert "is stale" in out.err and "+| backend_v1 (gunicorn" in out.out
    assert (root / answers.ANSWERS).read_text() == before  # --check writes nothing
    assert answers.main(["--root", str(root)]) == 0
    after = (root / answers.ANSWERS).read_text()
    assert "**999 Mio**" in after and "**999 Mio**" not in before
    assert prose(after) == prose(before)
    assert answers.main(["--check", "--root", str(root)]) == 0


def test_a_missing_report_or_block_is_an_error_that_says_what_to_run(tmp_path, capsys):
    root = copy_repo(tmp_path)
    (root / "reports" / "hop" / "results.json").unlink()
    assert answers.main(["--check", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "reports/hop/results.json is missing: run `python -m hw5kit.bench hop`" in err

    root = copy_repo(tmp_path / "again")
    path = root / answers.ANSWERS
    path.write_text(path.read_text().replace("<!-- fig:q5-hop:begin -->", "<!-- q5 -->"))
    assert answers.main(["--root", str(root)]) == 2
    assert "no block for q5-hop" in capsys.readouterr().err


def test_the_numbers_are_written_the_french_way():
    assert answers.num(1097.46, 0) == "1 097"
    assert answers.num(3.14159, 2) == "3,14"
    assert answers.mib(411 * 2**20) == "411 Mio"
    assert answers.pct(0.8796) == "88,0 %"


# ---- the answers -----------------------------------------------------------------------------
def test_every_course_section_is_answered_and_is_not_the_template():
    course = graded.parse((COURSE_TEMPLATE / answers.ANSWERS).read_text(), "course")
    ours = graded.parse(text(), answers.ANSWERS)
    assert sorted(course.sections) == QUESTIONS
    assert sorted(ours.sections) == QUESTIONS
    for q in QUESTIONS:
        answer = ours.answer(q, cite_sources=q == 9)
        assert answer.ok, (q, answer.problems)
        mine = graded.clean(ours.sections[q])
        assert mine != graded.clean(course.sections[q])
        assert len(graded.WORD_RE.findall(prose(ours.sections[q]))) >= 150, q
    assert ours.header_problems() == []


def test_the_header_keeps_the_course_lines_and_the_configured_matricule():
    course = (COURSE_TEMPLATE / answers.ANSWERS).read_text()
    for line in course.splitlines():
        if line.startswith(("# ", "**Please", "**The title")):
            assert line in text(), line
    student_id = yaml.safe_load((ROOT / "deployment.yaml").read_text())["student_id"]
    assert graded.parse(text(), answers.ANSWERS).matricule == student_id


def test_each_measured_answer_holds_its_figures_and_each_answer_points_to_code():
    found = sections()
    for q, block in BLOCKS.items():
        match = answers.BLOCK_RE.search(found[q])
        assert match and match["name"] == block, q
        assert "|---" in match["body"], q  # a table, filled
    for q in QUESTIONS:
        code = [link for link in local_links(found[q]) if link.startswith(CODE_PREFIXES)]
        assert code, f"question {q} links to no code"


def test_every_relative_link_points_to_a_file_of_the_repository():
    missing = [link for link in local_links(text()) if not (ROOT / link.split("#")[0]).exists()]
    assert missing == []


def test_question_9_cites_at_least_three_sources():
    body = sections()[9]
    assert graded.cites_sources(body)
    listed = body.split("**Sources**", 1)[1]
    urls = set(graded.URL_RE.findall(listed))
    assert len(urls) >= 3, urls
    assert {"https://arxiv.org/abs/1712.05877", "https://arxiv.org/abs/1806.08342"} <= urls
    for n in range(1, len(urls) + 1):  # each listed source is cited in the text
        assert f"[{n}]" in body.split("**Sources**", 1)[0]


@pytest.mark.parametrize("q", QUESTIONS)
def test_the_grader_accepts_each_answer(q):
    found = graded.parse(text(), answers.ANSWERS)
    assert found.answer(q, cite_sources=q == 9).problems == []
