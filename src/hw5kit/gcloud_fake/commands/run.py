"""``gcloud run deploy / services describe / get-iam-policy / add-iam-policy-binding /
update``: Cloud Run services, their revisions, settings and URLs (``hw5kit.naming``), and who
may invoke them (``iam.py``); secrets through ``secrets.py``."""

from __future__ import annotations

import hashlib
import re

from ... import naming
from .. import docker, formats, iam, simulation
from ..call import Call, Result
from ..state import now
from .common import (
    describe_output,
    need_api,
    output_format,
    project_of,
    public_view,
    region_of,
    split_list,
)
from .secrets import apply_to_service

RESERVED_ENV = ("PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION")


ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# gcloud's own check of a service name, before the request (hw5kit.naming has both rules)
SERVICE_NAME_RE = naming.GCLOUD_SERVICE_NAME_RE


def _env_vars(call: Call, flag: str = "--set-env-vars") -> dict[str, str]:
    raw = call.flag(flag)
    if raw is None:
        return {}
    out: dict[str, str] = {}
    for item in split_list(str(raw)):
        key, eq, value = item.partition("=")
        if not eq or not ENV_KEY_RE.match(key):
            raise call.error(
                f"argument {flag}: Bad syntax for dict arg: [{item}]. Please see "
                "`gcloud topic flags-file` or `gcloud topic escaping` for information on "
                "providing list or dictionary flag values with special characters.",
                2,
            )
        out[key] = value
    reserved = [k for k in out if k in RESERVED_ENV]
    if reserved:
        raise call.error(
            f"Invalid value for [{flag}]: The following reserved env names were "
            f"provided: {', '.join(reserved)}. These values are automatically set by the system."
        )
    return out


def service_url(project: str, number: str, region: str, service: str) -> str:
    """The URL ``status.url`` shows: the hash form where the kit knows the region's code,
    else the deterministic form (both: hw5kit.naming, after Cloud Run's https-request page)."""
    return naming.service_urls(project, number, region, service)[0]


def _memory_bytes(value: str) -> int:
    match = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi|k|M|G)?", value)
    assert match
    scale = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9, None: 1}
    return int(match.group(1)) * scale[match.group(2)]


def _cpu_value(value: str) -> float:
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


