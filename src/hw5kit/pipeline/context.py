"""The one context object the templates are rendered from, built from the ``Config``.

Everything a template prints is computed here (URIs, quoted shell words, the
``--set-env-vars`` argument with gcloud's alternate-delimiter syntax when a value holds a
comma), so the templates hold no logic beyond loops and conditionals.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from ..gateway.spec import PLACEHOLDER_MARK
from .deployment import Config, Gateway, Service

# v2 backends sign their session cookies with this Secret Manager secret on gcp
# (targets/session.py makes it; the deploy script passes it as SECRET_KEY)
SESSION_SECRET = "hw5-session-key"  # noqa: S105 (a secret's name, not its value)


# Cloud Build's docker builder (the course's choice).
DOCKER_BUILDER = "gcr.io/cloud-builders/docker"
# Candidates for gcloud's alternate list delimiter (`gcloud topic escaping`): ^D^K=V D K2=V2
ALT_DELIMITERS = "|@;#"
CLOUDBUILD = "cloudbuild.yaml"
# v3's per-model backends: the same steps, plus the model as a build argument (_MODEL_NAME), so
# that each image bakes only its own model's weights
CLOUDBUILD_V3 = "cloudbuild_v3.yaml"


def env_delimiter(values: list[str]) -> str:
    """A comma, unless a value holds one; then the first alternate delimiter none holds."""
    if not any("," in v for v in values):
        return ","
    for delimiter in ALT_DELIMITERS:
        if not any(delimiter in v for v in values):
            return delimiter
    raise ValueError(f"no list delimiter fits these environment values: {values}")


@dataclass(frozen=True)
class ServiceContext:
    name: str
    kind: str
    version: str
    part: str  # back_end | front_end
    image: str
    image_uri: str  # without tag
    dockerfile: str
    app_dir: str
    cloud_run_name: str
    memory: str
    cpu: str
    min_instances: int
    max_instances: int
    concurrency: int
    env_pairs: tuple[tuple[str, str], ...]
    # --set-env-vars is written  PREFIX [SERVING_URL=... DELIMITER] STATIC : frontends add
    # SERVING_URL at run time; PREFIX is gcloud's alternate-delimiter marker (^|^) when a
    # value holds a comma, else ""
    env_prefix: str
    env_delimiter: str
    env_static: str
    deploy_script: str
    backend: ServiceContext | None = None
    # where deliverables.yaml keeps the build ID: ("v1", "back_end") or ("v3", "backends", model)
    deliverable_path: tuple[str, ...] = ()
    model: str = ""  # v3: the one model a per-model backend serves (its image bakes only it)
    url_var: str = "SERVING_URL"  # frontends: SERVING_URL, or API_GATEWAY for v3
    cloudbuild: str = "cloudbuild.yaml"  # the Cloud Build config its image is built with
    session_secret: str = ""  # v2 backends: the Secret Manager secret passed as SECRET_KEY

    @property
    def is_frontend(self) -> bool:
        return self.kind == "frontend"

    @property
    def via_gateway(self) -> bool:
        return self.is_frontend and self.url_var == "API_GATEWAY"

    @property
    def deliverable_where(self) -> str:
        return ".".join(self.deliverable_path)


@dataclass(frozen=True)
class Route:
    """One model's routes in the gateway document."""

    model: str
    service: str  # backend_v3_<model>
    cloud_run_name: str
    address: str  # the Cloud Run URL, or a placeholder in the committed document


@dataclass(frozen=True)
class GatewayContext:
    api_id: str
    gateway_id: str
    location: str
    deadline: str  # as YAML prints it, e.g. 30.0
    api_key: bool
    routes: tuple[Route, ...]
    placeholders: bool  # True in the committed document (addresses not known yet)

    @property
    def models(self) -> list[str]:
        return [r.model for r in self.routes]

    @property
    def models_route(self) -> Route:
        """GET /models: any backend knows the full list; the first model's answers."""
        return self.routes[0]


