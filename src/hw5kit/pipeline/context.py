"""The one context object the templates are rendered from, built from the ``Config``.

Everything a template prints is computed here (URIs, quoted shell words, the
``--set-env-vars`` argument with gcloud's alternate-delimiter syntax when a value holds a
comma), so the templates hold no logic beyond loops and conditionals.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from .config import Config, Service

# Cloud Build's docker builder (the course's choice).
DOCKER_BUILDER = "gcr.io/cloud-builders/docker"
# Candidates for gcloud's alternate list delimiter (`gcloud topic escaping`): ^D^K=V D K2=V2
ALT_DELIMITERS = "|@;#"


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

    @property
    def is_frontend(self) -> bool:
        return self.kind == "frontend"


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
            services.append(_service(config, s, backends[s.backend]))
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
    )


def shell_quote(value: object) -> str:
    """Jinja filter ``sh``: one shell word (single quotes when needed)."""
    return shlex.quote(str(value))


def shell_double_quote(value: object) -> str:
    """Jinja filter ``dq``: one double-quoted shell word, with ``\\ " $ ` `` escaped."""
    return '"' + re.sub(r'([\\"$`])', r"\\\1", str(value)) + '"'
