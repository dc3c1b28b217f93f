"""The gcp target: Cloud Build and Cloud Run through the rendered scripts and ``gcloud``.

* build: ``deployment/submit_build.sh <image>`` for every service at once (the builds are
  independent), each build ID read from gcloud's ``Created [.../builds/<id>]`` line and
  written into ``deliverables.yaml`` as soon as its build succeeds.
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

``deliverables.yaml`` is rewritten atomically after each success: a failure keeps the previous
file plus every entry that did succeed.
"""

from __future__ import annotations

import re
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .. import deliverables
from ..config import GATEWAY_SERVICE, Service
from ..project import PipelineError, Project, run_script, tail
from .session import CloudSessionSecret

BUILD_ID_RE = re.compile(
    r"/builds/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\]"
)
KEY_ENV = "API_GATEWAY_KEY"
KEY_FILE = "gateway.key"  # in .hw5/gcp/
KEY_RE = re.compile(r"^[A-Za-z0-9_-]{8,200}$")  # Google API keys: AIza + 35 of [A-Za-z0-9_-]
KEY_ID = "hw5-gateway-key"
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
        self.session_secret = CloudSessionSecret(project)

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
        done = subprocess.run(
            cmd,
            env=dict(self.project.env),
            cwd=self.project.root,
            capture_output=True,
            text=True,
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
        with ThreadPoolExecutor(max_workers=max(1, len(services))) as pool:
            outcomes = list(pool.map(lambda s: self._build_one(s, verbose), services))
        return self._summary("build", outcomes)

    def _build_one(self, service: Service, verbose: bool) -> Outcome:
        result = run_script(
            ["bash", self._script("submit_build.sh"), service.image],
            cwd=self.project.root,
            env=self.project.env,
            log_path=self.project.logs_dir / f"build-{service.name}.log",
            prefix=f"[{service.name}]",
            log=self.project.log,
            verbose=verbose,
        )
        ids = BUILD_ID_RE.findall(result.output)
        if result.code != 0 or not ids:
            why = tail(result.output, 8) if result.output.strip() else f"exit {result.code}"
            if result.code == 0:
                why = "gcloud printed no build ID (Created [.../builds/ID])"
            return Outcome(service.name, False, f"{why}\n  (full log: {result.log_path})")
        build_id = ids[-1]
        self._record(service, build_id=build_id)
        return Outcome(service.name, True, f"build {build_id} ({result.seconds:.0f} s)")

    # -- deploy -- #
    def deploy(self, names: list[str] | None = None, *, verbose: bool = False) -> int:
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

        with ThreadPoolExecutor(max_workers=max(1, len(chains))) as pool:
            results = list(pool.map(run, chains.values()))
        return self._summary("deploy", [o for chain in results for o in chain])

    # -- v3: per-model backends, the API gateway, the frontend -- #
    def _gcloud(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["gcloud", *args]
        self.project.log(f"[{GATEWAY_SERVICE}] {subprocess.list2cmdline(cmd)}")
        done = subprocess.run(
            cmd, env=dict(self.project.env), cwd=self.project.root, capture_output=True, text=True
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
            env=env,
            log_path=self.project.logs_dir / f"deploy-{s.name}.log",
            prefix=f"[{s.name}]",
            log=self.project.log,
            verbose=verbose,
        )
        if result.code != 0:
            return Outcome(
                s.name, False, f"{tail(result.output, 8)}\n  (full log: {result.log_path})"
            )
        try:
            url = self.describe_url(s)
        except PipelineError as exc:
            return Outcome(s.name, False, str(exc))
        urls[s.name] = url
        self._record(s, service_url=url)
        wired = f", {s.url_var}={env[s.url_var]}" if s.kind == "frontend" else ""
        return Outcome(s.name, True, f"{url} (image :{build_id}{wired})")

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
