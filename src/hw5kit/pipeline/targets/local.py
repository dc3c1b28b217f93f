"""The local target (the default): the whole pipeline on this machine, no cloud, no network.

* build: checks the environment can serve (gunicorn, Streamlit, torch, the apps), bakes every
  backend's model weights into ``weights/`` (the local ``TORCH_HOME``, as the image build bakes
  them into the image), and records one build per service (a UUID, like a Cloud Build ID) in
  ``.hw5/local/builds.json`` and ``deliverables.local.yaml``.
* deploy: starts each backend under gunicorn and each frontend under Streamlit on free
  127.0.0.1 ports (a service keeps its port across redeploys when it is free), backends
  first, frontends with ``SERVING_URL`` set to their backend's URL; waits for health; keeps
  logs (``.hw5/local/logs``) and PIDs (``.hw5/local/deployment.json``); writes the URLs into
  ``deliverables.local.yaml``. The processes keep running after the command ends.
* v3: the per-model backends start with the others; then the API gateway
  (``python -m hw5kit.gateway``) with ``deployment/openapi_v3.yaml`` rendered again with their
  local URLs (``.hw5/local/openapi_v3.yaml``), and an API key in ``.hw5/local/gateway.key``
  when ``gateway.api_key`` is on; then ``frontend_v3`` with ``API_GATEWAY`` (and
  ``API_GATEWAY_KEY``). The gateway's URL goes into ``services.v3.gateway_url``.
* stop: stops what deploy started (checking each PID is still that service first).
* verify (``check_service``): every build ID is a recorded local build, each running process
  was started from that build, and each frontend process has ``SERVING_URL`` = its backend's URL
  (v3: ``API_GATEWAY`` = the gateway's). The backends here may fetch from 127.0.0.1, so verify
  also sends them the photo by URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import sys
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import procs
from .. import deliverables
from ..deliverables import DeliverablesError
from ..deployment import GATEWAY_SERVICE, ConfigError, Service
from ..project import PipelineError, Project
from ..report import Report
from .base import Target
from .common import (
    GATEWAY_KEYS_ENV,
    HostGateway,
    Recorder,
    StateRecords,
    deploy_in_order,
    reuse_port,
    stop_recorded,
)
from .common import now as _now
from .session import local_key

if TYPE_CHECKING:
    from ...photos import Photo

WEIGHTS_DIR = "weights"
REQUIRED_MODULES = ("gunicorn", "streamlit", "flask", "torch", "requests")
READY_TIMEOUT = 240.0


def source_digest(root: Path, service: Service) -> str:
    digest = hashlib.sha256()
    app_dir = root / service.app_dir
    for path in sorted(
        p for p in app_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    ):
        digest.update(path.relative_to(app_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def process_environ(pid: int) -> dict[str, str] | None:
    """The environment a running process was started with (Linux), or None."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    out = {}
    for item in raw.split(b"\0"):
        key, eq, value = item.partition(b"=")
        if eq:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


