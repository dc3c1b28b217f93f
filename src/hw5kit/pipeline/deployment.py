"""What ``deployment.yaml`` describes, as objects: the ``Config`` (project, region, repository,
target), its ``Service`` entries (app folder, image, Dockerfile, Cloud Run service, resources,
environment), their ``Resources`` and v3's ``Gateway``. ``config.py`` makes them from the file
(and checks it); everything else in the pipeline reads them, never the raw YAML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import naming
from ..serving import capacity

CONFIG_NAME = "deployment.yaml"
TARGETS = ("local", "container", "gcp")
KINDS = ("backend", "frontend")
VERSIONS = ("v1", "v2", "v3")
# the course's versions: deliverables.yaml keeps exactly their layout; v3 is an optional extra
COURSE_VERSIONS = ("v1", "v2")
# deliverables.yaml names the two halves of a version this way (the course's keys)
DELIVERABLE_PART = {"backend": "back_end", "frontend": "front_end"}

# The service account of the course's autograder, given read access to the repository.
# The default is the course's test account; the production one is COURSE_AUTOGRADER.
DEFAULT_AUTOGRADER = naming.COURSE_TEST_AUTOGRADER
COURSE_AUTOGRADER = naming.COURSE_AUTOGRADER

FRONTEND_CONCURRENCY = 80  # Cloud Run's default


class ConfigError(ValueError):
    """A bad ``deployment.yaml``: the message says which key, what was found, what is expected."""


@dataclass(frozen=True)
class Resources:
    memory: str = "2Gi"
    cpu: str = "2"
    min_instances: int = 1
    max_instances: int = 1
    concurrency: int | None = None  # None: derived from the service (Service.concurrency)

    @property
    def whole_cpus(self) -> int:
        """The CPUs an instance sees (``0.5`` and ``500m`` run on one)."""
        cpu = self.cpu
        value = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
        return max(1, math.ceil(value))


@dataclass(frozen=True)
class Service:
    """One deployable service: an app folder, an image, a Dockerfile and a Cloud Run service."""

    name: str  # the key in deployment.yaml: apps/<name>, Dockerfile.<name>, image <name>
    kind: str  # backend | frontend
    version: str  # v1 | v2
    cloud_run_name: str
    resources: Resources
    env: tuple[tuple[str, str], ...] = ()
    backend: str | None = None  # frontends: the backend service they call (SERVING_URL)
    # v3: a ``backend_v3`` entry with MODELS expands to one service per model, named
    # ``backend_v3_<model>``: ``group`` is the entry's key (its app folder and Dockerfile),
    # ``model`` the one model the service serves.
    group: str = ""
    model: str | None = None

    @property
    def app(self) -> str:
        """The app folder and Dockerfile name: the group for a v3 per-model backend."""
        return self.group or self.name

    @property
    def image(self) -> str:
        return self.name

    @property
    def dockerfile(self) -> str:
        return f"Dockerfile.{self.app}"

    @property
    def app_dir(self) -> str:
        return f"apps/{self.app}"

    @property
    def deliverable_key(self) -> tuple[str, ...]:
        """Where this service's build ID and URL go: ``services.<version>.<part>``, and for a
        v3 model's backend ``services.v3.backends.<model>``."""
        if self.model is not None:
            return self.version, "backends", self.model
        return self.version, DELIVERABLE_PART[self.kind]

    @property
    def url_var(self) -> str:
        """The variable a frontend finds its backend in: the v3 one calls the API gateway."""
        return "API_GATEWAY" if self.version == "v3" else "SERVING_URL"

    @property
    def deploy_script(self) -> str:
        return f"deploy_{self.name}.sh"

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    @property
    def concurrency(self) -> int:
        """Cloud Run's ``--concurrency``: requests sent to one instance at once.

        ``resources.concurrency`` when set; else a backend takes what it admits without a 503:
        its predictions in progress plus its admission queue (``HW5_MAX_INFLIGHT`` +
        ``HW5_QUEUE_LENGTH`` from its ``env``, else the defaults for its CPUs:
        hw5kit.serving.capacity), so Cloud Run queues or scales out beyond what the instance
        would refuse; a frontend keeps Cloud Run's default, 80 (each open browser tab holds one
        websocket request).
        """
        if self.resources.concurrency is not None:
            return self.resources.concurrency
        if self.kind != "backend":
            return FRONTEND_CONCURRENCY
        return capacity.from_env(self.resources.whole_cpus, self.env_dict()).admitted

    def models(self) -> list[str]:
        """The models a backend serves (``MODEL_NAME`` or ``MODELS``; a v3 model's backend, its
        one model); empty for frontends."""
        if self.model is not None:
            return [self.model]
        env = self.env_dict()
        raw = env.get("MODELS") or env.get("MODEL_NAME") or ""
        return [m.strip() for m in raw.split(",") if m.strip()]


