"""What ``verify`` found: one ``Check`` per fact (where, what, passed or not, what was seen, and
what to do when it failed) and notes. ``Verifier`` writes its schema and HTTP checks into a
``Report``; each target writes the checks only it can make (where the service came from) into
the same one (``Target.check_service``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .deployment import Service


@dataclass
class Check:
    where: str  # e.g. "services.v1.back_end (backend_v1)"
    what: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        text = f"  {mark} {self.where}: {self.what}: {self.detail}"
        if not self.ok and self.fix:
            text += f"\n         -> {self.fix}"
        return text


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, where: str, what: str, ok: bool, detail: str, fix: str = "") -> bool:
        """Record one check; returns ``ok`` (so that a failed check can stop what follows)."""
        self.checks.append(Check(where, what, ok, detail, fix))
        return ok

    def note(self, text: str) -> None:
        """A remark shown once after the checks (a check that could not be made, and why)."""
        if text not in self.notes:
            self.notes.append(text)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @staticmethod
    def where(service: Service) -> str:
        """``services.v1.back_end (backend_v1)``: the service's entry in the deliverables."""
        return f"services.{'.'.join(service.deliverable_key)} ({service.name})"
