"""The HW5 autograder: ``python -m hw5kit.grading SUBMISSION_DIR`` (``nox -s grade``).

It scores a submission against the rubric (``rubric.yaml``), runs the submission's scripts in a
sandbox against the fake gcloud (``sandbox.py``, ``cloud.py``, ``runs.py``), reads its Cloud
Build file, deliverables and short answers without trusting them (``submission.py``,
``buildconfig.py``, ``answers.py``), optionally checks the deployment live (``live.py``), and
writes Gradescope's results.json with a readable summary (``report.py``).
"""

from .grader import Context, Grading, Options, grade
from .sandbox import Limits, Sandbox, SandboxUnavailable

__all__ = ["Context", "Grading", "Limits", "Options", "Sandbox", "SandboxUnavailable", "grade"]
