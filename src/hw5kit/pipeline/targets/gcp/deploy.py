"""Cloud Run for the gcp target: per version, ``deploy_<backend>.sh`` with the recorded build
ID, then the backend's URL from ``gcloud run services describe ...
--format='value(status.url)'``, then ``deploy_<frontend>.sh`` with ``SERVING_URL`` set to it;
v1 and v2 go in parallel. v3: the per-model backends (in parallel), then the API gateway
(``gateway.py``), then ``deploy_frontend_v3.sh`` with ``API_GATEWAY`` set to it. After each
script: the service must be public (``iam.py``). v2's backend gets its session key from Secret
Manager (``targets/session.py``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ... import deliverables
from ...deployment import GATEWAY_SERVICE, Service
from ...gcloud import minutes
from ...project import PipelineError, run_script, tail
from ..session import CloudSessionSecret
from .cloud import Cloud, Outcome, Part
from .gateway import KEY_ENV, ApiGateway
from .iam import Access


class CloudRunDeploy(Part):
    def __init__(self, cloud: Cloud, gateway: ApiGateway, session_secret: CloudSessionSecret):
        super().__init__(cloud)
        self.gateway = gateway
        self.access = Access(cloud)
        self.session_secret = session_secret
        self.open_invoker = False  # deploy --no-invoker-iam-check

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
        self.cloud.preflight()
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
        key = self.gateway.key()
        if key is None and any(s.version == "v3" and s.kind == "frontend" for s in services):
            gw = self.config.gateway
            if gw is not None and gw.api_key:
                raise PipelineError(self.gateway.key_help())
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

        pool = ThreadPoolExecutor(max_workers=max(1, len(chains)))
        with self.cloud.own_configs(), pool:
            results = list(pool.map(run, chains.values()))
        return self.cloud.summary("deploy", [o for chain in results for o in chain])

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
                gateway_url = self.gateway.deploy(urls)
                outcomes.append(Outcome(GATEWAY_SERVICE, True, f"{gateway_url} (API gateway)"))
            except PipelineError as exc:
                outcomes.append(Outcome(GATEWAY_SERVICE, False, str(exc)))
        elif frontends:
            host = self.gateway.hostname()
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
                        urls[backend.name] = self.cloud.describe_url(backend)
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
            key = self.gateway.key() if s.version == "v3" else None
            if key:
                env[KEY_ENV] = key
        result = run_script(
            ["bash", self.cloud.script(s.deploy_script), build_id],
            cwd=self.project.root,
            env=self.cloud.env(env),
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
            url = self.cloud.describe_url(s)
            refused = self.access.public_problem(s)
        except PipelineError as exc:
            return Outcome(s.name, False, str(exc))
        opened = ""
        if refused and self.open_invoker:
            try:
                refused = self.access.open_invoker(s)
            except PipelineError as exc:
                return Outcome(s.name, False, f"deployed at {url}, but {exc}")
            opened = ", public with its Invoker IAM check off"
        if refused:
            warned = [ln.strip() for ln in result.output.splitlines() if "IAM policy" in ln]
            said = f"gcloud said: {warned[-1]}\n  " if warned else ""
            return Outcome(s.name, False, f"deployed at {url}, but {said}{refused}")
        urls[s.name] = url
        self.cloud.record(s, service_url=url)
        wired = f", {s.url_var}={env[s.url_var]}" if s.kind == "frontend" else ""
        return Outcome(s.name, True, f"{url} (image :{build_id}{wired}{opened})")