def run_deploy(call: Call, state: dict) -> Result:
    service = call.positionals[0]
    if not SERVICE_NAME_RE.match(service):
        raise call.error(
            f"Invalid resource name [{service}]. The name must use only lowercase alphanumeric "
            "characters and dashes, cannot begin or end with a dash, and cannot be longer than "
            "63 characters."
        )
    if not naming.CLOUD_RUN_NAME_RE.match(service):
        # the API's own rule, stricter than gcloud's check above (Cloud Run Admin API,
        # projects.locations.services.create: "must begin with letter, and cannot end with
        # hyphen; must contain fewer than 50 characters"); the wording is the API's answer
        raise call.error(
            "INVALID_ARGUMENT: Violation in CreateServiceRequest.service_id: only lowercase, "
            "digits, and hyphens; must begin with letter, and cannot end with hyphen; must be "
            "less than 50 characters."
        )
    project, data = project_of(call, state)
    region = region_of(call, state, "run/region")
    need_api(call, project, data, "run.googleapis.com")
    image = call.flag("--image")
    if not image:
        raise call.error(
            "Missing required argument [--image] (fake gcloud: deploying from source is not "
            "part of the HW5 workflow; deploy the image Cloud Build pushed)"
        )
    ref = docker.parse_reference(str(image))
    if ref is None:
        raise call.error(f"Invalid image reference [{image}]: expected REGISTRY/PATH[:TAG|@DIGEST]")
    env = _env_vars(call)
    key = f"{region}/{service}"
    existing = data["run"].get(key)
    old_container = existing["spec"]["template"]["spec"]["containers"][0] if existing else {}
    if call.flag("--update-env-vars") is not None:
        if call.flag("--set-env-vars") is not None:
            raise call.error(
                "argument --update-env-vars: At most one of --set-env-vars | --update-env-vars "
                "can be specified.",
                2,
            )
        env = {e["name"]: e["value"] for e in old_container.get("env", []) if "value" in e}
        env.update(_env_vars(call, "--update-env-vars"))
    memory = call.flag("--memory") or old_container.get("resources", {}).get("limits", {}).get(
        "memory", "512Mi"
    )
    cpu = call.flag("--cpu") or old_container.get("resources", {}).get("limits", {}).get(
        "cpu", "1000m"
    )
    mem_bytes, cpu_count = _memory_bytes(str(memory)), _cpu_value(str(cpu))
    if not 128 * 2**20 <= mem_bytes <= 32 * 2**30:
        raise call.error(f"Invalid value for [--memory]: {memory} is outside 128Mi-32Gi")
    for needs_cpu, above in ((2, 4 * 2**30), (4, 8 * 2**30), (6, 16 * 2**30), (8, 24 * 2**30)):
        if mem_bytes > above and cpu_count < needs_cpu:
            raise call.error(
                f"Invalid value for [--memory]: more than {above // 2**30}Gi of memory requires "
                f"at least {needs_cpu} CPUs (--cpu)"
            )
    if cpu_count >= 4 and mem_bytes < 2 * 2**30:
        raise call.error(f"Invalid value for [--cpu]: {cpu} CPUs requires at least 2Gi of memory")
    annotations = dict(existing["spec"]["template"]["metadata"]["annotations"]) if existing else {}
    low = call.flag("--min-instances")
    high = call.flag("--max-instances")
    if low is not None:
        annotations.pop("autoscaling.knative.dev/minScale", None)
        if low != "default":
            annotations["autoscaling.knative.dev/minScale"] = str(low)
    if high is not None:
        annotations.pop("autoscaling.knative.dev/maxScale", None)
        if high != "default":
            annotations["autoscaling.knative.dev/maxScale"] = str(high)
    low_n = int(annotations.get("autoscaling.knative.dev/minScale", "0"))
    high_n = int(annotations.get("autoscaling.knative.dev/maxScale", "100"))
    if low_n > high_n:
        raise call.error(f"min-instances ({low_n}) cannot be greater than max-instances ({high_n})")
    if ref.ar_location is not None and state["settings"].get("require_built_images", True):
        parts = ref.ar_parts()
        owner = state["projects"].get(parts[0]) if parts else None
        digest = None
        if owner is not None:
            digest = simulation.Registry(parts[0], set(), owner["images"]).lookup(ref)
        if digest is None:
            raise call.error(
                f"Revision '{service}-00000' is not ready and cannot serve traffic. Image "
                f"'{image}' not found."
            )
    port = call.flag("--port") or (
        str(old_container["ports"][0]["containerPort"]) if old_container else "8080"
    )
    concurrency = call.flag("--concurrency")
    if concurrency in (None, "default"):
        concurrency = (
            existing["spec"]["template"]["spec"]["containerConcurrency"]
            if existing and concurrency is None
            else 80
        )
    generation = (existing["metadata"]["generation"] + 1) if existing else 1
    suffix = hashlib.sha256(f"{key}/{generation}/{image}".encode()).hexdigest()[:3]
    revision = f"{service}-{generation:05d}-{suffix}"
    url = service_url(project, data["number"], region, service)
    service_annotations = {"run.googleapis.com/ingress": "all"}
    kept = (existing or {}).get("metadata", {}).get("annotations", {})
    if iam.INVOKER_IAM_DISABLED in kept:  # a redeploy keeps --no-invoker-iam-check
        service_annotations[iam.INVOKER_IAM_DISABLED] = kept[iam.INVOKER_IAM_DISABLED]
    if call.flag("--invoker-iam-check") is False:
        service_annotations[iam.INVOKER_IAM_DISABLED] = "true"
    elif call.flag("--invoker-iam-check") is True:
        service_annotations.pop(iam.INVOKER_IAM_DISABLED, None)
    stamp = now()
    resource = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": service,
            "namespace": data["number"],
            "generation": generation,
            "creationTimestamp": existing["metadata"]["creationTimestamp"] if existing else stamp,
            "labels": {"cloud.googleapis.com/location": region},
            "annotations": service_annotations,
        },
        "spec": {
            "template": {
                "metadata": {"name": revision, "annotations": annotations},
                "spec": {
                    "containerConcurrency": int(concurrency),
                    "timeoutSeconds": 300,
                    "containers": [
                        {
                            "image": str(image),
                            "ports": [{"name": "http1", "containerPort": int(port)}],
                            "env": [{"name": k, "value": v} for k, v in env.items()]
                            if call.flag("--set-env-vars") is not None
                            or call.flag("--update-env-vars") is not None
                            else old_container.get("env", []),
                            "resources": {"limits": {"cpu": str(cpu), "memory": str(memory)}},
                        }
                    ],
                },
            },
            "traffic": [{"latestRevision": True, "percent": 100}],
        },
        "status": {
            "url": url,
            "address": {"url": url},
            "observedGeneration": generation,
            "latestCreatedRevisionName": revision,
            "latestReadyRevisionName": revision,
            "traffic": [{"latestRevision": True, "percent": 100, "revisionName": revision}],
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": stamp}
                for t in ("Ready", "ConfigurationsReady", "RoutesReady")
            ],
        },
        "fake": {"public": False, "updated": stamp},
    }
    # Secret Manager: --set-secrets / --update-secrets, checked as Cloud Run does (secrets.py)
    apply_to_service(
        call, data, old_container, resource["spec"]["template"]["spec"]["containers"][0]
    )
    data["run"][key] = resource
    # --[no-]allow-unauthenticated: the allUsers binding (iam.py); refused by an organization
    # policy, gcloud only warns and exits 0 (gcloud's serverless_operations.py)
    public = call.flag("--allow-unauthenticated")
    if public is False and not existing:
        public = None  # gcloud's run/deploy.py: nothing to remove from a new service
    warning = ""
    if public is not None:
        warning = iam.set_public(call, data, key, region, service, bool(public))
    resource["fake"]["public"] = iam.is_public(data, key)
    verb = "Deploying..." if existing else "Deploying new service..."
    stderr = (
        f"Deploying container to Cloud Run service [{service}] in project [{project}] region "
        f"[{region}]\n{verb}\n  Creating Revision...\n  Routing traffic...\n"
    )
    if public is not None:
        stderr += "  Setting IAM Policy...\n"
    stderr += f"Completed with warnings:\n  {warning}\n" if warning else "Done.\n"
    stderr += (
        f"Service [{service}] revision [{revision}] has been deployed and is serving 100 "
        f"percent of traffic.\nService URL: {url}\n"
    )
    return Result(stderr=stderr, extra={"service_url": url, "iam_warning": warning})


