"""The short answers (``SHORT_ANSWER_TEMPLATE.md``): found, split into questions, and checked
for what a program can check honestly: each question is present, not empty, not left as the
template's text, and question 9 cites its sources. Whether an answer is right is for a person:
the text goes into the report for them, and no points are guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .submission import FileProblem, Snapshot

FILE_NAME = "SHORT_ANSWER_TEMPLATE.md"
HEADING_RE = re.compile(
    r"^\s{0,3}(#{1,6})\s*(?:\*\*)?\s*(?:question|q)\s*(\d+)\b[^\n]*$", re.I | re.M
)
NAME_RE = re.compile(r"\*\*\s*Name\s*:?\s*\*\*\s*:?\s*(.*)$", re.I | re.M)
MATRICULE_RE = re.compile(r"\*\*\s*Matricule[^*\n]*\*\*\s*:?\s*(.*)$", re.I | re.M)
# What the course's template holds where a student's text should go.
TEMPLATE_NAME = "Your_Name"
TEMPLATE_MATRICULE = "Your Student ID"
PLACEHOLDERS = (
    "your answer here",
    "your answer",
    "answer here",
    "todo",
    "tbd",
    "fill me in",
    "votre réponse ici",
    "votre réponse",
    "réponse ici",
    "à compléter",
    "a completer",
    "...",
)
URL_RE = re.compile(r"https?://[^\s)>\]]+", re.I)
SOURCES_RE = re.compile(
    r"^\W*(sources?|r[ée]f[ée]rences?|bibliograph\w*|citations?|works cited)\b", re.I | re.M
)
DOI_RE = re.compile(r"\b(doi\.org/|doi:\s*10\.)", re.I)
WORD_RE = re.compile(r"[^\W\d_]{2,}")


@dataclass
class Answer:
    question: int
    text: str | None  # None: no section for this question
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class ShortAnswers:
    path: str | None  # where the answers were found
    problem: str | None = None  # why they could not be read
    name: str | None = None
    matricule: str | None = None
    sections: dict[int, str] = field(default_factory=dict)
    other_reports: list[str] = field(default_factory=list)  # e.g. a PDF report

    def answer(self, question: int, *, cite_sources: bool = False) -> Answer:
        if self.problem or self.path is None:
            return Answer(question, None, [self.problem or self.missing_message()])
        text = self.sections.get(question)
        if text is None:
            return Answer(
                question,
                None,
                [
                    f"{self.path} has no '## Question {question}' section: keep the template's "
                    "headings and write the answer under its own"
                ],
            )
        answer = Answer(question, text)
        content = clean(text)
        if not WORD_RE.search(content):
            answer.problems.append(f"Question {question} is empty in {self.path}")
        elif content.strip().lower().strip(".:! ") in PLACEHOLDERS:
            answer.problems.append(
                f"Question {question} still holds the template's placeholder "
                f"({content.strip()[:40]!r})"
            )
        elif cite_sources and not cites_sources(text):
            answer.problems.append(
                f"Question {question} cites no source: add the links or references you used "
                "(the question asks for them)"
            )
        return answer

    def missing_message(self) -> str:
        extra = ""
        if self.other_reports:
            extra = (
                f"; found {', '.join(self.other_reports)}: a report that is not Markdown is "
                "graded by hand only"
            )
        return f"{FILE_NAME} not found in the submission{extra}"

    def header_problems(self) -> list[str]:
        out = []
        if not self.name or self.name == clean(TEMPLATE_NAME):
            out.append("the Name line still holds the template's text")
        if not self.matricule or self.matricule == clean(TEMPLATE_MATRICULE):
            out.append("the Matricule line still holds the template's text")
        return out


def clean(text: str) -> str:
    """The words of an answer: no HTML comments, Markdown markers, or escapes."""
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"[*_`#>\\|\-]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def cites_sources(text: str) -> bool:
    return bool(URL_RE.search(text) or DOI_RE.search(text) or SOURCES_RE.search(text))


def parse(text: str, path: str) -> ShortAnswers:
    found = ShortAnswers(path)
    name = NAME_RE.search(text)
    matricule = MATRICULE_RE.search(text)
    found.name = clean(name.group(1)) if name else None
    found.matricule = clean(matricule.group(1)) if matricule else None
    headings = list(HEADING_RE.finditer(text))
    for index, match in enumerate(headings):
        end = headings[index + 1].start() if index + 1 < len(headings) else len(text)
        number = int(match.group(2))
        body = text[match.end() : end].strip("\n")
        if number in found.sections:  # a repeated heading: keep both parts
            found.sections[number] += "\n" + body
        else:
            found.sections[number] = body
    return found


def find(snapshot: Snapshot) -> ShortAnswers:
    rel = snapshot.locate(FILE_NAME, ("", "deployment", "docs"))
    others = [
        f
        for f in snapshot.files()
        if f.lower().endswith((".pdf", ".docx", ".odt")) and "hw5" in f.lower()
    ] or [f for f in snapshot.files() if f.lower().endswith(".pdf")]
    if rel is None:
        for candidate in snapshot.files():
            if candidate.lower().endswith(".md") and candidate.lower() != "readme.md":
                try:
                    text = snapshot.read_text(candidate)
                except FileProblem:
                    continue
                if len(HEADING_RE.findall(text)) >= 3:
                    rel = candidate
                    break
    if rel is None:
        return ShortAnswers(None, other_reports=others)
    try:
        text = snapshot.read_text(rel)
    except FileProblem as exc:
        return ShortAnswers(rel, str(exc), other_reports=others)
    found = parse(text, rel)
    found.other_reports = others
    return found
