"""Google API Gateway for the gcp target (v3): ``openapi_v3.yaml`` rendered again with the
per-model backends' Cloud Run URLs (``.hw5/gcp/openapi_v3.yaml``), ``gcloud api-gateway
api-configs create`` (a config ID naming the document's content, so an unchanged document reuses
its config), ``gateways create`` (or ``update`` when it exists), its ``defaultHostname``
recorded as ``https://<host>`` in ``services.v3.gateway_url``.

API keys (``gateway.api_key: true``): the managed service of the API is enabled in the project
(``gcloud services enable <managedService>``, as API Gateway's docs require for keys), and
``frontend_v3`` gets the key as ``API_GATEWAY_KEY``, read at deploy time from the environment
variable ``API_GATEWAY_KEY``, else from ``.hw5/gcp/gateway.key`` (git-ignored); never written
into a committed file or ``deliverables.yaml``. Without one, deploy stops before changing
anything and says how to create one (``gcloud services api-keys create --api-target=...``).
"""

from __future__ import annotations

import re
import subprocess

from ... import deliverables
from ...deployment import GATEWAY_SERVICE
from ...project import PipelineError
from ...render import render_openapi
from .cloud import Part

KEY_ENV = "API_GATEWAY_KEY"
KEY_FILE = "gateway.key"  # in .hw5/gcp/
KEY_RE = re.compile(r"^[A-Za-z0-9_-]{8,200}$")  # Google API keys: AIza + 35 of [A-Za-z0-9_-]
KEY_ID = "hw5-gateway-key"


class ApiGateway(Part):
    # -- the API key -- #
    @property
    def key_path(self):
        return self.project.state_dir / KEY_FILE

    def key(self) -> str | None:
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

    def gcloud(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["gcloud", *args]
        self.project.log(f"[{GATEWAY_SERVICE}] {subprocess.list2cmdline(cmd)}")
        gw = self.config.gateway
        done = self.cloud.call(
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

    def hostname(self) -> str | None:
        gw = self.config.gateway
        if gw is None:
            return None
        done = self.gcloud(
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

    def deploy(self, urls: dict[str, str]) -> str:
        """Create the API config from the document with the backends' URLs and point the
        gateway at it; return the gateway's https URL."""
        gw = self.config.gateway
        assert gw is not None
        for b in self.config.v3_backends():
            if b.name not in urls:
                urls[b.name] = self.cloud.describe_url(b)
        text = render_openapi(
            self.config,
            self.project.root / "templates",
            {b.name: urls[b.name] for b in self.config.v3_backends()},
        )
        spec = self.project.state_dir / "openapi_v3.yaml"
        deliverables.write_atomic(spec, text)
        config_id = gw.config_id(text)
        project = f"--project={self.config.project_id}"
        exists = self.gcloud(
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
            self.gcloud(
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
        verb = "update" if self.hostname() else "create"
        self.gcloud(
            "api-gateway",
            "gateways",
            verb,
            gw.gateway_id,
            f"--api={gw.api_id}",
            f"--api-config={config_id}",
            f"--location={self.config.gateway_location}",
            project,
        )
        host = self.hostname()
        if not host:
            raise PipelineError(f"the gateway {gw.gateway_id} has no defaultHostname")
        url = f"https://{host}"
        with self.cloud.lock:
            deliverables.update(
                self.project.deliverables_path, {}, target="gcp", gateway_url=("v3", url)
            )
        return url

    def enable_managed_service(self) -> None:
        """API keys work only once the API's managed service is enabled in the project."""
        gw = self.config.gateway
        assert gw is not None
        project = f"--project={self.config.project_id}"
        managed = self.gcloud(
            "api-gateway", "apis", "describe", gw.api_id, project, "--format=value(managedService)"
        ).stdout.strip()
        if not managed:
            raise PipelineError(f"the API {gw.api_id} has no managedService")
        enabled = self.gcloud(
            "services", "list", "--enabled", project, "--format=value(config.name)"
        ).stdout.split()
        if managed not in enabled:
            self.gcloud("services", "enable", managed, project)