def run_services_describe(call: Call, state: dict) -> Result:
    project, data = project_of(call, state)
    region = region_of(call, state, "run/region")
    need_api(call, project, data, "run.googleapis.com")
    service = call.positionals[0]
    resource = data["run"].get(f"{region}/{service}")
    if resource is None:
        raise call.error(f"Cannot find service [{service}]")
    public = public_view(resource)
    spec = output_format(call)
    if spec[0] != "default":
        return Result(stdout=formats.render([public], spec, single=True))
    container = public["spec"]["template"]["spec"]["containers"][0]
    lines = [
        f"✔ Service {service} in region {region}",
        "",
        f"URL:     {public['status']['url']}",
        f"Ingress: {public['metadata']['annotations']['run.googleapis.com/ingress']}",
        "Traffic:",
        f"  100% LATEST (currently {public['status']['latestReadyRevisionName']})",
        "",
        f"Image:   {container['image']}",
        f"Port:    {container['ports'][0]['containerPort']}",
        f"Memory:  {container['resources']['limits']['memory']}",
        f"CPU:     {container['resources']['limits']['cpu']}",
    ]
    for env in container.get("env", []):
        lines.append(f"Env:     {env['name']}={env['value']}")
    return Result(stdout="\n".join(lines) + "\n")


def _service_key(call: Call, state: dict) -> tuple[str, dict, str, str, str]:
    project, data = project_of(call, state)
    region = region_of(call, state, "run/region")
    need_api(call, project, data, "run.googleapis.com")
    service = call.positionals[0]
    key = f"{region}/{service}"
    if key not in data["run"]:
        raise call.error(f"Cannot find service [{service}]")
    return project, data, region, service, key


def run_services_get_iam_policy(call: Call, state: dict) -> Result:
    _project_id, data, _region, _service, key = _service_key(call, state)
    return Result(stdout=describe_output(call, iam.service_policy(data, key)))


def run_services_add_iam_policy_binding(call: Call, state: dict) -> Result:
    member, role = iam.binding_flags(call)
    _project_id, data, _region, service, key = _service_key(call, state)
    iam.check_member(call, state, member)
    iam.check_role(call, role)
    iam.refuse_public(call, data, member)
    changed = iam.add_binding(iam.service_policy(data, key), role, member)
    data["run"][key]["fake"]["public"] = iam.is_public(data, key)
    return Result(
        stdout=describe_output(call, iam.service_policy(data, key)),
        stderr=f"Updated IAM policy for service [{service}].\n",
        extra={"binding_added": changed},
    )


def run_services_update(call: Call, state: dict) -> Result:
    """Only what the kit's remedy uses: ``--[no-]invoker-iam-check``."""
    project, data, region, service, key = _service_key(call, state)
    check = call.flag("--invoker-iam-check")
    if check is None:
        raise call.error(
            "No configuration change requested. Did you mean to include the flags "
            "`--update-env-vars`, `--image`...? (fake gcloud: it models only "
            "--[no-]invoker-iam-check)"
        )
    resource = data["run"][key]
    annotations = resource["metadata"].setdefault("annotations", {})
    if check:
        annotations.pop(iam.INVOKER_IAM_DISABLED, None)
    else:
        annotations[iam.INVOKER_IAM_DISABLED] = "true"
    resource["fake"]["public"] = iam.is_public(data, key)
    revision = resource["status"]["latestReadyRevisionName"]
    return Result(
        stderr=(
            f"Deploying...\n  Creating Revision...\n  Routing traffic...\nDone.\nService "
            f"[{service}] revision [{revision}] has been deployed and is serving 100 percent of "
            f"traffic.\nService URL: {resource['status']['url']}\n"
        ),
        extra={"invoker_iam_check": bool(check), "project": project, "region": region},
    )
