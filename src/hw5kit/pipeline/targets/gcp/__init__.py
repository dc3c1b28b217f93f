"""The gcp target: Cloud Build and Cloud Run through the rendered scripts and ``gcloud``.

One module per concern, this one joining them behind the target interface (``targets.base``):

* ``build.py``: ``submit_build.sh --async`` for every service at once, each build followed until
  it ends (a bounded wait), its ID recorded as soon as it succeeds;
* ``deploy.py``: per version, the backend's deploy script, its URL, then the frontend's with
  ``SERVING_URL`` (v1 and v2 in parallel; v3: the per-model backends, the gateway, the
  frontend);
* ``iam.py``: after each deploy script, the service must be public (``gcloud run deploy
  --allow-unauthenticated`` only warns when an organization policy refuses ``allUsers``);
* ``gateway.py``: v3's Google API Gateway and its API key;
* ``checks.py``: what ``verify`` asks gcloud about each deployed service;
* ``cloud.py``: what they share: every thread's own gcloud configuration directory, bounded
  waits, each success written into ``deliverables.yaml`` at once (atomically: a failure keeps
  the previous file plus every entry that did succeed), and the summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ... import deliverables
from ...deployment import GATEWAY_SERVICE, Service
from ...gcloud import public_access_fix
from ...project import Project
from ...report import Report
from ..base import Target
from ..session import CloudSessionSecret
from . import checks
from .build import CloudBuild
from .cloud import GCLOUD_MISSING, Cloud
from .deploy import CloudRunDeploy
from .gateway import ApiGateway

if TYPE_CHECKING:
    from ....photos import Photo

__all__ = ["GCLOUD_MISSING", "GcpTarget"]


class GcpTarget(Target):
    name = "gcp"
    uses_gcloud = True
    deploy_options = frozenset({"invoker_iam_check"})

    def __init__(self, project: Project):
        self.project = project
        self.config = project.config
        self.cloud = Cloud(project)
        self.api_gateway = ApiGateway(self.cloud)
        # v2's session key; its gcloud calls use this thread's configuration directory
        self.session_secret = CloudSessionSecret(project, env=self.cloud.env)

    def build(self, names: list[str] | None = None, *, verbose: bool = False) -> int:
        return CloudBuild(self.cloud).build(names, verbose=verbose)

    def deploy(
        self,
        names: list[str] | None = None,
        *,
        verbose: bool = False,
        invoker_iam_check: bool = True,
    ) -> int:
        """``invoker_iam_check=False``: a service an organization policy keeps private gets its
        Invoker IAM check turned off (``gcloud run services update --no-invoker-iam-check``)."""
        deploy = CloudRunDeploy(self.cloud, self.api_gateway, self.session_secret)
        return deploy.deploy(names, verbose=verbose, invoker_iam_check=invoker_iam_check)

    def gateway_key(self) -> str | None:
        """The key frontend_v3 sends when the gateway requires one: ``$API_GATEWAY_KEY``, else
        ``.hw5/gcp/gateway.key``; None when the config does not ask for keys or none is given."""
        return self.api_gateway.key()

    # -- what verify asks -- #
    def check_service(
        self, service: Service, entry: Mapping[str, Any], data: Any, report: Report, photo: Photo
    ) -> None:
        checks.check_service(self, service, entry, data, report)

    def redeploy_fix(self, service: Service) -> str:
        return (
            f"check the service's logs (gcloud run services logs read {service.cloud_run_name} "
            f"--region={self.config.region}), then `{self.command('deploy')}`"
        )

    def refusal_fix(self, service: Service) -> str | None:
        """A 403 from Cloud Run: the service is not public (an organization policy refused
        --allow-unauthenticated), the same remedy deploy stops with."""
        return public_access_fix(service.cloud_run_name, self.config.region, self.config.project_id)

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
