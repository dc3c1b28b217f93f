"""``gcloud api-gateway api-configs create / describe``, ``apis describe``, ``gateways create /
update / describe``: v3's API, its configs (OpenAPI 2.0) and the gateway, in the regions API
Gateway serves (``hw5kit.gcp_regions``)."""

from __future__ import annotations

import hashlib
import re

import yaml

from ...confined import Unreadable
from ...gcp_regions import API_GATEWAY_LOCATIONS
from ..call import Call, GcloudError, Result
from ..state import now
from .common import describe_output, need_api, project_of

GATEWAY_ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


GATEWAY_API = "apigateway.googleapis.com"


def _apigateway(call: Call, project: str, data: dict) -> dict:
    """The project's API Gateway resources (older states have none yet); refused as on Google
    while the API Gateway API is not enabled in the project."""
    need_api(call, project, data, GATEWAY_API)
    return data.setdefault("apigateway", {"apis": {}, "configs": {}, "gateways": {}})


def _not_found(call: Call, resource: str) -> GcloudError:
    """API Gateway's answer for a resource that does not exist (``projects/.../...``)."""
    return call.error(f"NOT_FOUND: Resource '{resource}' was not found")


def _config_name(project: str, api: str, config_id: str) -> str:
    return f"projects/{project}/locations/global/apis/{api}/configs/{config_id}"


def _gateway_id(call: Call, value: str, what: str) -> str:
    if not GATEWAY_ID_RE.match(value):
        raise call.error(
            f"INVALID_ARGUMENT: {what} ID [{value}] must have at most 63 characters: lowercase "
            "letters, numbers or dashes, starting with a letter, without underscores"
        )
    return value