@dataclass(frozen=True)
class Gateway:
    """v3's API gateway (``gateway:`` in deployment.yaml): Google API Gateway on gcp, the
    ``python -m hw5kit.gateway`` process on the local target, both from one OpenAPI document."""

    api_id: str = "hw5-api"
    gateway_id: str = "hw5-gateway"
    location: str = ""  # the gateway's region; empty: the config's region
    deadline: float = 30.0  # seconds, x-google-backend deadline of every route
    api_key: bool = False  # require an API key (query ?key= or header x-api-key)

    def config_id(self, spec_text: str) -> str:
        """An API config ID naming the document's content (configs cannot be changed)."""
        return naming.api_config_id(self.api_id, spec_text)


GATEWAY_SERVICE = "gateway_v3"  # the local process's name (logs, deployment.json)


@dataclass(frozen=True)
class Config:
    student_id: str
    region: str
    repository: str
    serving_port: int
    target: str
    base_image: str
    services: tuple[Service, ...]
    path: Path | None = field(default=None, compare=False)
    autograder_service_account: str = DEFAULT_AUTOGRADER
    gateway: Gateway | None = None

    @property
    def gateway_location(self) -> str:
        return (self.gateway.location if self.gateway else "") or self.region

    @property
    def project_id(self) -> str:
        return naming.project_id(self.student_id)

    @property
    def registry(self) -> str:
        return naming.docker_host(self.region)

    @property
    def repo_uri(self) -> str:
        return naming.repository_uri(self.region, self.project_id, self.repository)

    @property
    def base_image_uri(self) -> str:
        return naming.image_uri(self.region, self.project_id, self.repository, self.base_image)

    def image_uri(self, service: Service, tag: str | None = None) -> str:
        return naming.image_uri(
            self.region, self.project_id, self.repository, service.image, tag or ""
        )

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.services)
        raise ConfigError(f"no service named {name!r} in {self.source}; known: {known}")

    def backends(self) -> list[Service]:
        return [s for s in self.services if s.kind == "backend"]

    def frontends(self) -> list[Service]:
        return [s for s in self.services if s.kind == "frontend"]

    def select(self, names: list[str] | None) -> list[Service]:
        """The named services (all when ``names`` is empty), in config order; a v3 group
        (``backend_v3``) names every model's backend."""
        if not names:
            return list(self.services)
        wanted = set()
        for n in names:
            group = [s.name for s in self.services if s.group and s.group == n]
            wanted.update(group or [self.service(n).name])
        return [s for s in self.services if s.name in wanted]

    def group(self, name: str) -> list[Service]:
        """The services of a deployment.yaml entry: one, or a v3 group's per-model backends."""
        return [s for s in self.services if s.name == name or s.group == name]

    def v3_backends(self) -> list[Service]:
        return [s for s in self.services if s.version == "v3" and s.kind == "backend"]

    def models(self) -> list[str]:
        seen: list[str] = []
        for s in self.backends():
            seen += [m for m in s.models() if m not in seen]
        return seen

    @property
    def source(self) -> str:
        return str(self.path) if self.path else CONFIG_NAME

    def with_target(self, target: str | None) -> Config:
        if not target:
            return self
        if target not in TARGETS:
            raise ConfigError(f"--target: expected one of {', '.join(TARGETS)}, got {target!r}")

        return replace(self, target=target)