def placeholder(cloud_run_name: str) -> str:
    """The committed document's stand-in for a backend URL known only after deploy."""
    return f"https://{cloud_run_name}.{PLACEHOLDER_MARK}.run.app"


def gateway(config: Config, addresses: dict[str, str] | None = None) -> GatewayContext | None:
    """The gateway document's context; ``addresses`` maps each v3 backend service to its URL
    (None: the committed document, with placeholders)."""
    backends = config.v3_backends()
    if not backends:
        return None
    gw = config.gateway or Gateway()
    routes = []
    for s in backends:
        if addresses is None:
            address = placeholder(s.cloud_run_name)
        elif s.name in addresses:
            address = addresses[s.name].rstrip("/")
        else:
            raise ValueError(f"no URL for {s.name}: deploy it before the gateway")
        routes.append(Route(str(s.model), s.name, s.cloud_run_name, address))
    return GatewayContext(
        api_id=gw.api_id,
        gateway_id=gw.gateway_id,
        location=config.gateway_location,
        deadline=repr(float(gw.deadline)),
        api_key=gw.api_key,
        routes=tuple(routes),
        placeholders=addresses is None,
    )


@dataclass(frozen=True)
class Context:
    project_id: str
    student_id: str
    region: str
    repository: str
    registry: str
    repo_uri: str
    serving_port: int
    base_image: str
    base_image_uri: str
    docker_builder: str
    services: tuple[ServiceContext, ...]
    gateway: GatewayContext | None = None

    @property
    def model_builds(self) -> list[ServiceContext]:
        """Services whose image build takes a model (v3 backends: cloudbuild_v3.yaml)."""
        return [s for s in self.services if s.model]


def _service(config: Config, s: Service, backend: ServiceContext | None) -> ServiceContext:
    pairs = list(s.env)
    items = [f"{k}={v}" for k, v in pairs]
    delimiter = env_delimiter(items)
    return ServiceContext(
        name=s.name,
        kind=s.kind,
        version=s.version,
        part=s.deliverable_key[1],
        image=s.image,
        image_uri=config.image_uri(s),
        dockerfile=s.dockerfile,
        app_dir=s.app_dir,
        cloud_run_name=s.cloud_run_name,
        memory=s.resources.memory,
        cpu=s.resources.cpu,
        min_instances=s.resources.min_instances,
        max_instances=s.resources.max_instances,
        concurrency=s.concurrency,
        env_pairs=tuple(pairs),
        env_prefix="" if delimiter == "," else f"^{delimiter}^",
        env_delimiter=delimiter,
        env_static=delimiter.join(items),
        deploy_script=s.deploy_script,
        backend=backend,
        deliverable_path=s.deliverable_key,
        model=s.model or "",
        url_var=s.url_var,
        cloudbuild=CLOUDBUILD_V3 if s.model else CLOUDBUILD,
        session_secret=SESSION_SECRET if s.kind == "backend" and s.version == "v2" else "",
    )


def build(config: Config) -> Context:
    backends: dict[str, ServiceContext] = {}
    for s in config.backends():
        backends[s.name] = _service(config, s, None)
    services = []
    for s in config.services:
        if s.kind == "backend":
            services.append(backends[s.name])
        else:
            services.append(_service(config, s, backends.get(s.backend or "")))
    return Context(
        project_id=config.project_id,
        student_id=config.student_id,
        region=config.region,
        repository=config.repository,
        registry=config.registry,
        repo_uri=config.repo_uri,
        serving_port=config.serving_port,
        base_image=config.base_image,
        base_image_uri=config.base_image_uri,
        docker_builder=DOCKER_BUILDER,
        services=tuple(services),
        gateway=gateway(config),
    )


def shell_quote(value: object) -> str:
    """Jinja filter ``sh``: one shell word (single quotes when needed)."""
    return shlex.quote(str(value))


def shell_double_quote(value: object) -> str:
    """Jinja filter ``dq``: one double-quoted shell word, with ``\\ " $ ` `` escaped."""
    return '"' + re.sub(r'([\\"$`])', r"\\\1", str(value)) + '"'
