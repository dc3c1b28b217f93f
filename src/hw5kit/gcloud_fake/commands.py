"""What each allowed command does to the fake project state, and what it prints.

Messages follow the real gcloud 528's wording where the kit or a student would see them
(``Created [...]``, ``Service URL: ...``, ``Cannot find service [...]``, ...). Handlers take the
parsed ``Call`` and the locked state, and return a ``Result`` or raise ``GcloudError``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from typing import Any

import yaml

from .. import naming
from ..confined import Folder, Unreadable
from ..gcp_regions import API_GATEWAY_LOCATIONS
from . import cloudbuild, formats, gcloudignore, iam
from .cli import Call, GcloudError, Result
from .state import API_TITLES, BILLED_APIS, new_project, now

PROPERTIES = {
    "project": "core/project",
    "core/project": "core/project",
    "account": "core/account",
    "core/account": "core/account",
    "run/region": "run/region",
    "builds/region": "builds/region",
    "compute/region": "compute/region",
    "artifacts/location": "artifacts/location",
    # https://cloud.google.com/sdk/gcloud/reference/topic/gcloudignore: turns ignore files off
    "gcloudignore/enabled": "gcloudignore/enabled",
}
RESERVED_ENV = ("PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# gcloud's own check of a service name, before the request (hw5kit.naming has both rules)
SERVICE_NAME_RE = naming.GCLOUD_SERVICE_NAME_RE


# --- shared helpers ------------------------------------------------------------------------


def _format(call: Call) -> tuple[str, list[str]]:
    try:
        return formats.parse(call.flag("--format"))
    except formats.FormatError as exc:
        raise GcloudError(str(exc), 1, call.command.dotted) from None


def _project(call: Call, state: dict) -> tuple[str, dict]:
    project = (
        call.flag("--project")
        or call.env.get("CLOUDSDK_CORE_PROJECT")
        or state["config"].get("core/project")
    )
    if not project:
        raise GcloudError(
            "The required property [project] is not currently set.\nIt can be set on a "
            "per-command basis by re-running your command with the [--project] flag.\n\n"
            "You may set it for your current workspace by running:\n\n"
            "  $ gcloud config set project VALUE",
            1,
            call.command.dotted,
        )
    data = state["projects"].get(project)
    if data is None:
        raise GcloudError(
            f"PERMISSION_DENIED: Permission denied on resource project {project}. (The fake "
            f"gcloud knows the projects: {', '.join(sorted(state['projects'])) or 'none'}.)",
            1,
            call.command.dotted,
        )
    return project, data


def _need_api(call: Call, project: str, data: dict, api: str) -> None:
    if api not in data["apis"]:
        title = API_TITLES.get(api, api)
        raise GcloudError(
            f"PERMISSION_DENIED: {title} has not been used in project {data['number']} before "
            f"or it is disabled. Enable it by visiting https://console.developers.google.com/"
            f"apis/api/{api}/overview?project={data['number']} then retry. If you enabled this "
            "API recently, wait a few minutes for the action to propagate to our systems and "
            f"retry. (fake gcloud: gcloud services enable {api} --project={project})",
            1,
            call.command.dotted,
        )


def _region(call: Call, state: dict, prop: str, *, default: str | None = None) -> str:
    region = (
        call.flag("--region")
        or call.env.get("CLOUDSDK_" + prop.upper().replace("/", "_"))
        or state["config"].get(prop)
        or default
    )
    if not region:
        raise GcloudError(
            "Missing required argument [--region]: You must specify a region. Either use the "
            f"`--region` flag or set the {prop} property.",
            1,
            call.command.dotted,
        )
    return region


def _describe_output(call: Call, resource: dict) -> str:
    spec = _format(call)
    if spec[0] == "default":
        spec = ("yaml", [])
    return formats.render([resource], spec, single=True)


# --- config --------------------------------------------------------------------------------


def _property(call: Call) -> str:
    name = call.positionals[0]
    prop = PROPERTIES.get(name)
    if prop is None:
        section, _, key = name.rpartition("/")
        raise GcloudError(
            f"Section [{section or 'core'}] has no property [{key}]. (fake gcloud: known "
            f"properties: {', '.join(sorted(set(PROPERTIES.values())))})",
            1,
            call.command.dotted,
        )
    return prop


def config_get_value(call: Call, state: dict) -> Result:
    prop = _property(call)
    env_name = "CLOUDSDK_" + prop.upper().replace("/", "_")
    value = call.env.get(env_name) or state["config"].get(prop)
    if not value:
        return Result(stderr="(unset)\n")
    return Result(stdout=f"{value}\n")


def config_set(call: Call, state: dict) -> Result:
    prop = _property(call)
    value = call.positionals[1]
    state["config"][prop] = value
    stderr = f"Updated property [{prop}].\n"
    if prop == "core/project" and value not in state["projects"]:
        stderr = (
            f"WARNING: You do not appear to have access to project [{value}] or it does not "
            "exist.\n" + stderr
        )
    return Result(stderr=stderr)


# --- services ------------------------------------------------------------------------------


def services_list(call: Call, state: dict) -> Result:
    _project_id, data = _project(call, state)
    items = [
        {
            "config": {"name": api, "title": API_TITLES.get(api, api)},
            "name": f"projects/{data['number']}/services/{api}",
            "parent": f"projects/{data['number']}",
            "state": "ENABLED",
        }
        for api in sorted(data["apis"])
    ]
    spec = _format(call)
    if spec[0] == "default":
        rows = [[i["config"]["name"], i["config"]["title"]] for i in items]
        return Result(stdout=formats.table(rows, ["NAME", "TITLE"]))
    return Result(stdout=formats.render(items, spec, single=False))


# --- artifacts -----------------------------------------------------------------------------


def artifacts_repositories_describe(call: Call, state: dict) -> Result:
    project, data = _project(call, state)
    location = call.flag("--location") or state["config"].get("artifacts/location")
    if not location:
        raise GcloudError(
            "Error parsing [repository].\nThe [repository] resource is not properly specified."
            "\nFailed to find attribute [location]. The attribute can be set in the following "
            "ways:\n- provide the argument `--location` on the command line\n- set the "
            "property `artifacts/location`",
            1,
            call.command.dotted,
        )
    _need_api(call, project, data, "artifactregistry.googleapis.com")
    name = call.positionals[0]
    repo = data["repositories"].get(f"{location}/{name}")
    if repo is None:
        raise GcloudError("NOT_FOUND: Requested entity was not found.", 1, call.command.dotted)
    return Result(stdout=_describe_output(call, repo))


def repository_resource(
    project: str, location: str, name: str, *, repository_format: str = "DOCKER", description=""
) -> dict[str, Any]:
    stamp = now()
    host = f"{location}-{repository_format.lower()}.pkg.dev"
    return {
        "name": f"projects/{project}/locations/{location}/repositories/{name}",
        "format": repository_format.upper(),
        "mode": "STANDARD_REPOSITORY",
        "description": description,
        "createTime": stamp,
        "updateTime": stamp,
        "registryUri": f"{host}/{project}/{name}",
        "sizeBytes": "0",
    }


# --- builds --------------------------------------------------------------------------------


def _parse_substitutions(call: Call, raw: str | None) -> dict[str, str]:
    """gcloud's ArgDict: KEY=VALUE,KEY=VALUE (with the ^D^ alternate delimiter syntax)."""
    if not raw:
        return {}
    pairs = _split_list(raw)
    out = {}
    for item in pairs:
        key, eq, value = item.partition("=")
        if not eq:
            raise GcloudError(
                f"argument --substitutions: Bad syntax for dict arg: [{item}]. Please see "
                "`gcloud topic flags-file` or `gcloud topic escaping` for information on "
                "providing list or dictionary flag values with special characters.",
                2,
                call.command.dotted,
            )
        out[key] = value
    return out


