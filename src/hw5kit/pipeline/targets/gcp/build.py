"""Cloud Build for the gcp target: ``deployment/submit_build.sh --async <image>`` for every
service at once (the builds are independent), each build ID read from gcloud's
``Created [.../builds/<id>]`` line, then followed with ``gcloud builds describe`` until it ends
(progress shown, the wait bounded), and written into ``deliverables.yaml`` as soon as its build
succeeds. A build whose ``submit`` died after printing its ID (gcloud's ``database is locked``
crash, a lost connection) is followed all the same: the build goes on in the cloud and its ID is
never lost. A failure that says Cloud Build's service account lacks a role points to
``nox -s setup``."""

from __future__ import annotations

import re
import shlex
import time
from concurrent.futures import ThreadPoolExecutor

from ...deployment import Service
from ...gcloud import GcloudTimeout, minutes, parse_json
from ...project import PipelineError, run_script, tail
from .cloud import Outcome, Part

BUILD_ID_RE = re.compile(
    r"/builds/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\]"
)
FINAL = ("SUCCESS", "FAILURE", "INTERNAL_ERROR", "TIMEOUT", "CANCELLED", "EXPIRED")
# what a build says when Cloud Build's service account lacks one of the roles setup grants
MISSING_ROLE = re.compile(
    r"does not have storage\.objects\.(list|get) access|"
    r'Permission "artifactregistry\.repositories\.uploadArtifacts" denied|'
    r"does not have permission to write logs"
)


