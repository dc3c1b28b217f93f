"""The checks the rubric names, one module per question (``registry.py`` holds the registry,
its decorators and the evaluation of a whole rubric):

* ``build_items``: Q1.1-Q1.7 and Q2.1, the Cloud Build file, on each build it asks for;
* ``submit``: Q1.8-Q1.10, the submit script and the build it submits;
* ``deliverables``: Q1.11, Q3.8-Q3.9, Q6.8-Q6.9, what deliverables.yaml records;
* ``deploys``: Q3.1-Q3.7, Q6.1-Q6.7, the deploy scripts;
* ``short_answers``: the answers graded by hand.

Importing this package registers every check (``CHECKS``).
"""

from __future__ import annotations

from ..outcome import Outcome, Result
from . import build_items, deliverables, deploys, short_answers, submit  # noqa: F401 - register
from .registry import CHECKS, evaluate

__all__ = ["CHECKS", "Outcome", "Result", "evaluate"]
