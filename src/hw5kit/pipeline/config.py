"""The deployment config, ``deployment.yaml``: one file that every target reads.

Loaded and validated here; a problem raises ``ConfigError`` whose message names the key, shows
the value found and says what is expected, e.g.::

    deployment.yaml: services.backend_v1.resources.memory: expected a size such as 512Mi or
    2Gi, got '2GB'

Everything else in the pipeline (templates, targets, verify) works from the ``Config`` object,
never from the raw YAML.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import naming
from ..gcp_regions import API_GATEWAY_LOCATIONS, nearest_gateway_location
from ..serving import capacity

CONFIG_NAME = "deployment.yaml"
TARGETS = ("local", "container", "gcp")
KINDS = ("backend", "frontend")
VERSIONS = ("v1", "v2", "v3")
# the course's versions: deliverables.yaml keeps exactly their layout; v3 is an optional extra
COURSE_VERSIONS = ("v1", "v2")
# deliverables.yaml names the two halves of a version this way (the course's keys)
DELIVERABLE_PART = {"backend": "back_end", "frontend": "front_end"}

# Google's naming rules (hw5kit.naming, shared with the grader and the fake gcloud), checked
# here so a typo fails before anything reaches the cloud.
PROJECT_ID_RE = naming.PROJECT_ID_RE
STUDENT_ID_RE = naming.STUDENT_ID_RE
REGION_RE = naming.REGION_RE
REPOSITORY_RE = naming.REPOSITORY_RE
IMAGE_NAME_RE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*$")  # one path component
SERVICE_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,48}$")
CLOUD_RUN_NAME_RE = naming.CLOUD_RUN_NAME_RE
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MEMORY_RE = re.compile(r"^[1-9][0-9]*(Mi|Gi)$")
# API Gateway's IDs (API, config, gateway): lowercase letters, digits, hyphens, no underscore
GATEWAY_ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
CPU_RE = re.compile(r"^([1248]|0\.[0-9]*[1-9]|[1-9][0-9]{1,2}m)$")
# Cloud Run sets these itself and refuses them in --set-env-vars.
RESERVED_ENV = {"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"}

# The service account of the course's autograder, given read access to the repository.
# The default is the course's test account; the production one is COURSE_AUTOGRADER.
DEFAULT_AUTOGRADER = "ift6758-ta-hw5-gcp-autograder@hw5-12345.iam.gserviceaccount.com"
COURSE_AUTOGRADER = "ta-autograder@ift6758-hw5-gcp-24.iam.gserviceaccount.com"
# A user-managed service account: ACCOUNT_ID@PROJECT_ID.iam.gserviceaccount.com (IAM's rules:
# the account ID is 6 to 30 lowercase letters, digits and hyphens, starting with a letter).
SERVICE_ACCOUNT_RE = re.compile(
    r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$"
)

DEFAULT_RESOURCES = {"memory": "2Gi", "cpu": "2", "min_instances": 1, "max_instances": 1}
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
        import hashlib

        return f"{self.api_id}-{hashlib.sha256(spec_text.encode()).hexdigest()[:10]}"[:63]


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
        return f"hw5-{self.student_id}"

    @property
    def registry(self) -> str:
        return f"{self.region}-docker.pkg.dev"

    @property
    def repo_uri(self) -> str:
        return naming.repository_uri(self.region, self.project_id, self.repository)

    @property
    def base_image_uri(self) -> str:
        return f"{self.repo_uri}/{self.base_image}"

    def image_uri(self, service: Service, tag: str | None = None) -> str:
        uri = f"{self.repo_uri}/{service.image}"
        return f"{uri}:{tag}" if tag else uri

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
        from dataclasses import replace

        return replace(self, target=target)


# --- loading -------------------------------------------------------------------------------

TOP_KEYS = {
    "student_id": "your student ID (matricule), quoted: the project is hw5-<student_id>",
    "region": "the Google Cloud region, e.g. us-central1",
    "repository": "the Artifact Registry Docker repository, e.g. hw5-images",
    "serving_port": "the port the containers listen on, e.g. 8000",
    "target": f"where build/deploy/verify run: {' | '.join(TARGETS)}",
    "base_image": "the image name of the shared base image, e.g. base_image",
    "services": "the services, keyed by app name (backend_v1, frontend_v1, ...)",
    "autograder_service_account": "the autograder's service account e-mail, given read "
    "access to the repository by `nox -s setup`",
    "gateway": "v3's API gateway: api_id, gateway_id, location, deadline, api_key",
}
GATEWAY_KEYS = {
    "api_id": "the API Gateway API ID: lowercase letters, digits and hyphens, e.g. hw5-api",
    "gateway_id": "the gateway ID: lowercase letters, digits and hyphens, e.g. hw5-gateway",
    "location": "the gateway's region (default: region), one API Gateway serves: "
    + ", ".join(API_GATEWAY_LOCATIONS),
    "deadline": "seconds a backend may take to answer, a number above 0 and at most 3600",
    "api_key": "true to require an API key (?key= or the x-api-key header), else false",
}
SERVICE_KEYS = {
    "kind": "backend | frontend",
    "version": " | ".join(VERSIONS),
    "cloud_run_name": "the Cloud Run service name, e.g. backendv1",
    "backend": "frontends: the backend service they call, e.g. backend_v1 (v3: backend_v3, "
    "reached through the API gateway)",
    "resources": "memory, cpu, min_instances, max_instances, concurrency",
    "env": "environment variables set on the service (strings)",
}
RESOURCE_KEYS = {
    "memory": "a size such as 512Mi or 2Gi",
    "cpu": "1, 2, 4, 8, a fraction below 1 such as 0.5, or millicpu such as 500m",
    "min_instances": "an integer >= 0",
    "max_instances": "an integer >= 1",
    "concurrency": "requests per instance at once, 1 to 1000 (default: backends their "
    "in-flight limit, frontends 80)",
}


def _where(path: Path | None) -> str:
    return str(path) if path else CONFIG_NAME


def _fail(path: Path | None, key: str, message: str) -> ConfigError:
    return ConfigError(f"{_where(path)}: {key}: {message}")


def _check_keys(path, prefix: str, data: Mapping, allowed: Mapping[str, str]) -> None:
    for key in data:
        if key not in allowed:
            listing = "; ".join(f"{k} ({v})" for k, v in allowed.items())
            raise _fail(path, f"{prefix}{key}", f"unknown key; expected one of: {listing}")


def _string(path, key: str, value: Any, pattern: re.Pattern | None, expected: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(path, key, f"expected {expected}, got {value!r}")
    text = str(value).strip()
    if pattern is not None and not pattern.match(text):
        raise _fail(path, key, f"expected {expected}, got {text!r}")
    return text


def _integer(path, key: str, value: Any, low: int, high: int, expected: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        else:
            raise _fail(path, key, f"expected {expected}, got {value!r}")
    if not low <= value <= high:
        raise _fail(path, key, f"expected {expected}, got {value}")
    return value


def _resources(path, prefix: str, data: Any) -> Resources:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise _fail(path, prefix.rstrip("."), f"expected a mapping ({', '.join(RESOURCE_KEYS)})")
    _check_keys(path, prefix, data, RESOURCE_KEYS)
    merged = {**DEFAULT_RESOURCES, **data}
    memory = _string(path, prefix + "memory", merged["memory"], MEMORY_RE, RESOURCE_KEYS["memory"])
    cpu = _string(path, prefix + "cpu", merged["cpu"], CPU_RE, RESOURCE_KEYS["cpu"])
    low = _integer(path, prefix + "min_instances", merged["min_instances"], 0, 1000, "0 to 1000")
    high = _integer(path, prefix + "max_instances", merged["max_instances"], 1, 1000, "1 to 1000")
    if low > high:
        raise _fail(
            path,
            prefix + "min_instances",
            f"min_instances ({low}) is larger than max_instances ({high})",
        )
    concurrency = None
    if data.get("concurrency") is not None:
        concurrency = _integer(
            path, prefix + "concurrency", data["concurrency"], 1, 1000, "1 to 1000"
        )
    return Resources(
        memory=memory, cpu=cpu, min_instances=low, max_instances=high, concurrency=concurrency
    )


def _env(path, prefix: str, data: Any, kind: str) -> tuple[tuple[str, str], ...]:
    if data is None:
        return ()
    if not isinstance(data, Mapping):
        raise _fail(path, prefix.rstrip("."), "expected a mapping NAME: value")
    out = []
    for name, value in data.items():
        key = f"{prefix}{name}"
        if not isinstance(name, str) or not ENV_NAME_RE.match(name):
            raise _fail(path, key, "not a valid environment variable name (letters, digits, _)")
        if name in RESERVED_ENV:
            raise _fail(path, key, f"{name} is set by Cloud Run itself and cannot be configured")
        if kind == "frontend" and name in ("SERVING_URL", "API_GATEWAY"):
            raise _fail(path, key, f"{name} is wired by deploy from the backend's URL")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _fail(path, key, f"expected a string value, got {value!r}")
        out.append((name, str(value)))
    return tuple(sorted(out))


def _service(path, name: Any, data: Any) -> list[Service]:
    prefix = f"services.{name}."
    if not isinstance(name, str) or not SERVICE_KEY_RE.match(name) or "__" in name:
        raise _fail(
            path,
            f"services.{name}",
            "a service name is lowercase letters, digits and single underscores, starting "
            "with a letter (it names apps/<name>, Dockerfile.<name> and the image)",
        )
    if not isinstance(data, Mapping):
        raise _fail(path, f"services.{name}", "expected a mapping (kind, version, ...)")
    _check_keys(path, prefix, data, SERVICE_KEYS)
    for required in ("kind", "version"):
        if required not in data:
            raise _fail(path, prefix + required, f"missing; expected {SERVICE_KEYS[required]}")
    kind = _string(path, prefix + "kind", data["kind"], None, SERVICE_KEYS["kind"])
    if kind not in KINDS:
        raise _fail(path, prefix + "kind", f"expected {SERVICE_KEYS['kind']}, got {kind!r}")
    version = _string(path, prefix + "version", data["version"], None, SERVICE_KEYS["version"])
    if version not in VERSIONS:
        raise _fail(path, prefix + "version", f"expected one of {SERVICE_KEYS['version']}")
    default_run_name = name.replace("_", "")
    run_name = _string(
        path,
        prefix + "cloud_run_name",
        data.get("cloud_run_name", default_run_name),
        CLOUD_RUN_NAME_RE,
        f"{naming.CLOUD_RUN_NAME_RULE}, e.g. backendv1",
    )
    backend = data.get("backend")
    if kind == "frontend":
        if backend is None:
            raise _fail(path, prefix + "backend", "missing; a frontend names its backend service")
        backend = _string(path, prefix + "backend", backend, SERVICE_KEY_RE, "a service name")
    elif backend is not None:
        raise _fail(path, prefix + "backend", "only frontends name a backend")
    service = Service(
        name=name,
        kind=kind,
        version=version,
        cloud_run_name=run_name,
        resources=_resources(path, prefix + "resources.", data.get("resources")),
        env=_env(path, prefix + "env.", data.get("env"), kind),
        backend=backend,
    )
    if version == "v3" and kind == "backend":
        return _expand_v3(path, service)
    return [service]


def _expand_v3(path, group: Service) -> list[Service]:
    """``backend_v3`` with MODELS a,b,c -> one service per model (``backend_v3_a``, ...), each
    its own Cloud Run service (``<cloud_run_name>-a``) with MODEL_NAME=a and MODELS=a,b,c."""
    key = f"services.{group.name}.env"
    env = group.env_dict()
    if "MODEL_NAME" in env:
        raise _fail(
            path,
            f"{key}.MODEL_NAME",
            "a v3 backend lists its models in MODELS (one Cloud Run service each); "
            "MODEL_NAME is set per model",
        )
    models = group.models()
    if not models:
        raise _fail(path, f"{key}.MODELS", "missing; expected the models, comma-separated")
    if len(set(models)) != len(models):
        raise _fail(path, f"{key}.MODELS", f"a model is listed twice: {env['MODELS']!r}")
    out = []
    for model in models:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", model):
            raise _fail(path, f"{key}.MODELS", f"{model!r} is not a model name")
        name = f"{group.name}_{model}"
        run_name = f"{group.cloud_run_name}-{model.replace('_', '-')}"
        if not SERVICE_KEY_RE.match(name) or not CLOUD_RUN_NAME_RE.match(run_name):
            raise _fail(
                path,
                f"services.{group.name}",
                f"the service of model {model!r} would be named {run_name!r}: shorten "
                f"cloud_run_name (Cloud Run names have at most {naming.CLOUD_RUN_NAME_MAX} "
                "characters)",
            )
        model_env = {**env, "MODEL_NAME": model, "MODELS": ",".join(models)}
        out.append(
            Service(
                name=name,
                kind="backend",
                version="v3",
                cloud_run_name=run_name,
                resources=group.resources,
                env=tuple(sorted(model_env.items())),
                group=group.name,
                model=model,
            )
        )
    return out


def _gateway_location(path, location: str, region: str) -> None:
    """API Gateway serves fewer regions than Cloud Run (hw5kit.gcp_regions): a location it does
    not serve passes every local test and fails on Google, so it stops here."""
    if (location or region) in API_GATEWAY_LOCATIONS:
        return
    served = ", ".join(API_GATEWAY_LOCATIONS)
    if location:
        got = f"API Gateway does not serve {location!r}"
    else:
        got = (
            f"API Gateway does not serve {region!r} (the config's region, which the gateway "
            "uses when gateway.location is not set)"
        )
    raise _fail(
        path,
        "gateway.location",
        f"{got}; it serves {served} (https://cloud.google.com/api-gateway/docs/"
        f"deployment-model). Set gateway.location to one of them, e.g. "
        f"{nearest_gateway_location(location or region)}; the Cloud Run services stay in "
        f"{region}.",
    )


def _gateway(path, data: Any, region: str = "us-central1", *, used: bool = True) -> Gateway:
    """The ``gateway:`` block; ``used``: the config has v3 services (else only an explicit
    location is checked against API Gateway's regions)."""
    if data is None:
        if used:
            _gateway_location(path, "", region)
        return Gateway()
    if not isinstance(data, Mapping):
        raise _fail(path, "gateway", f"expected a mapping ({', '.join(GATEWAY_KEYS)})")
    _check_keys(path, "gateway.", data, GATEWAY_KEYS)
    ids = {}
    for key, default in (("api_id", Gateway.api_id), ("gateway_id", Gateway.gateway_id)):
        ids[key] = _string(
            path, f"gateway.{key}", data.get(key, default), GATEWAY_ID_RE, GATEWAY_KEYS[key]
        )
    location = ""
    if data.get("location") not in (None, ""):
        location = _string(
            path, "gateway.location", data["location"], REGION_RE, GATEWAY_KEYS["location"]
        )
    deadline = data.get("deadline", Gateway.deadline)
    if isinstance(deadline, bool) or not isinstance(deadline, int | float):
        raise _fail(
            path, "gateway.deadline", f"expected {GATEWAY_KEYS['deadline']}, got {deadline!r}"
        )
    if not 0 < deadline <= 3600:
        raise _fail(
            path, "gateway.deadline", f"expected {GATEWAY_KEYS['deadline']}, got {deadline}"
        )
    api_key = data.get("api_key", False)
    if not isinstance(api_key, bool):
        raise _fail(path, "gateway.api_key", f"expected true or false, got {api_key!r}")
    if used or location:
        _gateway_location(path, location, region)
    return Gateway(
        api_id=ids["api_id"],
        gateway_id=ids["gateway_id"],
        location=location,
        deadline=float(deadline),
        api_key=api_key,
    )


def parse(data: Any, path: Path | None = None) -> Config:
    """Validate the parsed YAML and build the ``Config``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_where(path)}: expected a mapping of keys ({', '.join(TOP_KEYS)})")
    _check_keys(path, "", data, TOP_KEYS)
    for required in ("student_id", "services"):
        if required not in data or data[required] in (None, ""):
            raise _fail(path, required, f"missing; expected {TOP_KEYS[required]}")
    raw_id = data["student_id"]
    if not isinstance(raw_id, str):
        raise _fail(
            path,
            "student_id",
            f'write it as a quoted string, e.g. student_id: "{raw_id}" (an unquoted number '
            "loses leading zeros)",
        )
    student_id = _string(
        path, "student_id", naming.normalize_student_id(raw_id), None, naming.STUDENT_ID_RULE
    )
    problem = naming.student_id_problem(student_id)
    if problem:
        raise _fail(path, "student_id", problem)
    region = _string(
        path, "region", data.get("region", "us-central1"), REGION_RE, "a region like us-central1"
    )
    repository = _string(
        path,
        "repository",
        data.get("repository", "hw5-images"),
        REPOSITORY_RE,
        "lowercase letters, digits and hyphens, starting with a letter (e.g. hw5-images)",
    )
    port = _integer(path, "serving_port", data.get("serving_port", 8000), 1, 65535, "1 to 65535")
    target = _string(path, "target", data.get("target", "local"), None, TOP_KEYS["target"])
    if target not in TARGETS:
        raise _fail(path, "target", f"expected one of {', '.join(TARGETS)}, got {target!r}")
    base_image = _string(
        path,
        "base_image",
        data.get("base_image", "base_image"),
        IMAGE_NAME_RE,
        "an image name: lowercase letters, digits, '.', '_' or '-'",
    )
    autograder = _service_account(path, data.get("autograder_service_account", DEFAULT_AUTOGRADER))
    raw_services = data["services"]
    if not isinstance(raw_services, Mapping) or not raw_services:
        raise _fail(path, "services", "expected a mapping of services (backend_v1: {...}, ...)")
    services = tuple(s for name, body in raw_services.items() for s in _service(path, name, body))
    _check_services(path, services, base_image)
    gateway = None
    if any(s.version == "v3" for s in services):
        gateway = _gateway(path, data.get("gateway"), region)
    elif data.get("gateway") is not None:
        _gateway(
            path, data["gateway"], region, used=False
        )  # checked all the same: a typo is reported now
    return Config(
        student_id=student_id,
        region=region,
        repository=repository,
        serving_port=port,
        target=target,
        base_image=base_image,
        services=services,
        path=path,
        autograder_service_account=autograder,
        gateway=gateway,
    )


def _service_account(path: Path | None, value: Any) -> str:
    key = "autograder_service_account"
    accounts = (
        f"the course's test account {DEFAULT_AUTOGRADER} (the default) or its production "
        f"account {COURSE_AUTOGRADER}"
    )
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, key, f"expected a service account e-mail such as {accounts}")
    text = value.strip()
    if text.lower().startswith("serviceaccount:"):
        raise _fail(
            path,
            key,
            f"write the e-mail alone, without 'serviceAccount:' (setup adds it), got {text!r}",
        )
    if not SERVICE_ACCOUNT_RE.match(text):
        raise _fail(
            path,
            key,
            "expected a service account e-mail ACCOUNT@PROJECT.iam.gserviceaccount.com "
            f"(lowercase), such as {accounts}; got {text!r}",
        )
    return text


def _check_services(path, services: tuple[Service, ...], base_image: str) -> None:
    by_name = {s.name: s for s in services}
    slots: dict[tuple[str, str], str] = {}
    run_names: dict[str, str] = {}
    for s in services:
        if s.name == base_image:
            raise _fail(path, f"services.{s.name}", f"clashes with base_image {base_image!r}")
        if s.deliverable_key in slots:
            other = slots[s.deliverable_key]
            version, part = s.deliverable_key[:2]
            raise _fail(
                path,
                f"services.{s.name}",
                f"{other} is already the {part} of {version}; each version has one backend "
                "and one frontend",
            )
        slots[s.deliverable_key] = s.name
        if s.cloud_run_name in run_names:
            raise _fail(
                path,
                f"services.{s.name}.cloud_run_name",
                f"{s.cloud_run_name!r} is also used by {run_names[s.cloud_run_name]}",
            )
        run_names[s.cloud_run_name] = s.name
        if s.kind == "frontend":
            target = by_name.get(s.backend or "")
            if target is None:  # a v3 group: its first model stands for it
                target = next((b for b in services if b.group and b.group == s.backend), None)
            if s.version == "v3" and (target is None or target.version != "v3"):
                groups = sorted({b.group for b in services if b.group})
                raise _fail(
                    path,
                    f"services.{s.name}.backend",
                    f"a v3 frontend calls the v3 backends through the API gateway: name a "
                    f"v3 backend entry ({', '.join(groups) or 'none is configured'}), got "
                    f"{s.backend!r}",
                )
            if target is None or target.kind != "backend":
                backends = ", ".join(
                    sorted({b.group or b.name for b in services if b.kind == "backend"})
                )
                raise _fail(
                    path,
                    f"services.{s.name}.backend",
                    f"{s.backend!r} is not a backend service; backends: {backends}",
                )
        if s.kind == "backend" and not s.models():
            raise _fail(
                path,
                f"services.{s.name}.env",
                "a backend sets MODEL_NAME (v1) or MODELS (v2 and v3, comma-separated)",
            )


def load(path: Path) -> Config:
    """Read and validate ``path`` (usually ``deployment.yaml`` at the repository root)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: not found; the deployment config lives at the repository root "
            f"({CONFIG_NAME}); restore it with `git checkout {CONFIG_NAME}`"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where}: not valid YAML ({problem})") from None
    return parse(data, path)