def _split_list(raw: str) -> list[str]:
    delimiter = ","
    match = re.match(r"^\^([^^]+)\^", raw)
    if match:
        delimiter = match.group(1)
        raw = raw[match.end() :]
    return [item for item in raw.split(delimiter) if item != ""]


def builds_submit(call: Call, state: dict) -> Result:
    project, data = _project(call, state)
    region = _region(call, state, "builds/region", default="global")
    _need_api(call, project, data, "cloudbuild.googleapis.com")
    source_arg = call.positionals[0] if call.positionals else "."
    if source_arg.startswith("gs://"):
        raise GcloudError(
            f"could not find source [{source_arg}] (fake gcloud: SOURCE must be a local directory)",
            1,
            call.command.dotted,
        )
    config_arg = call.flag("--config") or "cloudbuild.yaml"
    config_path = call.files.describe(str(config_arg), call.cwd)
    given = _parse_substitutions(call, call.flag("--substitutions"))
    build_id = str(uuid.uuid4())
    number = data["number"]
    builtins = {
        "PROJECT_ID": project,
        "PROJECT_NUMBER": number,
        "BUILD_ID": build_id,
        "LOCATION": region,
        "SERVICE_ACCOUNT_EMAIL": f"{number}-compute@developer.gserviceaccount.com",
    }
    try:
        folder = call.files.folder(source_arg, call.cwd, flag="SOURCE")
    except Unreadable as exc:
        raise GcloudError(
            f"could not find source [{source_arg}]: {exc.reason}", 1, call.command.dotted
        ) from None
    with folder:
        try:
            raw = call.files.read(str(config_arg), call.cwd, flag="--config")
        except Unreadable as exc:
            raise GcloudError(
                f"Unable to read file [{config_arg}]: {exc.reason}", 1, call.command.dotted
            ) from None
        try:
            config = cloudbuild.parse_config(raw, config_path)
            resolved, user = cloudbuild.apply_substitutions(config, given, builtins)
        except cloudbuild.ConfigProblem as exc:
            raise GcloudError(str(exc), 1, call.command.dotted) from None
        try:
            upload = _upload(call, state, folder)
        except gcloudignore.IgnoreFileError as exc:
            raise GcloudError(str(exc), 1, call.command.dotted) from None
        return _run_build(call, state, project, data, region, build_id, upload, resolved, user)


