"""The repository itself: skeleton, committed deliverables, nox menu, CI entry, lint."""

import ast
import re
import subprocess
import sys

import yaml

from .conftest import ROOT

COURSE_KEYS = {"v1", "v2"}


def test_deliverables_keep_the_course_shape():
    data = yaml.safe_load((ROOT / "deliverables.yaml").read_text())
    services = data["services"]
    assert set(services) >= COURSE_KEYS
    for version in COURSE_KEYS:
        assert set(services[version]) == {"back_end", "front_end"}
        for part in ("back_end", "front_end"):
            assert set(services[version][part]) == {"build_id", "service_url"}


def test_short_answer_template_has_the_course_sections():
    text = (ROOT / "SHORT_ANSWER_TEMPLATE.md").read_text()
    assert "**Name:**" in text and "**Matricule" in text
    for q in (2, 4, 5, 7, 8, 9):
        assert re.search(rf"^## Question {q}\s*$", text, re.M), q


def _nox_sessions():
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                if isinstance(target, ast.Attribute) and target.attr == "session":
                    yield node


def test_every_nox_session_has_a_docstring_and_is_thin():
    sessions = list(_nox_sessions())
    assert {s.name for s in sessions} >= {"tests", "lint"}
    for session in sessions:
        assert ast.get_docstring(session), f"session {session.name} has no docstring"
        assert len(session.body) <= 12, f"session {session.name} holds logic; move it"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r"^(python3 -m pip install [^\n]*nox -s tests)\s*$", readme, re.M)
    assert command, "the README must show the test command"
    assert command.group(1) in ci


def test_lint_is_clean():
    done = subprocess.run(
        [sys.executable, "-m", "hw5kit.lint"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