def api_configs_create(call: Call, state: dict) -> Result:
    project, data = project_of(call, state)
    gw = _apigateway(call, project, data)
    config_id = _gateway_id(call, call.positionals[0], "API config")
    api = _gateway_id(call, call.flag("--api") or "", "API")
    spec_path = call.flag("--openapi-spec")
    if not spec_path:
        raise call.error("Exactly one of (--grpc-files | --openapi-spec) must be specified.", 2)
    try:
        text = call.files.read(str(spec_path), call.cwd, flag="--openapi-spec").decode(
            "utf-8", errors="replace"
        )
    except Unreadable as exc:
        raise call.error(f"Unable to read file [{spec_path}]: {exc.reason}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None
    if not isinstance(doc, dict) or str(doc.get("swagger")) != "2.0":
        raise call.error(
            f"INVALID_ARGUMENT: Cannot convert to service config. [{spec_path}] is not an "
            'OpenAPI 2.0 document (swagger: "2.0")'
        )
    key = f"{api}/{config_id}"
    if key in gw["configs"]:
        raise call.error(
            f"ALREADY_EXISTS: Resource '{_config_name(project, api, config_id)}' already exists"
        )
    stderr = ""
    if api not in gw["apis"]:
        gw["apis"][api] = {
            "name": f"projects/{project}/locations/global/apis/{api}",
            "managedService": f"{api}-{hashlib.sha256(project.encode()).hexdigest()[:13]}"
            f".apigateway.{project}.cloud.goog",
            "state": "ACTIVE",
            "createTime": now(),
        }
        stderr += f"Waiting for API [{api}] to be created...done.\n"
    gw["configs"][key] = {
        "name": _config_name(project, api, config_id),
        "state": "ACTIVE",
        "createTime": now(),
        "openapi_spec": text,
        "backendAuthServiceAccount": call.flag("--backend-auth-service-account") or "",
    }
    stderr += f"Waiting for API Config [{config_id}] to be created for API [{api}]...done.\n"
    return Result(stderr=stderr)


def api_configs_describe(call: Call, state: dict) -> Result:
    project, data = project_of(call, state)
    gw = _apigateway(call, project, data)
    api = call.flag("--api") or ""
    config_id = call.positionals[0]
    resource = gw["configs"].get(f"{api}/{config_id}")
    if resource is None:
        raise _not_found(call, _config_name(project, api, config_id))
    public = {k: v for k, v in resource.items() if k != "openapi_spec"}
    return Result(stdout=describe_output(call, public))


def apis_describe(call: Call, state: dict) -> Result:
    project, data = project_of(call, state)
    gw = _apigateway(call, project, data)
    api = call.positionals[0]
    resource = gw["apis"].get(api)
    if resource is None:
        raise _not_found(call, f"projects/{project}/locations/global/apis/{api}")
    return Result(stdout=describe_output(call, resource))


def _gateway_resource(call: Call, project: str, gw: dict) -> tuple[str, str, str]:
    gateway = _gateway_id(call, call.positionals[0], "Gateway")
    location = call.flag("--location")
    if not location:
        raise call.error(
            "Error parsing [gateway]. The [gateway] resource is not properly specified. "
            "Failed to find attribute [location]."
        )
    return gateway, location, f"{location}/{gateway}"


def _gateway_config(call: Call, project: str, gw: dict) -> str:
    api = call.flag("--api") or ""
    config_id = call.flag("--api-config") or ""
    if f"{api}/{config_id}" not in gw["configs"]:
        raise _not_found(call, _config_name(project, api, config_id))
    return _config_name(project, api, config_id)


def gateways_create(call: Call, state: dict) -> Result:
    project, data = project_of(call, state)
    gw = _apigateway(call, project, data)
    gateway, location, key = _gateway_resource(call, project, gw)
    if location not in API_GATEWAY_LOCATIONS:
        # the regions of https://cloud.google.com/api-gateway/docs/deployment-model (the
        # wording of Google's refusal is the fake's own)
        raise call.error(
            f"INVALID_ARGUMENT: Location [{location}] is not supported by API Gateway (fake "
            f"gcloud: it serves {', '.join(API_GATEWAY_LOCATIONS)})",
        )
    if key in gw["gateways"]:
        raise call.error(
            f"ALREADY_EXISTS: Resource 'projects/{project}/locations/{location}/gateways/"
            f"{gateway}' already exists"
        )
    config = _gateway_config(call, project, gw)
    digest = hashlib.sha256(f"{project}/{key}".encode()).hexdigest()[:8]
    gw["gateways"][key] = {
        "name": f"projects/{project}/locations/{location}/gateways/{gateway}",
        "apiConfig": config,
        "defaultHostname": f"{gateway}-{digest}.{API_GATEWAY_LOCATIONS[location]}.gateway.dev",
        "state": "ACTIVE",
        "createTime": now(),
        "updateTime": now(),
    }
    return Result(
        stderr=f"Waiting for API Gateway [{gateway}] to be created with [{config}] config...done.\n"
    )


def _existing_gateway(call: Call, state: dict) -> tuple[str, dict, str, dict]:
    """The gateway a command names: its ID, its state, the project and the project's API
    Gateway state; NOT_FOUND when it was never created."""
    project, data = project_of(call, state)
    gw = _apigateway(call, project, data)
    gateway, location, key = _gateway_resource(call, project, gw)
    resource = gw["gateways"].get(key)
    if resource is None:
        raise _not_found(call, f"projects/{project}/locations/{location}/gateways/{gateway}")
    return gateway, resource, project, gw


def gateways_update(call: Call, state: dict) -> Result:
    gateway, resource, project, gw = _existing_gateway(call, state)
    resource["apiConfig"] = _gateway_config(call, project, gw)
    resource["updateTime"] = now()
    return Result(stderr=f"Waiting for API Gateway [{gateway}] to be updated...done.\n")


def gateways_describe(call: Call, state: dict) -> Result:
    _gateway, resource, _project_id, _gw = _existing_gateway(call, state)
    return Result(stdout=describe_output(call, resource))
