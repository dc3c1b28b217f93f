"""What the grading of one submission knows, shared by the grader (``grader.py``, which fills
it), the checks (``checks/``) and the live checks (``live.py``): the options, the rubric's
assignment, the submission's snapshot, what was read from it and what its scripts did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import naming
from ..pipeline import deliverables as dl
from . import answers as answers_mod
from . import buildconfig, builds
from .limits import Limits
from .rubric import Rubric
from .runs import Runs
from .sandbox import Sandbox
from .submission import Snapshot

SLOTS = {
    "backend_v1": ("v1", "back_end"),
    "frontend_v1": ("v1", "front_end"),
    "backend_v2": ("v2", "back_end"),
    "frontend_v2": ("v2", "front_end"),
}


@dataclass
class Options:
    live: bool = False
    student_id: str | None = None
    sandbox: str = "auto"
    limits: Limits = field(default_factory=Limits)
    url_map: dict[str, str] = field(default_factory=dict)
    photo: str = "chelsea.png"


@dataclass
class Context:
    rubric: Rubric
    options: Options
    snapshot: Snapshot
    sandbox: Sandbox
    student_id: str | None = None
    id_source: str = ""
    notes: list[str] = field(default_factory=list)
    config_rel: str | None = None
    config_problem: str | None = None
    config_raw: Any = None
    analysis: buildconfig.Analysis | None = None
    deliverables_rel: str | None = None
    deliverables: Any = None
    deliverables_problem: str | None = None
    deliverables_problems: dict[str, dl.Problem] = field(default_factory=dict)
    runs: Runs = field(default_factory=Runs)
    workspace_roots: list[Path] = field(default_factory=list)
    answers: answers_mod.ShortAnswers | None = None
    live: Any = None  # live.LiveResults when --live
    layout_notes: list[str] = field(default_factory=list)
    config_rels: list[str] = field(default_factory=list)  # every Cloud Build file found
    submit_rels: list[str] = field(default_factory=list)  # every submit script found
    units: list[builds.BuildUnit] = field(default_factory=list)  # the builds, graded each
    build_records: dict[str, dict] = field(default_factory=dict)  # the fake's, by build ID
    deliverables_notes: list[str] = field(default_factory=list)
    gcloud_peak_kib: int = 0  # the largest resident size one fake gcloud call reached

    # -- what the assignment expects -- #
    @property
    def assignment(self) -> dict:
        return self.rubric.assignment

    @property
    def project(self) -> str | None:
        if not self.student_id:
            return None
        return f"{self.assignment['project_prefix']}{self.student_id}"

    @property
    def registry(self) -> str | None:
        if not self.project:
            return None
        a = self.assignment
        return naming.repository_uri(a["region"], self.project, a["repository"])

    def deliverable_problem(self, app: str, field: str) -> str | None:
        """Why deliverables.yaml has no usable ``field`` for ``app`` (None: it has one)."""
        if self.deliverables_problem:
            return self.deliverables_problem
        version, part = SLOTS[app]
        where = f"services.{version}.{part}.{field}"
        found = [
            p
            for p in self.deliverables_problems.values()
            if p.where == where or where.startswith(p.where + ".") or p.where == "(top level)"
        ]
        if found:
            return str(found[0])
        value = dl.entry(self.deliverables, version, part).get(field)
        if not isinstance(value, str):
            return f"{where}: missing; {dl.RESTORE}"
        return None

    def build_id(self, app: str) -> str | None:
        """The build ID deliverables.yaml records for ``app`` when it is a valid one."""
        if self.deliverable_problem(app, "build_id"):
            return None
        version, part = SLOTS[app]
        return dl.entry(self.deliverables, version, part)["build_id"]

    def service_url(self, app: str) -> str | None:
        if self.deliverable_problem(app, "service_url"):
            return None
        version, part = SLOTS[app]
        return dl.entry(self.deliverables, version, part)["service_url"]
