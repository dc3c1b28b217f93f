"""The target interface: everything that depends on where the pipeline runs.

A target (``local``, ``container``, ``gcp``) builds, deploys, stops and shows its services, and
answers what ``verify`` cannot know by itself: the API gateway's key, the command to run again,
what to do when a service fails or refuses a request, and where each deployed service came from
(``check_service``: its provenance checks, written into verify's ``Report``). ``Verifier``
keeps what is the same everywhere (the deliverables' schema, the HTTP checks) and asks the
target for the rest, so adding a target touches no other module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ... import naming
from .. import deliverables, rerun
from ..deployment import Service
from ..project import Project
from ..report import Report

if TYPE_CHECKING:
    from ...photos import Photo


class Target(ABC):
    name: ClassVar[str]
    # Its backends may fetch from 127.0.0.1 (HW5_ALLOW_LOOPBACK, set on the local target's
    # backends only): verify then also sends them the photo by URL, not only as an upload.
    fetches_loopback: ClassVar[bool] = False
    # Its provenance checks ask gcloud: `verify --skip-gcloud` leaves them out.
    uses_gcloud: ClassVar[bool] = False
    # Keyword options of deploy beyond the service names and verbose.
    deploy_options: ClassVar[frozenset[str]] = frozenset()

    project: Project

    # -- the pipeline -- #
    @abstractmethod
    def build(self, names: list[str] | None = None, *, verbose: bool = False) -> int: ...

    @abstractmethod
    def deploy(self, names: list[str] | None = None, *, verbose: bool = False) -> int: ...

    @abstractmethod
    def stop(self) -> int: ...

    @abstractmethod
    def status(self) -> int: ...

    @abstractmethod
    def gateway_key(self) -> str | None:
        """The key v3's API gateway wants (None when the config asks for none)."""

    # -- what verify asks -- #
    @abstractmethod
    def check_service(
        self, service: Service, entry: Mapping[str, Any], data: Any, report: Report, photo: Photo
    ) -> None:
        """Where the deployed ``service`` came from: its build, what runs it, its wiring. Writes
        its checks into ``report``; ``entry`` is its deliverables entry, ``data`` the whole
        file, ``photo`` the one verify classifies."""

    def command(self, session: str, *args: str) -> str:
        """The nox command that runs ``session`` again on this target."""
        return rerun.command(self.name, session, *args)

    def redeploy_fix(self, service: Service) -> str:
        """What to do when a service answers wrongly or not at all."""
        log = self.project.logs_dir / f"{service.name}.log"
        return f"read {log}, then `{self.command('deploy')}`"

    def refusal_fix(self, service: Service) -> str | None:
        """What to do when a service refuses a request (403), when that is this target's doing;
        None otherwise."""
        return None

    # -- checks every target makes the same way -- #
    def backend_url(self, backend: Service, data: Any) -> str:
        """The backend's recorded URL ("" when it is not deployed)."""
        return str(deliverables.entry(data, *backend.deliverable_key).get("service_url") or "")

    def check_wiring(self, report: Report, service: Service, env: Mapping, data: Any) -> None:
        """A frontend's URL variable (as its process, container or Cloud Run service has it)
        against its backend's recorded URL (v3: the API gateway's)."""
        where = report.where(service)
        if service.version == "v3":
            expected = deliverables.gateway_url(data) or ""
            name = "the API gateway"
        else:
            backend = self.project.config.service(service.backend or "")
            expected, name = self.backend_url(backend, data), backend.name
        actual = env.get(service.url_var)
        var = service.url_var
        if not expected:
            report.add(
                where,
                var,
                False,
                f"{actual!r}, but its backend {name} is not deployed",
                f"deploy {name} first, then this frontend",
            )
            return
        ok = (actual or "").rstrip("/") == expected.rstrip("/")
        detail = f"{actual!r}" + ("" if ok else f", but {name} is at {expected!r}")
        if not ok and actual and naming.parse_run_url(expected):
            # Cloud Run's two URL forms of one service (hw5kit.naming)
            same = naming.compare_run_urls(actual, expected)
            ok = same.same is not False
            detail = (
                f"{actual!r}: {same.note}"
                if ok
                else f"{actual!r}, but {name} is at {expected!r} ({same.describe()})"
            )
        report.add(
            where,
            var,
            ok,
            detail,
            f"redeploy the frontend with its backend's URL ({self.command('deploy')})",
        )
