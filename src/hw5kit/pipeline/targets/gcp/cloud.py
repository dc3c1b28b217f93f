"""One run's access to Google Cloud for the gcp target: gcloud called from this thread's own
configuration directory (``gcloud.ConfigDirs``: gcloud does not support concurrent invocations
sharing one) with a bounded wait (``gcloud.Waits``), each success written into
``deliverables.yaml`` at once, and the summary every build and deploy ends with."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from ... import deliverables
from ...deployment import Service
from ...gcloud import ConfigDirs, call, waits
from ...project import PipelineError, Project

GCLOUD_MISSING = (
    "gcloud is not on PATH: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/"
    "install), run `gcloud auth login`, then `nox -s check_prereq`"
)


@dataclass
class Outcome:
    service: str
    ok: bool
    detail: str


class Cloud:
    def __init__(self, project: Project):
        self.project = project
        self.config = project.config
        self.lock = threading.Lock()
        self.waits = waits(project.env)
        self._configs: ConfigDirs | None = None

    @contextlib.contextmanager
    def own_configs(self) -> Iterator[None]:
        """While build or deploy runs: a configuration directory per thread (``env``)."""
        with ConfigDirs(self.project.env) as self._configs:
            try:
                yield
            finally:
                self._configs = None

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment (``base``, else the project's) for a gcloud call from this thread:
        its own configuration directory while build or deploy runs (concurrent gcloud calls
        must not share one)."""
        env = dict(self.project.env if base is None else base)
        return self._configs.env(env) if self._configs is not None else env

    def call(self, argv: list[str], *, timeout: float, prefix: str, check: str):
        return call(
            argv,
            env=self.env(),
            cwd=self.project.root,
            timeout=timeout,
            heartbeat=self.waits.heartbeat,
            log=self.project.log,
            prefix=prefix,
            check_hint=check,
        )

    def preflight(self) -> None:
        if self.project.which("gcloud") is None:
            raise PipelineError(GCLOUD_MISSING)
        self.project.require_rendered()
        deliverables.load_for_update(self.project.deliverables_path)

    def record(self, service: Service, **fields: str | None) -> None:
        with self.lock:
            deliverables.update(
                self.project.deliverables_path, {service.deliverable_key: fields}, target="gcp"
            )

    def script(self, name: str) -> str:
        return str(self.project.root / "deployment" / name)

    def describe_url(self, service: Service) -> str:
        cmd = [
            "gcloud",
            "run",
            "services",
            "describe",
            service.cloud_run_name,
            f"--project={self.config.project_id}",
            f"--region={self.config.region}",
            "--format=value(status.url)",
        ]
        done = self.call(
            cmd,
            timeout=self.waits.look,
            prefix=f"[{service.name}]",
            check="your network and `gcloud auth list`, then run deploy again.",
        )
        url = done.stdout.strip()
        if done.returncode != 0 or not url.startswith("https://"):
            raise PipelineError(
                f"could not read the URL of Cloud Run service {service.cloud_run_name}: "
                f"{(done.stderr or done.stdout).strip() or 'empty answer'}"
            )
        return url

    def summary(self, what: str, outcomes: list[Outcome]) -> int:
        log = self.project.log
        failed = [o for o in outcomes if not o.ok]
        log(f"{what}: {len(outcomes) - len(failed)} of {len(outcomes)} succeeded")
        for o in outcomes:
            log(f"  {'ok ' if o.ok else 'FAILED'} {o.service}: {o.detail}")
        if failed:
            log(
                f"{self.project.deliverables_path.name} kept the previous values for the "
                "failed entries and records every success"
            )
        return 1 if failed else 0


class Part:
    """One concern of the gcp target (build, deploy, IAM, the gateway), working through the
    run's ``Cloud``."""

    def __init__(self, cloud: Cloud):
        self.cloud = cloud
        self.project = cloud.project
        self.config = cloud.config
        self.waits = cloud.waits