class LocalTarget(StateRecords, Target):
    name = "local"
    fetches_loopback = True  # its backends run with HW5_ALLOW_LOOPBACK=1

    def __init__(self, project: Project):
        self.project = project
        self.config = project.config
        self.root = project.root
        self._lock = threading.Lock()
        self._recorder = Recorder(project)
        self.gateway = HostGateway(project, self._lock, self.save_deployment)

    # -- paths and records -- #
    @property
    def weights_dir(self) -> Path:
        return self.root / WEIGHTS_DIR

    def _record(self, service: Service, **fields: str | None) -> None:
        self._recorder(service, **fields)

    # -- build -- #
    def build(self, names: list[str] | None = None, *, verbose: bool = False) -> int:
        log = self.project.log
        services = self.config.select(names)
        missing = [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            raise PipelineError(
                f"this Python ({sys.executable}) lacks {', '.join(missing)}: run the pipeline "
                "through nox (`nox -s build`), which uses the project's environment .nox/kit"
            )
        for s in services:
            app = self.root / s.app_dir / "app.py"
            if not app.is_file():
                raise PipelineError(
                    f"{s.name}: {app} is missing; every service is apps/<name>/app.py"
                )
        deliverables.load_for_update(self.project.deliverables_path)
        models = []
        for s in services:
            models += [m for m in s.models() if m not in models]
        if models:
            from ...serving.errors import ServingError
            from ...serving.models import weights

            log(f"baking the weights of {', '.join(models)} into {self.weights_dir}")
            try:
                weights.bake(models, self.weights_dir, log=lambda m: log(f"  {m}"))
            except ServingError as exc:
                raise PipelineError(f"baking the weights failed: {exc.message}") from None
        builds = self.builds()
        for s in services:
            build_id = str(uuid.uuid4())
            builds[build_id] = {
                "id": build_id,
                "service": s.name,
                "status": "SUCCESS",
                "createTime": _now(),
                "models": s.models(),
                "torch_home": str(self.weights_dir),
                "python": sys.executable,
                "source_digest": source_digest(self.root, s),
            }
            self._record(s, build_id=build_id)
            log(f"  {s.name}: build {build_id}")
        self.save_builds(builds)
        log(
            f"build: {len(services)} service(s) ready to deploy; recorded in "
            f"{self.project.deliverables_path.name}"
        )
        return 0

    # -- deploy -- #
    def _service_env(self, s: Service, build_id: str, port: int, serving_url: str | None):
        env = dict(self.project.env)
        for key in (
            "PORT", "SERVING_PORT", "SERVING_URL", "API_GATEWAY", "API_GATEWAY_KEY",
            "MODEL_NAME", "MODELS", GATEWAY_KEYS_ENV,
        ):  # fmt: skip
            env.pop(key, None)
        env.update(s.env_dict())
        env["SERVING_PORT"] = str(port)
        env["HW5_BUILD_ID"] = build_id
        if s.kind == "backend":
            env["HW5_ALLOW_LOOPBACK"] = "1"
            env["TORCH_HOME"] = str(self.weights_dir)
            # v2's session key: the same across restarts (targets/session.py)
            env["SECRET_KEY"] = s.env_dict().get("SECRET_KEY") or local_key(self.project.state_dir)
        else:
            env[s.url_var] = serving_url or ""
            env.update(self.gateway.frontend_env(s))
        return env

    # -- v3's gateway (targets.common.HostGateway) -- #
    def gateway_key(self) -> str | None:
        """The local gateway's API key (``.hw5/local/gateway.key``), or None when the config
        does not ask for keys."""
        return self.gateway.key()

    def _port(self, previous: dict[str, Any] | None) -> int:
        return reuse_port(previous)

    def _stop_recorded(self, entry: dict[str, Any]) -> bool:
        return stop_recorded(entry)

    def deploy(self, names: list[str] | None = None, *, verbose: bool = False) -> int:
        log = self.project.log
        services = self.config.select(names)
        current = deliverables.load_for_update(self.project.deliverables_path)
        builds = self.builds()
        missing = []
        for s in services:
            build_id = deliverables.entry(current, *s.deliverable_key).get("build_id")
            if not build_id or str(build_id) not in builds:
                missing.append(s.name)
        if missing:
            raise PipelineError(f"no local build of {', '.join(missing)}: run `nox -s build` first")
        state = self.deployment()
        for s in services:
            previous = state["services"].get(s.name)
            if previous and self._stop_recorded(previous):
                log(f"stopped the previous {s.name} (pid {previous['pid']})")
        urls: dict[str, str] = {
            name: entry["url"]
            for name, entry in state["services"].items()
            if entry.get("url") and procs.pid_alive(int(entry.get("pid") or 0))
        }

        def start(s: Service) -> str:
            build_id = str(deliverables.entry(current, *s.deliverable_key)["build_id"])
            try:
                return self._start(s, build_id, state, urls)
            except (procs.ServiceFailed, PipelineError):
                with self._lock:
                    state["services"].pop(s.name, None)
                    self.save_deployment(state)
                raise

        log(
            f"deploying {', '.join(s.name for s in services)} on 127.0.0.1 (logs: "
            f"{self.project.logs_dir})"
        )
        failed = deploy_in_order(
            self.project,
            services,
            start,
            urls,
            self._recorder,
            after_backends=lambda: self.gateway.step(services, state, urls),
        )
        return 1 if failed else 0

    def _start(self, s: Service, build_id: str, state: dict, urls: dict[str, str]) -> str:
        previous = state["services"].get(s.name)
        port = self._port(previous)
        url = f"http://127.0.0.1:{port}"
        app_dir = self.root / s.app_dir
        if s.kind == "backend":
            cmd = procs.gunicorn_command(app_dir, port=port, python=sys.executable)
            health = f"{url}/readyz"
            serving_url = None
        else:
            cmd = procs.streamlit_command(app_dir / "app.py", port=port, python=sys.executable)
            health = f"{url}{procs.STREAMLIT_HEALTH}"
            serving_url = urls[s.backend]
        log_path = self.project.logs_dir / f"{s.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as fh:
            fh.write(f"\n=== {_now()} deploy {s.name} build {build_id} on {url}\n")
        process = procs.start(
            s.name,
            cmd,
            log_path=log_path,
            env=self._service_env(s, build_id, port, serving_url),
            cwd=self.root,
            url=url,
        )
        entry = {
            "pid": process.pid,
            "port": port,
            "url": url,
            "kind": s.kind,
            "build_id": build_id,
            "log": str(log_path),
            "marker": str(app_dir),
            "serving_url": serving_url,
            "started": _now(),
        }
        with self._lock:
            state["services"][s.name] = entry
            self.save_deployment(state)
        self.project.log(f"[{s.name}] started (pid {process.pid}) on {url}; waiting for {health}")
        try:
            seconds = procs.wait_http(
                health,
                timeout=READY_TIMEOUT,
                process=process,
                progress=lambda m: self.project.log(f"[{s.name}] {m}"),
            )
        except procs.ServiceFailed:
            process.stop()
            raise
        self.project.log(f"[{s.name}] ready in {seconds:.1f} s")
        return url

    # -- stop / status -- #
    def stop(self) -> int:
        state = self.deployment()
        if not state["services"]:
            self.project.log("nothing to stop: no local deployment is recorded")
            return 0
        for name, entry in sorted(state["services"].items()):
            if name == GATEWAY_SERVICE:
                stopped = self.gateway.stop(entry)
            else:
                stopped = self._stop_recorded(entry)
            self.project.log(
                f"{name}: {'stopped' if stopped else 'was not running'} (pid {entry.get('pid')})"
            )
            if name != GATEWAY_SERVICE:
                # stopping must work even with a hand-broken deliverables file or config
                with contextlib.suppress(PipelineError, DeliverablesError, ConfigError):
                    self._record(self.config.service(name), service_url=None)
        state["services"] = {}
        self.save_deployment(state)
        return 0

    def status(self) -> int:
        state = self.deployment()
        if not state["services"]:
            self.project.log("no local deployment (run `nox -s deploy`)")
            return 0
        for name, entry in sorted(state["services"].items()):
            alive = procs.pid_alive(int(entry.get("pid") or 0))
            health = {"backend": "/readyz", "gateway": "/healthz"}.get(
                entry.get("kind", ""), procs.STREAMLIT_HEALTH
            )
            status = procs.http_status(entry["url"] + health) if alive else None
            self.project.log(
                f"{name:30} pid {entry.get('pid'):>7}  {'running' if alive else 'stopped':8} "
                f"{entry['url']}  health {status or '-'}  log {entry.get('log')}"
            )
        return 0

    # -- verify -- #
    def check_service(
        self, service: Service, entry: Mapping[str, Any], data: Any, report: Report, photo: Photo
    ) -> None:
        """The build is a recorded local build of this service; its process runs, was started
        from that build, and (a frontend) has its backend's URL."""
        where = report.where(service)
        build_id = str(entry["build_id"])
        record = self.builds().get(build_id)
        if not report.add(
            where,
            f"build {build_id}",
            bool(record and record.get("service") == service.name),
            "a local build of this service" if record else "no such local build",
            f"run `{self.command('build')}`",
        ):
            return
        running = self.deployment()["services"].get(service.name)
        env = env_of_running(running) if running else None
        if env is None:
            report.add(where, "process", False, "not running", f"run `{self.command('deploy')}`")
            return
        report.add(
            where,
            f"process {running['pid']}",
            env.get("HW5_BUILD_ID") == build_id,
            f"started from build {env.get('HW5_BUILD_ID')}",
            f"the running process comes from another build: run `{self.command('deploy')}`",
        )
        if service.kind == "frontend":
            self.check_wiring(report, service, env, data)


def env_of_running(entry: dict[str, Any]) -> dict[str, str] | None:
    pid = int(entry.get("pid") or 0)
    if not pid or not procs.pid_alive(pid):
        return None
    return process_environ(pid)
