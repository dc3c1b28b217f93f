"""verify's provenance checks on the gcp target (``GcpTarget.check_service``), asked of gcloud
(read-only): every build ID exists, succeeded and pushed the service's image; every Cloud Run
service runs ``<repository>/<image>:<build id>`` on the configured port, answers at the recorded
URL, is public (its IAM policy lets allUsers invoke it, or its Invoker IAM check is off:
``--allow-unauthenticated`` only warns when an organization policy refuses it), and frontends
have ``SERVING_URL`` = their backend's URL (either of Cloud Run's two URL forms)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...deployment import Service
from ...gcloud import INVOKER_IAM_DISABLED, is_public, public_access_fix
from ...project import Project
from ...report import Report

if TYPE_CHECKING:
    from . import GcpTarget


def gcloud_json(project: Project, *args: str) -> tuple[dict | None, str]:
    """``gcloud ARGS --format=json`` (read-only), parsed; or None and the first error line."""
    cmd = ["gcloud", *args, f"--project={project.config.project_id}", "--format=json"]
    try:
        done = subprocess.run(
            cmd,
            env=dict(project.env),
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        errors = [line for line in lines if line.startswith("ERROR")]
        return None, (errors or lines or [f"exit {done.returncode}"])[0]
    try:
        return json.loads(done.stdout), ""
    except ValueError:
        return None, "gcloud printed something that is not JSON"


def check_service(
    target: GcpTarget, s: Service, entry: Mapping[str, Any], data: Any, report: Report
) -> None:
    project, config = target.project, target.config
    if project.which("gcloud") is None:
        report.note("gcloud is not on PATH: the Cloud Build and Cloud Run checks were skipped")
        return
    where = report.where(s)
    build_id = str(entry["build_id"])
    image = config.image_uri(s, build_id)
    build, error = gcloud_json(project, "builds", "describe", build_id, f"--region={config.region}")
    if build is None:
        report.add(
            where,
            f"build {build_id}",
            False,
            f"not found in {config.project_id} ({config.region}): {error}",
            "paste the ID of the build that made this service's image (gcloud builds list "
            f"--region={config.region}), or run `{target.command('build')}`",
        )
    else:
        status = build.get("status")
        pushed = [i.get("name") for i in (build.get("results") or {}).get("images", [])]
        ok = status == "SUCCESS" and image in pushed
        detail = f"status {status}" + ("" if image in pushed else f"; did not push {image}")
        report.add(
            where,
            f"build {build_id}",
            ok,
            detail + (f", pushed {image}" if ok else ""),
            f"this build did not make {s.image}: record the build of {s.image} "
            f"({target.command('build')})",
        )
    service, error = gcloud_json(
        project, "run", "services", "describe", s.cloud_run_name, f"--region={config.region}"
    )
    if service is None:
        report.add(
            where,
            f"Cloud Run service {s.cloud_run_name}",
            False,
            error,
            f"run `{target.command('deploy')}`",
        )
        return
    container = (((service.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or [{}]
    running = container[0].get("image")
    report.add(
        where,
        f"Cloud Run service {s.cloud_run_name} image",
        running == image,
        f"runs {running}",
        f"deliverables say build {build_id}, so it should run {image}: redeploy "
        f"({target.command('deploy')}) or record the build it runs",
    )
    url = ((service.get("status") or {}).get("url") or "").rstrip("/")
    recorded = str(entry["service_url"]).rstrip("/")
    report.add(
        where,
        "service URL",
        url == recorded,
        f"Cloud Run answers at {url}" + ("" if url == recorded else f", recorded {recorded}"),
        f"record the URL gcloud run services describe prints ({target.command('deploy')})",
    )
    # --allow-unauthenticated only warns when an organization policy refuses allUsers:
    # the service must let anyone invoke it (allUsers, or its Invoker IAM check off)
    policy, error = gcloud_json(
        project, "run", "services", "get-iam-policy", s.cloud_run_name, f"--region={config.region}"
    )
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    public = policy is not None and is_public(policy, service)
    how = (
        "its Invoker IAM check is off"
        if str(annotations.get(INVOKER_IAM_DISABLED, "")).lower() == "true"
        else "allUsers may invoke it"
    )
    report.add(
        where,
        "public access",
        public,
        how if public else (error or "allUsers may not invoke it (IAM policy)"),
        public_access_fix(s.cloud_run_name, config.region, config.project_id),
    )
    port = ((container[0].get("ports") or [{}])[0]).get("containerPort")
    report.add(
        where,
        "port",
        port == config.serving_port,
        f"container port {port}",
        f"deploy with --port={config.serving_port}",
    )
    if s.kind == "frontend":
        env = {e.get("name"): e.get("value") for e in container[0].get("env") or []}
        target.check_wiring(report, s, env, data)
