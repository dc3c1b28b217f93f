"""The gcp target: Cloud Build and Cloud Run through the rendered scripts and ``gcloud``.

* build: ``deployment/submit_build.sh --async <image>`` for every service at once (the builds
  are independent), each build ID read from gcloud's ``Created [.../builds/<id>]`` line, then
  followed with ``gcloud builds describe`` until it ends (progress shown, the wait bounded), and
  written into ``deliverables.yaml`` as soon as its build succeeds. A build whose ``submit``
  died after printing its ID (gcloud's ``database is locked`` crash, a lost connection) is
  followed all the same: the build goes on in the cloud and its ID is never lost. A failure
  that says Cloud Build's service account lacks a role points to ``nox -s setup``.
* deploy: per version, ``deploy_<backend>.sh`` with the recorded build ID, then the backend's
  URL from ``gcloud run services describe ... --format='value(status.url)'``, then
  ``deploy_<frontend>.sh`` with ``SERVING_URL`` set to it; v1 and v2 go in parallel.

* v3: the per-model backends (in parallel), then the API gateway: ``openapi_v3.yaml`` rendered
  again with their Cloud Run URLs (``.hw5/gcp/openapi_v3.yaml``), ``gcloud api-gateway
  api-configs create`` (a config ID naming the document's content, so an unchanged document
  reuses its config), ``gateways create`` (or ``update`` when it exists), its
  ``defaultHostname`` recorded as ``https://<host>`` in ``services.v3.gateway_url``; then
  ``deploy_frontend_v3.sh`` with ``API_GATEWAY`` set to it.

* API keys (``gateway.api_key: true``): the managed service of the API is enabled in the project
  (``gcloud services enable <managedService>``, as API Gateway's docs require for keys), and
  ``frontend_v3`` gets the key as ``API_GATEWAY_KEY``, read at deploy time from the environment
  variable ``API_GATEWAY_KEY``, else from ``.hw5/gcp/gateway.key`` (git-ignored); never written
  into a committed file or ``deliverables.yaml``. Without one, deploy stops before changing
  anything and says how to create one (``gcloud services api-keys create --api-target=...``).

* Every deploy script is followed by a look at the service's IAM policy: ``gcloud run deploy
  --allow-unauthenticated`` only warns when an organization policy refuses ``allUsers``, so a
  service that is not public stops its chain with the remedy (``--no-invoker-iam-check``).

Every thread that calls gcloud gets its own configuration directory (``gcloud.ConfigDirs``:
gcloud does not support concurrent invocations sharing one), and every wait is bounded
(``gcloud.Waits``) with a message saying what to check.

``deliverables.yaml`` is rewritten atomically after each success: a failure keeps the previous
file plus every entry that did succeed.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .. import deliverables
from ..deployment import GATEWAY_SERVICE, Service
from ..gcloud import (
    ConfigDirs,
    GcloudTimeout,
    call,
    is_public,
    minutes,
    parse_json,
    public_access_fix,
    waits,
)
from ..project import PipelineError, Project, run_script, tail
from .session import CloudSessionSecret

BUILD_ID_RE = re.compile(
    r"/builds/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\]"
)
KEY_ENV = "API_GATEWAY_KEY"
KEY_FILE = "gateway.key"  # in .hw5/gcp/
KEY_RE = re.compile(r"^[A-Za-z0-9_-]{8,200}$")  # Google API keys: AIza + 35 of [A-Za-z0-9_-]
KEY_ID = "hw5-gateway-key"
FINAL = ("SUCCESS", "FAILURE", "INTERNAL_ERROR", "TIMEOUT", "CANCELLED", "EXPIRED")
# what a build says when Cloud Build's service account lacks one of the roles setup grants
MISSING_ROLE = re.compile(
    r"does not have storage\.objects\.(list|get) access|"
    r'Permission "artifactregistry\.repositories\.uploadArtifacts" denied|'
    r"does not have permission to write logs"
)
GCLOUD_MISSING = (
    "gcloud is not on PATH: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/"
    "install), run `gcloud auth login`, then `nox -s check_prereq`"
)


@dataclass
class Outcome:
    service: str
    ok: bool
    detail: str


class GcpTarget:
    name = "gcp"

    def __init__(self, project: Project):
        self.project = project
        self.config = project.config
        self._lock = threading.Lock()
        self.waits = waits(project.env)
        self._configs: ConfigDirs | None = None
        self.open_invoker = False  # deploy --no-invoker-iam-check
        # v2's session key; its gcloud calls use this thread's configuration directory
        self.session_secret = CloudSessionSecret(project, env=self._env)

    def _env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment (``base``, else the project's) for a gcloud call from this thread:
        its own configuration directory while build or deploy runs (concurrent gcloud calls
        must not share one)."""
        env = dict(self.project.env if base is None else base)
        return self._configs.env(env) if self._configs is not None else env

    def _call(self, argv: list[str], *, timeout: float, prefix: str, check: str):
        return call(
            argv,
            env=self._env(),
            cwd=self.project.root,
            timeout=timeout,
            heartbeat=self.waits.heartbeat,
            log=self.project.log,
            prefix=prefix,
            check_hint=check,
        )

    # -- helpers -- #
    def _preflight(self) -> None:
        if self.project.which("gcloud") is None:
            raise PipelineError(GCLOUD_MISSING)
        self.project.require_rendered()
        deliverables.load_for_update(self.project.deliverables_path)

    def _record(self, service: Service, **fields: str | None) -> None:
        with self._lock:
            deliverables.update(
                self.project.deliverables_path, {service.deliverable_key: fields}, target="gcp"
            )

    def _script(self, name: str) -> str:
        return str(self.project.root / "deployment" / name)

    def describe_url(self, service: Service) -> str:
        cmd = [
            "gcloud",
            "run",
            "services",
            "describe",
            service.cloud_run_name,
            f"--project={self.config.project_id}",
            f"--region={self.config.region}",
            "--format=value(status.url)",
        ]
        done = self._call(
            cmd,
            timeout=self.waits.look,
            prefix=f"[{service.name}]",
            check="your network and `gcloud auth list`, then run deploy again.",
        )
        url = done.stdout.strip()
        if done.returncode != 0 or not url.startswith("https://"):
            raise PipelineError(
                f"could not read the URL of Cloud Run service {service.cloud_run_name}: "
                f"{(done.stderr or done.stdout).strip() or 'empty answer'}"
            )
        return url

    def _summary(self, what: str, outcomes: list[Outcome]) -> int:
        log = self.project.log
        failed = [o for o in outcomes if not o.ok]
        log(f"{what}: {len(outcomes) - len(failed)} of {len(outcomes)} succeeded")
        for o in outcomes:
            log(f"  {'ok ' if o.ok else 'FAILED'} {o.service}: {o.detail}")
        if failed:
            log(
                f"{self.project.deliverables_path.name} kept the previous values for the "
                "failed entries and records every success"
            )
        return 1 if failed else 0

    # -- the gateway's API key -- #
    @property
    def key_path(self):
        return self.project.state_dir / KEY_FILE

    def gateway_key(self) -> str | None:
        """The key frontend_v3 sends when the gateway requires one: ``$API_GATEWAY_KEY``, else
        ``.hw5/gcp/gateway.key``; None when the config does not ask for keys or none is given."""
        gw = self.config.gateway
        if gw is None or not gw.api_key:
            return None
        key = (self.project.env.get(KEY_ENV) or "").strip()
        if not key and self.key_path.is_file():
            key = self.key_path.read_text().strip()
        if key and not KEY_RE.match(key):
            where = KEY_ENV if self.project.env.get(KEY_ENV) else str(self.key_path)
            raise PipelineError(
                f"the API key in {where} is not an API key (letters, digits, - and _ only); "
                "paste the keyString `gcloud services api-keys get-key-string` prints"
            )
        return key or None

    def key_help(self) -> str:
        """How to create a key restricted to the gateway's managed service, and hand it over."""
        gw = self.config.gateway
        assert gw is not None
        p = f"--project={self.config.project_id}"
        return (
            f"gateway.api_key is true in {self.config.source}: frontend_v3 needs an API key for "
            f"the gateway, and none was given (${KEY_ENV} is unset and {self.key_path} does "
            "not exist). Create one restricted to the gateway's API (its managed service exists "
            "once `nox -s deploy -- --target gcp backend_v3` has created the API; `nox -s "
            "setup` enables the API Keys API), then give it to deploy:\n"
            f"  MANAGED=$(gcloud api-gateway apis describe {gw.api_id} {p} "
            "--format='value(managedService)')\n"
            f"  gcloud services api-keys create --key-id={KEY_ID} --display-name='HW5 API "
            f"gateway' --api-target=service=$MANAGED {p}\n"
            f"  export {KEY_ENV}=$(gcloud services api-keys get-key-string {KEY_ID} {p} "
            "--format='value(keyString)')\n"
            f"or write the key into {self.key_path} (git ignores .hw5/); it is never written "
            "into deployment/ or deliverables.yaml. Then run deploy again."
        )

    # -- build -- #
    def build(self, names: list[str] | None = None, *, verbose: bool = False) -> int:
        self._preflight()
        services = self.config.select(names)
        self.project.log(
            f"building {', '.join(s.name for s in services)} with Cloud Build in "
            f"{self.config.project_id} ({self.config.region}); logs in {self.project.logs_dir}"
        )
        with ConfigDirs(self.project.env) as self._configs:
            try:
                with ThreadPoolExecutor(max_workers=max(1, len(services))) as pool:
                    outcomes = list(pool.map(lambda s: self._build_one(s, verbose), services))
            finally:
                self._configs = None
        return self._summary("build", outcomes)

    def _build_one(self, service: Service, verbose: bool) -> Outcome:
        log_path = self.project.logs_dir / f"build-{service.name}.log"
        start = time.monotonic()
        result = run_script(
            ["bash", self._script("submit_build.sh"), "--async", service.image],
            cwd=self.project.root,
            env=self._env(),
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
        self._record(service, build_id=build_id)
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
            done = self._call(
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
            done = self._call(
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

    # -- deploy -- #
    def deploy(
        self,
        names: list[str] | None = None,
        *,
        verbose: bool = False,
        invoker_iam_check: bool = True,
    ) -> int:
        """``invoker_iam_check=False``: a service an organization policy keeps private gets its
        Invoker IAM check turned off (``gcloud run services update --no-invoker-iam-check``)."""
        self.open_invoker = not invoker_iam_check
        self._preflight()
        services = self.config.select(names)
        current = deliverables.load_for_update(self.project.deliverables_path)
        missing = []
        for s in services:
            build_id = deliverables.entry(current, *s.deliverable_key).get("build_id")
            if not build_id or not deliverables.UUID_RE.match(str(build_id)):
                missing.append(s)
        if missing:
            raise PipelineError(
                "no build ID recorded for "
                + ", ".join(
                    f"{s.name} (services.{'.'.join(s.deliverable_key)}.build_id)" for s in missing
                )
                + f" in {self.project.deliverables_path.name}: run `nox -s build -- --target gcp`"
                " first"
            )
        key = self.gateway_key()
        if key is None and any(s.version == "v3" and s.kind == "frontend" for s in services):
            gw = self.config.gateway
            if gw is not None and gw.api_key:
                raise PipelineError(self.key_help())
        chains: dict[str, list[Service]] = {}
        for s in sorted(services, key=lambda s: s.kind != "backend"):
            chains.setdefault(s.version, []).append(s)
        self.project.log(
            f"deploying {', '.join(s.name for s in services)} to Cloud Run in "
            f"{self.config.project_id} ({self.config.region})"
        )

        def run(chain: list[Service]) -> list[Outcome]:
            if chain[0].version == "v3":
                return self._deploy_v3(chain, current, verbose)
            return self._deploy_chain(chain, current, verbose)

        with ConfigDirs(self.project.env) as self._configs:
            try:
                with ThreadPoolExecutor(max_workers=max(1, len(chains))) as pool:
                    results = list(pool.map(run, chains.values()))
            finally:
                self._configs = None
        return self._summary("deploy", [o for chain in results for o in chain])

    # -- v3: per-model backends, the API gateway, the frontend -- #
    def _gcloud(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["gcloud", *args]
        self.project.log(f"[{GATEWAY_SERVICE}] {subprocess.list2cmdline(cmd)}")
        gw = self.config.gateway
        done = self._call(
            cmd,
            timeout=self.waits.gateway,
            prefix=f"[{GATEWAY_SERVICE}]",
            check=(
                "the API Gateway page of the console (https://console.cloud.google.com/"
                f"api-gateway?project={self.config.project_id}) or `gcloud api-gateway "
                f"gateways describe {gw.gateway_id if gw else 'GATEWAY'} "
                f"--location={self.config.gateway_location} --project="
                f"{self.config.project_id}`; when it is ACTIVE, run deploy again."
            ),
        )
        if check and done.returncode != 0:
            said = (done.stderr or done.stdout).strip()
            hint = ""
            if "apigateway.googleapis.com" in said and "disabled" in said:
                hint = (
                    f"\nThe API Gateway API is not enabled in {self.config.project_id}: run "
                    "`nox -s setup -- --target gcp` (with v3 in deployment.yaml it enables "
                    "apigateway, servicemanagement and servicecontrol.googleapis.com), then "
                    "deploy again."
                )
            raise PipelineError(f"{' '.join(args[:3])} failed: {said[-600:]}{hint}")
        return done

    def gateway_hostname(self) -> str | None:
        gw = self.config.gateway
        if gw is None:
            return None
        done = self._gcloud(
            "api-gateway",
            "gateways",
            "describe",
            gw.gateway_id,
            f"--location={self.config.gateway_location}",
            f"--project={self.config.project_id}",
            "--format=value(defaultHostname)",
            check=False,
        )
        host = done.stdout.strip()
        return host if done.returncode == 0 and host else None

    def deploy_gateway(self, urls: dict[str, str]) -> str:
        """Create the API config from the document with the backends' URLs and point the
        gateway at it; return the gateway's https URL."""
        from ..render import render_openapi

        gw = self.config.gateway
        assert gw is not None
        for b in self.config.v3_backends():
            if b.name not in urls:
                urls[b.name] = self.describe_url(b)
        text = render_openapi(
            self.config,
            self.project.root / "templates",
            {b.name: urls[b.name] for b in self.config.v3_backends()},
        )
        spec = self.project.state_dir / "openapi_v3.yaml"
        deliverables.write_atomic(spec, text)
        config_id = gw.config_id(text)
        project = f"--project={self.config.project_id}"
        exists = self._gcloud(
            "api-gateway",
            "api-configs",
            "describe",
            config_id,
            f"--api={gw.api_id}",
            project,
            "--format=value(name)",
            check=False,
        )
        if exists.returncode != 0:
            self._gcloud(
                "api-gateway",
                "api-configs",
                "create",
                config_id,
                f"--api={gw.api_id}",
                f"--openapi-spec={spec}",
                project,
            )
        if gw.api_key:
            self.enable_managed_service()
        verb = "update" if self.gateway_hostname() else "create"
        self._gcloud(
            "api-gateway",
            "gateways",
            verb,
            gw.gateway_id,
            f"--api={gw.api_id}",
            f"--api-config={config_id}",
            f"--location={self.config.gateway_location}",
            project,
        )
        host = self.gateway_hostname()
        if not host:
            raise PipelineError(f"the gateway {gw.gateway_id} has no defaultHostname")
        url = f"https://{host}"
        with self._lock:
            deliverables.update(
                self.project.deliverables_path, {}, target="gcp", gateway_url=("v3", url)
            )
        return url

    def enable_managed_service(self) -> None:
        """API keys work only once the API's managed service is enabled in the project."""
        gw = self.config.gateway
        assert gw is not None
        project = f"--project={self.config.project_id}"
        managed = self._gcloud(
            "api-gateway", "apis", "describe", gw.api_id, project, "--format=value(managedService)"
        ).stdout.strip()
        if not managed:
            raise PipelineError(f"the API {gw.api_id} has no managedService")
        enabled = self._gcloud(
            "services", "list", "--enabled", project, "--format=value(config.name)"
        ).stdout.split()
        if managed not in enabled:
            self._gcloud("services", "enable", managed, project)

    def _deploy_v3(self, chain: list[Service], current, verbose: bool) -> list[Outcome]:
        urls: dict[str, str] = {}
        backends = [s for s in chain if s.kind == "backend"]
        frontends = [s for s in chain if s.kind == "frontend"]
        with ThreadPoolExecutor(max_workers=max(1, len(backends))) as pool:
            outcomes = list(
                pool.map(lambda s: self._deploy_one(s, current, urls, verbose), backends)
            )
        gateway_url = None
        if any(not o.ok for o in outcomes):
            outcomes.append(Outcome(GATEWAY_SERVICE, False, "skipped: a v3 backend failed"))
        elif backends:
            try:
                gateway_url = self.deploy_gateway(urls)
                outcomes.append(Outcome(GATEWAY_SERVICE, True, f"{gateway_url} (API gateway)"))
            except PipelineError as exc:
                outcomes.append(Outcome(GATEWAY_SERVICE, False, str(exc)))
        elif frontends:
            host = self.gateway_hostname()
            gateway_url = f"https://{host}" if host else None
        for s in frontends:
            if gateway_url is None:
                outcomes.append(
                    Outcome(s.name, False, "skipped: no API gateway (deploy backend_v3 first)")
                )
                continue
            urls[s.backend or ""] = gateway_url
            outcomes.append(self._deploy_one(s, current, urls, verbose))
        return outcomes

    def _deploy_chain(self, chain: list[Service], current, verbose: bool) -> list[Outcome]:
        outcomes: list[Outcome] = []
        urls: dict[str, str] = {}
        for s in chain:
            if s.kind == "frontend":
                backend = self.config.service(s.backend)
                if backend.name not in urls:
                    if any(o.service == backend.name for o in outcomes):
                        outcomes.append(Outcome(s.name, False, f"skipped: {backend.name} failed"))
                        continue
                    try:
                        urls[backend.name] = self.describe_url(backend)
                    except PipelineError as exc:
                        outcomes.append(Outcome(s.name, False, f"{exc}; deploy {backend.name}"))
                        continue
            outcome = self._deploy_one(s, current, urls, verbose)
            outcomes.append(outcome)
        return outcomes

    def _deploy_one(self, s: Service, current, urls: dict[str, str], verbose: bool) -> Outcome:
        build_id = str(deliverables.entry(current, *s.deliverable_key)["build_id"])
        if s.kind == "backend" and s.version == "v2":
            try:  # its script passes the Secret Manager secret as SECRET_KEY
                self.session_secret.ensure()
            except PipelineError as exc:
                return Outcome(s.name, False, str(exc))
        env = dict(self.project.env, BUILD_ID=build_id)
        env.pop("SERVING_URL", None)
        env.pop("API_GATEWAY", None)
        env.pop(KEY_ENV, None)
        if s.kind == "frontend":
            env[s.url_var] = urls[s.backend or ""]
            key = self.gateway_key() if s.version == "v3" else None
            if key:
                env[KEY_ENV] = key
        result = run_script(
            ["bash", self._script(s.deploy_script), build_id],
            cwd=self.project.root,
            env=self._env(env),
            log_path=self.project.logs_dir / f"deploy-{s.name}.log",
            prefix=f"[{s.name}]",
            log=self.project.log,
            verbose=verbose,
            heartbeat=self.waits.heartbeat,
            timeout=self.waits.deploy,
        )
        if result.timed_out:
            return Outcome(
                s.name,
                False,
                f"{tail(result.output, 4)}\n  the deploy did not finish within "
                f"{minutes(self.waits.deploy)} and was stopped (Cloud Run goes on). Check the "
                f"revision: `gcloud run services describe {s.cloud_run_name} "
                f"--region={self.config.region} --project={self.config.project_id}` and its "
                f"logs: `gcloud run services logs read {s.cloud_run_name} "
                f"--region={self.config.region}`; then deploy again  (full log: "
                f"{result.log_path})",
            )
        if result.code != 0:
            return Outcome(
                s.name, False, f"{tail(result.output, 8)}\n  (full log: {result.log_path})"
            )
        try:
            url = self.describe_url(s)
            refused = self.public_problem(s)
        except PipelineError as exc:
            return Outcome(s.name, False, str(exc))
        opened = ""
        if refused and self.open_invoker:
            try:
                refused = self._open_invoker(s)
            except PipelineError as exc:
                return Outcome(s.name, False, f"deployed at {url}, but {exc}")
            opened = ", public with its Invoker IAM check off"
        if refused:
            warned = [ln.strip() for ln in result.output.splitlines() if "IAM policy" in ln]
            said = f"gcloud said: {warned[-1]}\n  " if warned else ""
            return Outcome(s.name, False, f"deployed at {url}, but {said}{refused}")
        urls[s.name] = url
        self._record(s, service_url=url)
        wired = f", {s.url_var}={env[s.url_var]}" if s.kind == "frontend" else ""
        return Outcome(s.name, True, f"{url} (image :{build_id}{wired}{opened})")

    def _open_invoker(self, s: Service) -> str:
        """Turn the service's Invoker IAM check off (the documented way to a public service
        under domain-restricted sharing); "" once it is public."""
        argv = [
            "gcloud",
            "run",
            "services",
            "update",
            s.cloud_run_name,
            f"--project={self.config.project_id}",
            f"--region={self.config.region}",
            "--no-invoker-iam-check",
        ]
        self.project.log(f"[{s.name}] not public (allUsers refused): {shlex.join(argv)}")
        done = self._call(
            argv,
            timeout=self.waits.deploy,
            prefix=f"[{s.name}]",
            check=f"`gcloud run services describe {s.cloud_run_name} "
            f"--region={self.config.region}`, then deploy again.",
        )
        if done.returncode != 0:
            raise PipelineError(
                "turning its Invoker IAM check off failed: "
                f"{(done.stderr or done.stdout).strip()[-400:]}\n  "
                + public_access_fix(s.cloud_run_name, self.config.region, self.config.project_id)
            )
        return self.public_problem(s)

    def public_problem(self, s: Service) -> str:
        """ "" when anyone may invoke the service, else the remedy: after
        ``--allow-unauthenticated`` its IAM policy must let allUsers invoke it, or its Invoker
        IAM check must be off."""
        where = [f"--project={self.config.project_id}", f"--region={self.config.region}"]
        looks = {}
        for what, argv in (
            ("policy", ["gcloud", "run", "services", "get-iam-policy", s.cloud_run_name]),
            ("service", ["gcloud", "run", "services", "describe", s.cloud_run_name]),
        ):
            done = self._call(
                [*argv, *where, "--format=json"],
                timeout=self.waits.look,
                prefix=f"[{s.name}]",
                check="your network and `gcloud auth list`, then run deploy again.",
            )
            if done.returncode != 0:
                raise PipelineError(
                    f"could not read the {what} of Cloud Run service {s.cloud_run_name}: "
                    f"{(done.stderr or done.stdout).strip()[-400:]}"
                )
            looks[what] = parse_json(done.stdout)
            if what == "policy" and is_public(looks["policy"], None):
                return ""
        if is_public(looks["policy"], looks["service"]):
            return ""
        return public_access_fix(s.cloud_run_name, self.config.region, self.config.project_id)

    # -- nothing runs locally -- #
    def stop(self) -> int:
        self.project.log(
            "the gcp target starts nothing on this machine; to remove a Cloud Run service: "
            "gcloud run services delete SERVICE --region=" + self.config.region
        )
        return 0

    def status(self) -> int:
        data = deliverables.load_for_update(self.project.deliverables_path)
        for s in self.config.services:
            e = deliverables.entry(data, *s.deliverable_key)
            self.project.log(
                f"{s.name:30} build {e.get('build_id') or '-':36}  {e.get('service_url') or '-'}"
            )
        if self.config.v3_backends():
            gateway = deliverables.gateway_url(data) or "-"
            self.project.log(f"{GATEWAY_SERVICE:30} {'':42}  {gateway}")
        return 0
