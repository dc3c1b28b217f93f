"""The deployment config, ``deployment.yaml``: one file that every target reads.

Read here in two steps, the way the deliverables are (``yamlschema``):

1. ``deployment.schema.json``: the keys, their types and each value's form (the naming rules of
   Google's resources are ``hw5kit.naming``'s, which the schema's patterns follow). Every
   problem is reported at once, one line each;
2. what no schema says, one value against another: min_instances against max_instances, a
   frontend's backend, one backend and one frontend per version, a v3 group's models, the
   gateway's location against the regions API Gateway serves, the student ID as a project ID.

A problem raises ``ConfigError`` whose message names the key, shows the value found and says
what is expected, e.g.::

    deployment.yaml: services.backend_v1.resources.memory: expected a size such as 512Mi or
    2Gi, got '2GB'

Everything else in the pipeline (templates, targets, verify) works from the ``Config`` object,
never from the raw YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .. import naming
from ..gcp_regions import API_GATEWAY_LOCATIONS, nearest_gateway_location
from . import yamlschema
from .deployment import (
    CONFIG_NAME,
    COURSE_AUTOGRADER,
    DEFAULT_AUTOGRADER,
    GATEWAY_SERVICE,
    TARGETS,
    Config,
    ConfigError,
    Gateway,
    Resources,
    Service,
)

SCHEMA = "deployment.schema.json"

__all__ = [  # what other code uses: load, parse and the objects they make (deployment.py)
    "CONFIG_NAME",
    "COURSE_AUTOGRADER",
    "DEFAULT_AUTOGRADER",
    "GATEWAY_SERVICE",
    "TARGETS",
    "Config",
    "ConfigError",
    "Gateway",
    "Resources",
    "Service",
    "load",
    "parse",
    "problems",
    "schema",
]


def schema() -> dict:
    return yamlschema.load(SCHEMA)


def _defaults(node: Mapping) -> dict[str, Any]:
    """The ``default`` of each property of a schema object."""
    props = yamlschema.resolve(node, schema()).get("properties", {})
    return {k: v["default"] for k, v in props.items() if "default" in v}


# --- checking: the schema ---------------------------------------------------------------------


def _where(path: Path | None) -> str:
    return str(path) if path else CONFIG_NAME


def _fail(path: Path | None, key: str, message: str) -> ConfigError:
    return ConfigError(f"{_where(path)}: {key}: {message}")


def _expected(node: Mapping) -> str:
    """What a value of this schema should be, in words (the "expected ..." of an error)."""
    if "x-expected" in node:
        return node["x-expected"]
    if "enum" in node:
        return "one of " + ", ".join(map(str, node["enum"]))
    return node.get("description", "")


def _describe(error: jsonschema.ValidationError) -> list[tuple[str, str]]:
    """``(key, message)`` for one schema error (the conventions in ``yamlschema``)."""
    root = schema()
    path = list(error.absolute_path)
    node = yamlschema.resolve(error.schema, root)
    value = error.instance
    props = node.get("properties", {})
    if error.validator == "required":
        return [
            (yamlschema.dotted([*path, key]), f"missing; expected {_expected(props[key])}")
            for key in error.validator_value
            if key not in value
        ]
    if error.validator == "additionalProperties" and node.get("additionalProperties") is False:
        listing = "; ".join(
            f"{key} ({yamlschema.resolve(sub, root).get('description', '')})"
            for key, sub in props.items()
        )
        return [
            (yamlschema.dotted([*path, key]), f"unknown key; expected one of: {listing}")
            for key in value
            if key not in props
        ]
    if "propertyNames" in error.schema_path:  # a key itself: the message is about its name
        path = [*path, value]
    messages = node.get("x-messages", {})
    types = node.get("type")
    template = messages.get(error.validator)
    if template and (value is not None or "{value" not in template):
        message = template.format(value=value)
    elif value is None or value == "":
        message = f"missing; expected {_expected(node)}"
    elif error.validator == "type" and "object" in (types if isinstance(types, list) else [types]):
        message = f"expected a mapping ({', '.join(props)})"
    else:
        message = f"expected {_expected(node)}, got {value!r}"
    return [(yamlschema.dotted(path), message)]


def problems(data: Any) -> list[str]:
    """Every way ``data`` (the parsed YAML, read with ``yamlschema.read_as``) breaks the schema,
    one ``key: message`` line each (one per key), in file order."""
    found: dict[str, str] = {}
    for error in yamlschema.errors(schema(), data):
        for key, message in _describe(error):
            found.setdefault(key, message)
    return [f"{key}: {message}" if key else message for key, message in found.items()]


# --- reading: what no schema says ---------------------------------------------------------------


def _resources(path, prefix: str, data: Mapping | None) -> Resources:
    merged = {**_defaults(schema()["$defs"]["resources"]), **(data or {})}
    low, high = merged["min_instances"], merged["max_instances"]
    if low > high:
        raise _fail(
            path,
            prefix + "min_instances",
            f"min_instances ({low}) is larger than max_instances ({high})",
        )
    return Resources(
        memory=merged["memory"],
        cpu=merged["cpu"],
        min_instances=low,
        max_instances=high,
        concurrency=merged.get("concurrency"),
    )


def _service(path, name: str, data: Mapping) -> list[Service]:
    prefix = f"services.{name}."
    kind, version = data["kind"], data["version"]
    backend = data.get("backend")
    if kind == "frontend" and backend is None:
        raise _fail(path, prefix + "backend", "missing; a frontend names its backend service")
    if kind != "frontend" and backend is not None:
        raise _fail(path, prefix + "backend", "only frontends name a backend")
    resources = _resources(path, prefix + "resources.", data.get("resources"))
    env = {key: str(value) for key, value in (data.get("env") or {}).items()}
    for wired in ("SERVING_URL", "API_GATEWAY"):
        if kind == "frontend" and wired in env:
            raise _fail(
                path, f"{prefix}env.{wired}", f"{wired} is wired by deploy from the backend's URL"
            )
    service = Service(
        name=name,
        kind=kind,
        version=version,
        cloud_run_name=data.get("cloud_run_name") or naming.default_cloud_run_name(name),
        resources=resources,
        env=tuple(sorted(env.items())),
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
        if not naming.MODEL_NAME_RE.match(model):
            raise _fail(path, f"{key}.MODELS", f"{model!r} is not a model name")
        name = naming.model_service_name(group.name, model)
        run_name = naming.model_cloud_run_name(group.cloud_run_name, model)
        if not naming.SERVICE_NAME_RE.match(name) or not naming.CLOUD_RUN_NAME_RE.match(run_name):
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


def _gateway(path, data: Mapping | None, region: str, *, used: bool) -> Gateway:
    """The ``gateway:`` block; ``used``: the config has v3 services (else only an explicit
    location is checked against API Gateway's regions: a typo is reported all the same)."""
    merged = {**_defaults(schema()["$defs"]["gateway"]), **(data or {})}
    location = merged.get("location") or ""
    if used or location:
        _gateway_location(path, location, region)
    return Gateway(
        api_id=merged["api_id"],
        gateway_id=merged["gateway_id"],
        location=location,
        deadline=float(merged["deadline"]),
        api_key=merged["api_key"],
    )


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


def parse(data: Any, path: Path | None = None) -> Config:
    """Check the parsed YAML (the schema, then the relations) and build the ``Config``."""
    data = yamlschema.read_as(data, schema())
    found = problems(data)
    if found:
        raise ConfigError("\n".join(f"{_where(path)}: {line}" for line in found))
    top = {**_defaults(schema()), **data}
    student_id = naming.normalize_student_id(top["student_id"])
    problem = naming.student_id_problem(student_id)
    if problem:
        raise _fail(path, "student_id", problem)
    services = tuple(
        s for name, body in top["services"].items() for s in _service(path, name, body)
    )
    _check_services(path, services, top["base_image"])
    used = any(s.version == "v3" for s in services)
    gateway = None
    if used or top.get("gateway") is not None:
        gateway = _gateway(path, top.get("gateway"), top["region"], used=used)
    return Config(
        student_id=student_id,
        region=top["region"],
        repository=top["repository"],
        serving_port=top["serving_port"],
        target=top["target"],
        base_image=top["base_image"],
        services=services,
        path=path,
        autograder_service_account=top["autograder_service_account"],
        gateway=gateway if used else None,
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