class CloudBuild(Part):
    def build(self, names: list[str] | None = None, *, verbose: bool = False) -> int:
        self.cloud.preflight()
        services = self.config.select(names)
        self.project.log(
            f"building {', '.join(s.name for s in services)} with Cloud Build in "
            f"{self.config.project_id} ({self.config.region}); logs in {self.project.logs_dir}"
        )
        pool = ThreadPoolExecutor(max_workers=max(1, len(services)))
        with self.cloud.own_configs(), pool:
            outcomes = list(pool.map(lambda s: self._build_one(s, verbose), services))
        return self.cloud.summary("build", outcomes)

    def _build_one(self, service: Service, verbose: bool) -> Outcome:
        log_path = self.project.logs_dir / f"build-{service.name}.log"
        start = time.monotonic()
        result = run_script(
            ["bash", self.cloud.script("submit_build.sh"), "--async", service.image],
            cwd=self.project.root,
            env=self.cloud.env(),
            log_path=log_path,
            prefix=f"[{service.name}]",
            log=self.project.log,
            verbose=verbose,
            heartbeat=self.waits.heartbeat,
            timeout=self.waits.submit,
        )
        ids = BUILD_ID_RE.findall(result.output)
        if not ids:
            why = tail(result.output, 8) if result.output.strip() else f"exit {result.code}"
            if result.timed_out:
                why = (
                    f"{why}\n  submitting did not finish within {minutes(self.waits.submit)} "
                    "and printed no build ID: check your network and the size of what is "
                    "uploaded (.gcloudignore), then build again"
                )
            elif result.code == 0:
                why = "gcloud printed no build ID (Created [.../builds/ID])"
            return Outcome(service.name, False, f"{why}\n  (full log: {result.log_path})")
        build_id = ids[-1]
        if result.code != 0:
            said = [line for line in result.output.splitlines() if line.startswith("ERROR")]
            self.project.log(
                f"[{service.name}] gcloud failed after creating build {build_id} "
                f"({(said or ['exit ' + str(result.code)])[-1]}); the build goes on in the "
                "cloud: following it"
            )
        try:
            build = self._follow(service, build_id)
        except PipelineError as exc:
            return Outcome(service.name, False, f"build {build_id}: {exc}")
        status = build.get("status")
        if status != "SUCCESS":
            return Outcome(service.name, False, self._build_failure(service, build, log_path))
        self.cloud.record(service, build_id=build_id)
        warnings = " ".join(w.get("text", "") for w in build.get("warnings") or [])
        note = f"; warning: {warnings} (`nox -s setup` grants it)" if warnings else ""
        took = minutes(time.monotonic() - start)
        return Outcome(service.name, True, f"build {build_id} ({took}){note}")

    def _describe_build(self, service: Service, build_id: str) -> tuple[dict | None, str]:
        argv = [
            "gcloud",
            "builds",
            "describe",
            build_id,
            f"--project={self.config.project_id}",
            f"--region={self.config.region}",
            "--format=json",
        ]
        try:
            done = self.cloud.call(
                argv,
                timeout=self.waits.look,
                prefix=f"[{service.name}]",
                check="your network and `gcloud auth list`.",
            )
        except GcloudTimeout as exc:
            return None, str(exc)
        build = parse_json(done.stdout) if done.returncode == 0 else None
        return build, (done.stderr or done.stdout).strip()[-300:]

    def _follow(self, service: Service, build_id: str) -> dict:
        """Poll the build until it ends; progress on every change of status and every
        heartbeat; stop waiting (the build goes on) after ``waits.build``."""
        start = time.monotonic()
        last_status, last_note, failures = None, start, 0
        where = f"--region={self.config.region} --project={self.config.project_id}"
        while True:
            build, error = self._describe_build(service, build_id)
            now = time.monotonic()
            if build is None:
                failures += 1
                if failures >= 5:
                    raise PipelineError(
                        f"could not read its status 5 times in a row ({error}); follow it "
                        f"with `gcloud builds describe {build_id} {where}`"
                    )
            else:
                failures = 0
                status = str(build.get("status"))
                if status in FINAL:
                    return build
                if status != last_status:
                    self.project.log(f"[{service.name}] build {build_id}: {status}")
                    last_status, last_note = status, now
                elif now - last_note >= self.waits.heartbeat:
                    self.project.log(
                        f"[{service.name}] build {build_id} still {status} "
                        f"({minutes(now - start)}; log: {build.get('logUrl', '-')})"
                    )
                    last_note = now
            if now - start >= self.waits.build:
                raise PipelineError(
                    f"still {last_status or 'not readable'} after {minutes(self.waits.build)}: "
                    "stopped waiting (the build goes on in the cloud). Check its log in the "
                    f"console (`gcloud builds describe {build_id} {where} "
                    "--format='value(logUrl)'`) and its status (`gcloud builds describe "
                    f"{build_id} {where} --format='value(status)'`); once it is SUCCESS, record "
                    "it by running `nox -s build -- --target gcp` again (a new build) or by "
                    f"pasting {build_id} as services.{'.'.join(service.deliverable_key)}."
                    "build_id in deliverables.yaml"
                )
            time.sleep(self.waits.poll)

    def _build_failure(self, service: Service, build: dict, log_path) -> str:
        """Why the build failed: its status, detail and log's end, and the remedy when Cloud
        Build's service account lacks a role."""
        build_id = build.get("id", "?")
        argv = [
            "gcloud",
            "builds",
            "log",
            build_id,
            f"--project={self.config.project_id}",
            f"--region={self.config.region}",
        ]
        log_text = ""
        try:
            done = self.cloud.call(
                argv, timeout=self.waits.look, prefix=f"[{service.name}]", check="the console."
            )
            log_text = done.stdout if done.returncode == 0 else ""
        except GcloudTimeout:
            pass
        with log_path.open("a") as fh:
            fh.write(f"\n$ {shlex.join(argv)}\n{log_text}")
        detail = build.get("statusDetail") or (build.get("failureInfo") or {}).get("detail") or ""
        warnings = " ".join(w.get("text", "") for w in build.get("warnings") or [])
        text = f"build {build_id} ended {build.get('status')}: {detail}".rstrip(": ")
        if log_text.strip():
            text += "\n" + tail(log_text, 8)
        if warnings:
            text += f"\n  warning: {warnings}"
        if MISSING_ROLE.search(" ".join((detail, log_text, warnings))):
            text += (
                "\n  Cloud Build's service account lacks a role it needs (projects created since "
                "mid-2024 build as the Compute Engine default service account, which an "
                "organization policy may leave without any role): run `nox -s setup -- --target "
                "gcp`, which grants it roles/storage.objectViewer and roles/logging.logWriter "
                "on the project and roles/artifactregistry.writer on the repository, then build "
                "again"
            )
        return f"{text}\n  (full log: {log_path}; console: {build.get('logUrl', '-')})"