def _upload(call: Call, state: dict, folder: Folder) -> cloudbuild.Upload:
    """What gcloud uploads from the source folder: every file its ignore files keep
    (https://cloud.google.com/sdk/gcloud/reference/topic/gcloudignore; see gcloudignore.py)."""
    enabled = str(
        call.env.get("CLOUDSDK_GCLOUDIGNORE_ENABLED")
        or state["config"].get("gcloudignore/enabled")
        or "true"
    ).lower() not in ("false", "0", "no", "off")
    chooser = gcloudignore.chooser_for(folder, enabled=enabled)
    return cloudbuild.Upload(folder, folder.listing(chooser))


def _size(n: int) -> str:
    """Sizes as gcloud's resource_transform.TransformSize prints them (binary units)."""
    if n < 1024:
        return f"{n} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024  # type: ignore[assignment]
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
    return f"{n} bytes"  # pragma: no cover


def _run_build(
    call: Call,
    state: dict,
    project: str,
    data: dict,
    region: str,
    build_id: str,
    upload: cloudbuild.Upload,
    resolved: dict,
    user: dict,
) -> Result:
    source_arg = call.positionals[0] if call.positionals else "."
    number = data["number"]
    source = call.files.describe(source_arg, call.cwd)
    config_path = call.files.describe(str(call.flag("--config") or "cloudbuild.yaml"), call.cwd)
    created = now()
    log_url = (
        f"https://console.cloud.google.com/cloud-build/builds;region={region}/{build_id}"
        f"?project={number}"
    )
    name = f"projects/{number}/locations/{region}/builds/{build_id}"
    build: dict[str, Any] = {
        "id": build_id,
        "name": name,
        "projectId": project,
        "status": "WORKING",
        "createTime": created,
        "startTime": created,
        "logUrl": log_url,
        "logsBucket": f"gs://{number}.cloudbuild-logs.googleusercontent.com",
        "source": {
            "storageSource": {
                "bucket": f"{project}_cloudbuild",
                "object": f"source/{created[:19].replace(':', '')}-{build_id[:8]}.tgz",
            }
        },
        "steps": [dict(s) for s in resolved["steps"]],
        "images": resolved.get("images", []),
        "substitutions": user,
        "options": resolved.get("options", {}),
        "timeout": call.flag("--timeout") or resolved.get("timeout", "600s"),
        "fake": {"source": str(source), "config": str(config_path)},
    }
    if resolved.get("tags"):
        build["tags"] = resolved["tags"]
    repositories = {
        (p, *key.split("/", 1)) for p, d in state["projects"].items() for key in d["repositories"]
    }
    images = data["images"]
    # the build runs as the project's Cloud Build service account (iam.py): it must read the
    # uploaded source, write the log and push to the repositories
    account = iam.build_account(data)
    member = f"serviceAccount:{account}"
    writable = {
        (project, *key.split("/", 1))
        for key in data["repositories"]
        if iam.granted(data, member, iam.PUSH, key)
    }
    sim = cloudbuild.Simulation(
        build_id, upload, cloudbuild.Registry(project, repositories, images, writable)
    )
    storage = build["source"]["storageSource"]
    sim.log += [
        "FETCHSOURCE",
        f"Fetching storage object: gs://{storage['bucket']}/{storage['object']}",
    ]
    failure = None
    failure_type = "USER_BUILD_STEP"
    if not all(iam.granted(data, member, permission) for permission in iam.SOURCE):
        # what public reports of the mid-2024 change show (e.g. GoogleCloudPlatform/
        # bigquery-dlp-remote-function#70): the source cannot be fetched, no step runs
        denied = (
            f"{account} does not have storage.objects.list access to the Google Cloud Storage "
            "bucket. Permission 'storage.objects.list' denied on resource (or it may not exist)."
        )
        sim.log.append(f"AccessDeniedException: 403 {denied}")
        failure = f"failed to fetch the build source: {denied}"
        failure_type = "FETCH_SOURCE_FAILED"
    else:
        sim.log.append("BUILD")
    for index, step in enumerate(resolved["steps"] if failure is None else ()):
        try:
            sim.run_step(index, step)
            build["steps"][index]["status"] = "SUCCESS"
        except cloudbuild.StepFailed as exc:
            sim.log.append(f"Step #{index}: {exc}")
            build["steps"][index]["status"] = "FAILURE"
            build["steps"][index]["exitCode"] = 1
            if step.get("allowFailure"):
                sim.log.append(f"Step #{index}: failure allowed (allowFailure: true)")
                continue
            failure = (
                f'Build step failure: build step {index} "{step["name"]}" failed: step exited '
                "with non-zero status: 1"
            )
            for later in build["steps"][index + 1 :]:
                later["status"] = "CANCELLED"
            break
    if failure is None:
        for image in resolved.get("images", []):
            ref = cloudbuild.parse_reference(image)
            try:
                if ref is None:
                    raise cloudbuild.StepFailed(f"invalid image name {image!r}")
                sim.push(ref, "PUSH")
            except cloudbuild.StepFailed as exc:
                sim.log.append(f"PUSH: {exc}")
                failure = f"failed to push images: {exc}"
                break
    if not iam.granted(data, member, iam.LOGS):
        # the build runs, but its log is not written (the fix: roles/logging.logWriter,
        # https://cloud.google.com/build/docs/securing-builds/configure-user-specified-service-accounts)
        warning = (
            f"The service account running this build (projects/{project}/serviceAccounts/"
            f"{account}) does not have permission to write logs to Cloud Logging. To fix this, "
            "grant the Logs Writer (roles/logging.logWriter) role to the service account."
        )
        build["warnings"] = [{"text": warning, "priority": "WARNING"}]
        sim.log = [warning]
    finished = now()
    build["finishTime"] = finished
    build["status"] = "FAILURE" if failure else "SUCCESS"
    if failure:
        build["failureInfo"] = {"type": failure_type, "detail": failure}
        build["statusDetail"] = failure
    else:
        pushed = {}
        for tagged, digest in sim.pushed:
            pushed[tagged] = digest
        build["results"] = {
            "images": [
                {"name": tagged, "digest": digest, "pushTiming": {"startTime": finished}}
                for tagged, digest in pushed.items()
            ],
            "buildStepImages": [cloudbuild.digest_of(s["name"]) for s in resolved["steps"]],
        }
        for tagged, digest in pushed.items():
            repo = tagged.rsplit(":", 1)[0]
            images[repo].setdefault("builds", {})[digest] = build_id
    # what really happened, for the grader (hidden from describe like the rest of "fake")
    build["fake"]["built"] = list(sim.built)
    build["fake"]["pushed"] = [tagged for tagged, _ in sim.pushed]
    # how long the build takes (settings: build_seconds): describe shows it WORKING until then,
    # and a submit without --async streams its log that long
    seconds = float(state["settings"].get("build_seconds", 0) or 0)
    build["fake"]["finish_at"] = time.time() + seconds
    build["fake"]["log"] = sim.log
    data["builds"][build_id] = build
    # gcloud's submit_util and snapshot.py: the archive's size, then (when files were left out
    # and no .gcloudignore exists) the note about the default ignore file
    ignored = ""
    if upload.listing.ignored and not upload.folder.has(gcloudignore.IGNORE_FILE):
        ignored = gcloudignore.IGNORED_MESSAGE.format(log="~/.config/gcloud/logs (fake gcloud)")
    stderr = (
        f"Creating temporary archive of {len(upload.listing.files)} file(s) totalling "
        f"{_size(sum(upload.listing.files.values()))} before compression.\n"
        + ignored
        + f"Uploading tarball of [{source_arg}] to [gs://{storage['bucket']}/{storage['object']}]\n"
        f"Created [https://cloudbuild.googleapis.com/v1/{name.replace(number, project, 1)}].\n"
        f"Logs are available at [ {log_url} ].\n"
    )
    extra: dict[str, Any] = {"build_id": build_id}
    crash = int(state["settings"].get("crash_after_created", 0) or 0)
    if crash > 0:
        # gcloud dies after printing Created (e.g. "database is locked" while streaming the
        # log): the build goes on in the cloud
        state["settings"]["crash_after_created"] = crash - 1
        extra["crash_after"] = True
        return Result(stderr=stderr, code=0, extra={**extra, "hold_seconds": 0})
    if call.flag("--async"):
        # gcloud prints the build as created (queued) and returns
        queued = {**_public(build), "status": "QUEUED"}
        for key in ("finishTime", "results", "failureInfo", "statusDetail", "warnings"):
            queued.pop(key, None)
        return Result(stdout=_build_table(call, queued, "-"), stderr=stderr, extra=extra)
    extra["hold_seconds"] = seconds
    stdout = ""
    if not call.flag("--suppress-logs"):
        stdout += "-" * 29 + " REMOTE BUILD OUTPUT " + "-" * 30 + "\n"
        stdout += f'starting build "{build_id}"\n\n' + "\n".join(sim.log) + "\n"
        stdout += "PUSH\nDONE\n" if not failure else "ERROR\n"
        stdout += "-" * 80 + "\n"
    if failure:
        stderr += (
            f"\nBUILD FAILURE: {failure}\n"
            f'ERROR: (gcloud.builds.submit) build {build_id} completed with status "FAILURE"\n'
        )
        return Result(stdout=stdout, stderr=stderr, code=1, extra=extra)
    stdout += _build_table(call, _public(build), "0S")
    return Result(stdout=stdout, stderr=stderr, extra=extra)


