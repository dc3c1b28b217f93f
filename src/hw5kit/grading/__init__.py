"""The HW5 autograder: ``python -m hw5kit.grading SUBMISSION_DIR`` (``nox -s grade``).

It scores a submission against the rubric (``rubric.yaml``), runs the submission's scripts in a
sandbox against the fake gcloud (``sandbox.py``, ``cloud.py``, ``runs.py``), reads its Cloud
Build file, deliverables and short answers without trusting them (``submission.py``,
``buildconfig.py``, ``answers.py``), in the course's layout or an older one (``layout.py``),
grades each build it submits by what it does (``builds.py``), optionally checks the deployment
live (``live.py``), and writes Gradescope's results.json with a readable summary listing each
deduction with its evidence (``evidence.py``, ``report.py``). Names follow ``hw5kit.naming``,
shared with the pipeline and the fake gcloud.
"""

from __future__ import annotations

from .. import lazy

_EXPORTS = {
    "Context": "context",
    "Grading": "grader",
    "Options": "context",
    "grade": "grader",
    "Limits": "limits",
    "Sandbox": "sandbox",
    "SandboxUnavailable": "limits",
}
__all__ = sorted(_EXPORTS)

# imported on first use: `python -m hw5kit.grading.rubric` runs its module once
__getattr__ = lazy.exports(__name__, _EXPORTS)
