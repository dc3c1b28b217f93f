"""``gcloud builds submit / describe / log / get-default-service-account``: the upload, the
config read as gcloud reads it, the build simulated (``simulation.py``) as the project's Cloud
Build service account (``iam.py``), and what gcloud prints meanwhile."""

from __future__ import annotations

import time
import uuid
from typing import Any

from ...confined import Folder, Unreadable
from .. import cloudbuild, docker, formats, gcloudignore, iam, simulation
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


def _parse_substitutions(call: Call, raw: str | None) -> dict[str, str]:
    """gcloud's ArgDict: KEY=VALUE,KEY=VALUE (with the ^D^ alternate delimiter syntax)."""
    if not raw:
        return {}
    pairs = split_list(raw)
    out = {}
    for item in pairs:
        key, eq, value = item.partition("=")
        if not eq:
            raise call.error(
                f"argument --substitutions: Bad syntax for dict arg: [{item}]. Please see "
                "`gcloud topic flags-file` or `gcloud topic escaping` for information on "
                "providing list or dictionary flag values with special characters.",
                2,
            )
        out[key] = value
    return out


def builds_submit(call: Call, state: dict) -> Result:
    project, data = project_of(call, state)
    region = region_of(call, state, "builds/region", default="global")
    need_api(call, project, data, "cloudbuild.googleapis.com")
    source_arg = call.positionals[0] if call.positionals else "."
    if source_arg.startswith("gs://"):
        raise call.error(
            f"could not find source [{source_arg}] (fake gcloud: SOURCE must be a local directory)"
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
        raise call.error(f"could not find source [{source_arg}]: {exc.reason}") from None
    with folder:
        try:
            raw = call.files.read(str(config_arg), call.cwd, flag="--config")
        except Unreadable as exc:
            raise call.error(f"Unable to read file [{config_arg}]: {exc.reason}") from None
        try:
            config = cloudbuild.parse_config(raw, config_path)
            resolved, user = cloudbuild.apply_substitutions(config, given, builtins)
        except cloudbuild.ConfigProblem as exc:
            raise call.error(str(exc)) from None
        try:
            upload = _upload(call, state, folder)
        except gcloudignore.IgnoreFileError as exc:
            raise call.error(str(exc)) from None
        return _run_build(call, state, project, data, region, build_id, upload, resolved, user)


def _upload(call: Call, state: dict, folder: Folder) -> simulation.Upload:
    """What gcloud uploads from the source folder: every file its ignore files keep
    (https://cloud.google.com/sdk/gcloud/reference/topic/gcloudignore; see gcloudignore.py)."""
    enabled = str(
        call.env.get("CLOUDSDK_GCLOUDIGNORE_ENABLED")
        or state["config"].get("gcloudignore/enabled")
        or "true"
    ).lower() not in ("false", "0", "no", "off")
    chooser = gcloudignore.chooser_for(folder, enabled=enabled)
    return simulation.Upload(folder, folder.listing(chooser))


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
    upload: simulation.Upload,
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
    sim = simulation.Simulation(
        build_id, upload, simulation.Registry(project, repositories, images, writable)
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
        except simulation.StepFailed as exc:
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
            ref = docker.parse_reference(image)
            try:
                if ref is None:
                    raise simulation.StepFailed(f"invalid image name {image!r}")
                sim.push(ref, "PUSH")
            except simulation.StepFailed as exc:
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
            "buildStepImages": [docker.digest_of(s["name"]) for s in resolved["steps"]],
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
        queued = {**public_view(build), "status": "QUEUED"}
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
    stdout += _build_table(call, public_view(build), "0S")
    return Result(stdout=stdout, stderr=stderr, extra=extra)


def _build_table(call: Call, build: dict, duration: str) -> str:
    """What ``builds submit`` prints of the build it made (gcloud's table, or --format)."""
    spec = output_format(call)
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


def _build_now(build: dict) -> dict:
    """The build as Cloud Build shows it now: WORKING (no result yet) until it finishes."""
    public = public_view(build)
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
    project, data = project_of(call, state)
    region = region_of(call, state, "builds/region", default="global")
    need_api(call, project, data, "cloudbuild.googleapis.com")
    build = data["builds"].get(call.positionals[0])
    if build is None or f"/locations/{region}/" not in build["name"]:
        raise call.error("NOT_FOUND: Requested entity was not found.")
    return build


def builds_describe(call: Call, state: dict) -> Result:
    return Result(stdout=describe_output(call, _build_now(_build(call, state))))


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


def builds_get_default_service_account(call: Call, state: dict) -> Result:
    project, data = project_of(call, state)
    region = region_of(call, state, "builds/region", default="global")
    need_api(call, project, data, "cloudbuild.googleapis.com")
    resource = {
        "name": f"projects/{project}/locations/{region}/defaultServiceAccount",
        "serviceAccountEmail": f"projects/{project}/serviceAccounts/{iam.build_account(data)}",
    }
    return Result(stdout=describe_output(call, resource))