def _build_table(call: Call, build: dict, duration: str) -> str:
    """What ``builds submit`` prints of the build it made (gcloud's table, or --format)."""
    spec = _format(call)
    if spec[0] != "default":
        return formats.render([build], spec, single=True)
    storage = build["source"]["storageSource"]
    row = [
        build["id"],
        build["createTime"][:19] + "+00:00",
        duration,
        f"gs://{storage['bucket']}/{storage['object']}",
        " ".join(build["images"]) or "-",
        build["status"],
    ]
    return formats.table([row], ["ID", "CREATE_TIME", "DURATION", "SOURCE", "IMAGES", "STATUS"])


def _public(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k != "fake"}


def _build_now(build: dict) -> dict:
    """The build as Cloud Build shows it now: WORKING (no result yet) until it finishes."""
    public = _public(build)
    if time.time() >= float(build.get("fake", {}).get("finish_at", 0)):
        return public
    public["status"] = "WORKING"
    for key in ("finishTime", "results", "failureInfo", "statusDetail"):
        public.pop(key, None)
    public["steps"] = [
        {k: v for k, v in step.items() if k not in ("status", "exitCode")}
        for step in public["steps"]
    ]
    return public


def _build(call: Call, state: dict) -> dict:
    project, data = _project(call, state)
    region = _region(call, state, "builds/region", default="global")
    _need_api(call, project, data, "cloudbuild.googleapis.com")
    build = data["builds"].get(call.positionals[0])
    if build is None or f"/locations/{region}/" not in build["name"]:
        raise GcloudError("NOT_FOUND: Requested entity was not found.", 1, call.command.dotted)
    return build


