"""What a check gives back (``Outcome``) and what the grading records per rubric item
(``Result``): the types the checks, the grader and the report share.

An ``Outcome`` is the fraction of the item's points earned (0 or 1 for most items; build IDs
earn a quarter each) and lines that say what was found and, on failure, what to change, with
the evidence of the deduction (``evidence.Evidence``: where, what was found, what was expected).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .evidence import Evidence
from .rubric import Item


@dataclass
class Outcome:
    fraction: float
    lines: list[str] = field(default_factory=list)
    evidence: Evidence | None = None

    @classmethod
    def ok(cls, *lines: str) -> Outcome:
        return cls(1.0, [line for line in lines if line])

    @classmethod
    def fail(cls, *lines: str, evidence: Evidence | None = None) -> Outcome:
        return cls(0.0, [line for line in lines if line], evidence)


@dataclass
class Result:
    item: Item
    score: float | None  # None: graded by hand
    passed: bool
    output: str
    evidence: Evidence | None = None

    @property
    def manual(self) -> bool:
        return self.item.manual

    @property
    def lost(self) -> float:
        return 0.0 if self.score is None else self.item.points - self.score