def builds_describe(call: Call, state: dict) -> Result:
    return Result(stdout=_describe_output(call, _build_now(_build(call, state))))


def builds_log(call: Call, state: dict) -> Result:
    """The build's log as far as it got (all of it once the build has finished)."""
    build = _build(call, state)
    lines = list(build.get("fake", {}).get("log", []))
    done = _build_now(build)["status"] != "WORKING"
    if not done:
        lines = lines[:2]
    body = f'starting build "{build["id"]}"\n\n' + "\n".join(lines) + "\n"
    if done:
        body += "DONE\n" if build["status"] == "SUCCESS" else "ERROR\n"
    return Result(stdout=body)


# --- Cloud Run -----------------------------------------------------------------------------


def _env_vars(call: Call, flag: str = "--set-env-vars") -> dict[str, str]:
    raw = call.flag(flag)
    if raw is None:
        return {}
    out: dict[str, str] = {}
    for item in _split_list(str(raw)):
        key, eq, value = item.partition("=")
        if not eq or not ENV_KEY_RE.match(key):
            raise GcloudError(
                f"argument {flag}: Bad syntax for dict arg: [{item}]. Please see "
                "`gcloud topic flags-file` or `gcloud topic escaping` for information on "
                "providing list or dictionary flag values with special characters.",
                2,
                call.command.dotted,
            )
        out[key] = value
    reserved = [k for k in out if k in RESERVED_ENV]
    if reserved:
        raise GcloudError(
            f"Invalid value for [{flag}]: The following reserved env names were "
            f"provided: {', '.join(reserved)}. These values are automatically set by the system.",
            1,
            call.command.dotted,
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
        raise GcloudError(
            f"Invalid resource name [{service}]. The name must use only lowercase alphanumeric "
            "characters and dashes, cannot begin or end with a dash, and cannot be longer than "
            "63 characters.",
            1,
            call.command.dotted,
        )
    if not naming.CLOUD_RUN_NAME_RE.match(service):
        # the API's own rule, stricter than gcloud's check above (Cloud Run Admin API,
        # projects.locations.services.create: "must begin with letter, and cannot end with
        # hyphen; must contain fewer than 50 characters"); the wording is the API's answer
        raise GcloudError(
            "INVALID_ARGUMENT: Violation in CreateServiceRequest.service_id: only lowercase, "
            "digits, and hyphens; must begin with letter, and cannot end with hyphen; must be "
            "less than 50 characters.",
            1,
            call.command.dotted,
        )
    project, data = _project(call, state)
    region = _region(call, state, "run/region")
    _need_api(call, project, data, "run.googleapis.com")
    image = call.flag("--image")
    if not image:
        raise GcloudError(
            "Missing required argument [--image] (fake gcloud: deploying from source is not "
            "part of the HW5 workflow; deploy the image Cloud Build pushed)",
            1,
            call.command.dotted,
        )
    ref = cloudbuild.parse_reference(str(image))
    if ref is None:
        raise GcloudError(
            f"Invalid image reference [{image}]: expected REGISTRY/PATH[:TAG|@DIGEST]",
            1,
            call.command.dotted,
        )
    env = _env_vars(call)
    key = f"{region}/{service}"
    existing = data["run"].get(key)
    old_container = existing["spec"]["template"]["spec"]["containers"][0] if existing else {}
    if call.flag("--update-env-vars") is not None:
        if call.flag("--set-env-vars") is not None:
            raise GcloudError(
                "argument --update-env-vars: At most one of --set-env-vars | --update-env-vars "
                "can be specified.",
                2,
                call.command.dotted,
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
        raise GcloudError(
            f"Invalid value for [--memory]: {memory} is outside 128Mi-32Gi", 1, call.command.dotted
        )
    for needs_cpu, above in ((2, 4 * 2**30), (4, 8 * 2**30), (6, 16 * 2**30), (8, 24 * 2**30)):
        if mem_bytes > above and cpu_count < needs_cpu:
            raise GcloudError(
                f"Invalid value for [--memory]: more than {above // 2**30}Gi of memory requires "
                f"at least {needs_cpu} CPUs (--cpu)",
                1,
                call.command.dotted,
            )
    if cpu_count >= 4 and mem_bytes < 2 * 2**30:
        raise GcloudError(
            f"Invalid value for [--cpu]: {cpu} CPUs requires at least 2Gi of memory",
            1,
            call.command.dotted,
        )
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
        raise GcloudError(
            f"min-instances ({low_n}) cannot be greater than max-instances ({high_n})",
            1,
            call.command.dotted,
        )
    if ref.ar_location is not None and state["settings"].get("require_built_images", True):
        parts = ref.ar_parts()
        owner = state["projects"].get(parts[0]) if parts else None
        digest = None
        if owner is not None:
            digest = cloudbuild.Registry(parts[0], set(), owner["images"]).lookup(ref)
        if digest is None:
            raise GcloudError(
                f"Revision '{service}-00000' is not ready and cannot serve traffic. Image "
                f"'{image}' not found.",
                1,
                call.command.dotted,
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
    # Secret Manager: --set-secrets / --update-secrets, checked as Cloud Run does (secretmanager.py)
    from .secretmanager import apply_to_service

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
    project, data = _project(call, state)
    region = _region(call, state, "run/region")
    _need_api(call, project, data, "run.googleapis.com")
    service = call.positionals[0]
    resource = data["run"].get(f"{region}/{service}")
    if resource is None:
        raise GcloudError(f"Cannot find service [{service}]", 1, call.command.dotted)
    public = _public(resource)
    spec = _format(call)
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


def ensure_project(state: dict, project_id: str) -> dict:
    data = state["projects"].setdefault(project_id, new_project(project_id))
    iam.project_policy(data)
    # the Compute Engine default service account exists (Cloud Build runs builds as it)
    account = iam.compute_account(data["number"])
    if account not in state["service_accounts"]:
        state["service_accounts"].append(account)
    return data


# --- projects describe, services enable, repository create and IAM (nox -s setup) ---------

# Roles that can be granted on an Artifact Registry repository
# (https://cloud.google.com/artifact-registry/docs/access-control#roles), and the basic roles.
REPOSITORY_ROLES = frozenset(
    {
        "roles/artifactregistry.reader",
        "roles/artifactregistry.writer",
        "roles/artifactregistry.createOnPushWriter",
        "roles/artifactregistry.repoAdmin",
        "roles/artifactregistry.createOnPushRepoAdmin",
        "roles/artifactregistry.admin",
        "roles/viewer",
        "roles/editor",
        "roles/owner",
    }
)
MEMBER_RE = re.compile(
    r"^((user|group|serviceAccount|domain|principal|principalSet):[^\s:]\S*"
    r"|allUsers|allAuthenticatedUsers)$"
)
REPOSITORY_ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
EMPTY_POLICY_ETAG = "ACAB"  # what Google returns for a resource with no policy yet


def _account(state: dict) -> str:
    return state["config"].get("core/account") or "student@example.com"


def projects_describe(call: Call, state: dict) -> Result:
    wanted = call.positionals[0]
    for project_id, data in state["projects"].items():
        if wanted in (project_id, data["number"]):
            break
    else:
        account = _account(state)
        raise GcloudError(
            f"[{account}] does not have permission to access projects instance [{wanted}] (or "
            "it may not exist): The caller does not have permission. This command is "
            f"authenticated as {account} which is the active account specified by the "
            "[core/account] property",
            1,
            call.command.dotted,
        )
    resource = {
        "createTime": data.get("createTime", "2024-01-01T00:00:00.000Z"),
        "lifecycleState": data.get("lifecycleState", "ACTIVE"),
        "name": project_id,
        "projectId": project_id,
        "projectNumber": data["number"],
    }
    return Result(stdout=_describe_output(call, resource))


def services_enable(call: Call, state: dict) -> Result:
    _project_id, data = _project(call, state)
    wanted = list(dict.fromkeys(call.positionals))
    if not wanted:
        raise GcloudError("argument SERVICE: Must be specified.", 2, call.command.dotted)
    # besides Google's APIs, the managed services of the project's API Gateway APIs
    managed = {a["managedService"] for a in data.get("apigateway", {}).get("apis", {}).values()}
    unknown = [api for api in wanted if api not in API_TITLES and api not in managed]
    if unknown:
        raise GcloudError(
            "PERMISSION_DENIED: Not found or permission denied for service(s): "
            f"{', '.join(unknown)}. (fake gcloud: it knows {', '.join(sorted(API_TITLES))})",
            1,
            call.command.dotted,
        )
    new = [api for api in wanted if api not in data["apis"]]
    billed = [api for api in new if api in BILLED_APIS]
    if billed and not data.get("billing", True):
        raise GcloudError(
            f"FAILED_PRECONDITION: Billing account for project '{data['number']}' is not found. "
            f"Billing must be enabled for activation of service(s) '{','.join(billed)}' to "
            "proceed.",
            1,
            call.command.dotted,
        )
    data["apis"] = sorted(set(data["apis"]) | set(new))
    if not new:
        return Result(extra={"enabled": []})
    operation = f"operations/acf.p2-{data['number']}-{uuid.uuid4()}"
    if call.flag("--async"):
        stderr = (
            "Asynchronous operation is in progress... Use the following command to wait for its "
            f"completion:\n gcloud beta services operations wait {operation}\n"
        )
    else:
        stderr = f'Operation "{operation}" finished successfully.\n'
    return Result(stderr=stderr, extra={"enabled": new})


def _ar_location(call: Call, state: dict) -> str:
    location = call.flag("--location") or state["config"].get("artifacts/location")
    if not location:
        raise GcloudError(
            "Error parsing [repository].\nThe [repository] resource is not properly specified."
            "\nFailed to find attribute [location]. The attribute can be set in the following "
            "ways:\n- provide the argument `--location` on the command line\n- set the "
            "property `artifacts/location`",
            1,
            call.command.dotted,
        )
    return str(location)


def artifacts_repositories_create(call: Call, state: dict) -> Result:
    project, data = _project(call, state)
    location = _ar_location(call, state)
    repository_format = call.flag("--repository-format")
    if not repository_format:
        raise GcloudError(
            "argument --repository-format: Must be specified.", 2, call.command.dotted
        )
    _need_api(call, project, data, "artifactregistry.googleapis.com")
    name = call.positionals[0]
    if not REPOSITORY_ID_RE.match(name):
        raise GcloudError(
            f"INVALID_ARGUMENT: invalid repository ID [{name}] (fake gcloud: lowercase letters, "
            "digits and hyphens, starting with a letter and ending with a letter or digit, at "
            "most 63 characters)",
            1,
            call.command.dotted,
        )
    key = f"{location}/{name}"
    if key in data["repositories"]:
        raise GcloudError("ALREADY_EXISTS: the repository already exists", 1, call.command.dotted)
    data["repositories"][key] = repository_resource(
        project,
        location,
        name,
        repository_format=str(repository_format),
        description=str(call.flag("--description") or ""),
    )
    operation = f"projects/{project}/locations/{location}/operations/{uuid.uuid4()}"
    stderr = f"Create request issued for: [{name}]\n"
    if call.flag("--async"):
        stderr += f"Check operation [{operation}] for status.\n"
    else:
        stderr += (
            f"Waiting for operation [{operation}] to complete...done.\n"
            f"Created repository [{name}].\n"
        )
    return Result(stderr=stderr, extra={"created": key})


def _repository(call: Call, state: dict) -> tuple[dict, str, str]:
    """The project data, the repository's state key and its name; NOT_FOUND when missing."""
    project, data = _project(call, state)
    location = _ar_location(call, state)
    _need_api(call, project, data, "artifactregistry.googleapis.com")
    name = call.positionals[0]
    key = f"{location}/{name}"
    if key not in data["repositories"]:
        raise GcloudError("NOT_FOUND: Requested entity was not found.", 1, call.command.dotted)
    return data, key, name


def repository_policy(data: dict, key: str) -> dict:
    """The repository's IAM policy (``{"etag": "ACAB"}`` until a binding is added)."""
    return data.setdefault("repository_iam", {}).setdefault(key, {"etag": EMPTY_POLICY_ETAG})


def add_binding(policy: dict, role: str, member: str) -> bool:
    """Add ``member`` to ``role`` as add-iam-policy-binding does; True when it changed."""
    bindings = policy.setdefault("bindings", [])
    for binding in bindings:
        if binding["role"] == role and "condition" not in binding:
            if member in binding["members"]:
                return False
            binding["members"] = sorted([*binding["members"], member])
            break
    else:
        bindings.append({"members": [member], "role": role})
        bindings.sort(key=lambda b: b["role"])
    policy["version"] = 1
    digest = hashlib.sha256(json.dumps(bindings, sort_keys=True).encode()).digest()
    policy["etag"] = base64.b64encode(digest[:8]).decode()
    return True


def artifacts_repositories_get_iam_policy(call: Call, state: dict) -> Result:
    data, key, _name = _repository(call, state)
    policy = data.get("repository_iam", {}).get(key, {"etag": EMPTY_POLICY_ETAG})
    return Result(stdout=_describe_output(call, policy))


def artifacts_repositories_add_iam_policy_binding(call: Call, state: dict) -> Result:
    member, role = iam.binding_flags(call)
    data, key, name = _repository(call, state)
    iam.check_member(call, state, member)
    iam.refuse_public(call, data, member)
    if role not in REPOSITORY_ROLES:
        raise GcloudError(
            f"INVALID_ARGUMENT: Role {role} is not supported for this resource.",
            1,
            call.command.dotted,
        )
    policy = repository_policy(data, key)
    changed = add_binding(policy, role, member)
    return Result(
        stdout=_describe_output(call, policy),
        stderr=f"Updated IAM policy for repository [{name}].\n",
        extra={"binding_added": changed},
    )


# --- api-gateway: v3's API, its configs and the gateway -------------------------------------

GATEWAY_ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


GATEWAY_API = "apigateway.googleapis.com"


def _apigateway(call: Call, project: str, data: dict) -> dict:
    """The project's API Gateway resources (older states have none yet); refused as on Google
    while the API Gateway API is not enabled in the project."""
    _need_api(call, project, data, GATEWAY_API)
    return data.setdefault("apigateway", {"apis": {}, "configs": {}, "gateways": {}})


def _not_found(call: Call, resource: str) -> GcloudError:
    """API Gateway's answer for a resource that does not exist (``projects/.../...``)."""
    return GcloudError(f"NOT_FOUND: Resource '{resource}' was not found", 1, call.command.dotted)


def _config_name(project: str, api: str, config_id: str) -> str:
    return f"projects/{project}/locations/global/apis/{api}/configs/{config_id}"


def _gateway_id(call: Call, value: str, what: str) -> str:
    if not GATEWAY_ID_RE.match(value):
        raise GcloudError(
            f"INVALID_ARGUMENT: {what} ID [{value}] must have at most 63 characters: lowercase "
            "letters, numbers or dashes, starting with a letter, without underscores",
            1,
            call.command.dotted,
        )
    return value


def api_configs_create(call: Call, state: dict) -> Result:
    project, data = _project(call, state)
    gw = _apigateway(call, project, data)
    config_id = _gateway_id(call, call.positionals[0], "API config")
    api = _gateway_id(call, call.flag("--api") or "", "API")
    spec_path = call.flag("--openapi-spec")
    if not spec_path:
        raise GcloudError(
            "Exactly one of (--grpc-files | --openapi-spec) must be specified.",
            2,
            call.command.dotted,
        )
    try:
        text = call.files.read(str(spec_path), call.cwd, flag="--openapi-spec").decode(
            "utf-8", errors="replace"
        )
    except Unreadable as exc:
        raise GcloudError(
            f"Unable to read file [{spec_path}]: {exc.reason}", 1, call.command.dotted
        ) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None
    if not isinstance(doc, dict) or str(doc.get("swagger")) != "2.0":
        raise GcloudError(
            f"INVALID_ARGUMENT: Cannot convert to service config. [{spec_path}] is not an "
            'OpenAPI 2.0 document (swagger: "2.0")',
            1,
            call.command.dotted,
        )
    key = f"{api}/{config_id}"
    if key in gw["configs"]:
        raise GcloudError(
            f"ALREADY_EXISTS: Resource '{_config_name(project, api, config_id)}' already exists",
            1,
            call.command.dotted,
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
    project, data = _project(call, state)
    gw = _apigateway(call, project, data)
    api = call.flag("--api") or ""
    config_id = call.positionals[0]
    resource = gw["configs"].get(f"{api}/{config_id}")
    if resource is None:
        raise _not_found(call, _config_name(project, api, config_id))
    public = {k: v for k, v in resource.items() if k != "openapi_spec"}
    return Result(stdout=_describe_output(call, public))


def apis_describe(call: Call, state: dict) -> Result:
    project, data = _project(call, state)
    gw = _apigateway(call, project, data)
    api = call.positionals[0]
    resource = gw["apis"].get(api)
    if resource is None:
        raise _not_found(call, f"projects/{project}/locations/global/apis/{api}")
    return Result(stdout=_describe_output(call, resource))


def _gateway_resource(call: Call, project: str, gw: dict) -> tuple[str, str, str]:
    gateway = _gateway_id(call, call.positionals[0], "Gateway")
    location = call.flag("--location")
    if not location:
        raise GcloudError(
            "Error parsing [gateway]. The [gateway] resource is not properly specified. "
            "Failed to find attribute [location].",
            1,
            call.command.dotted,
        )
    return gateway, location, f"{location}/{gateway}"


def _gateway_config(call: Call, project: str, gw: dict) -> str:
    api = call.flag("--api") or ""
    config_id = call.flag("--api-config") or ""
    if f"{api}/{config_id}" not in gw["configs"]:
        raise _not_found(call, _config_name(project, api, config_id))
    return _config_name(project, api, config_id)


def gateways_create(call: Call, state: dict) -> Result:
    project, data = _project(call, state)
    gw = _apigateway(call, project, data)
    gateway, location, key = _gateway_resource(call, project, gw)
    if location not in API_GATEWAY_LOCATIONS:
        # the regions of https://cloud.google.com/api-gateway/docs/deployment-model (the
        # wording of Google's refusal is the fake's own)
        raise GcloudError(
            f"INVALID_ARGUMENT: Location [{location}] is not supported by API Gateway (fake "
            f"gcloud: it serves {', '.join(API_GATEWAY_LOCATIONS)})",
            1,
            call.command.dotted,
        )
    if key in gw["gateways"]:
        raise GcloudError(
            f"ALREADY_EXISTS: Resource 'projects/{project}/locations/{location}/gateways/"
            f"{gateway}' already exists",
            1,
            call.command.dotted,
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
    project, data = _project(call, state)
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
    return Result(stdout=_describe_output(call, resource))
