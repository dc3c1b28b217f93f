"""The container target: the services as real images, run as containers on this machine.

* build: builds each service's image from ``Dockerfile.<service>`` with the real builder
  (``hw5kit.containers``: docker when a daemon answers, else podman/buildah), its base first
  (skipped while nothing the base depends on changed); records one build per service in
  ``.hw5/container/builds.json`` and ``deliverables.container.yaml``. The build ID is the
  image's ID: the first 128 bits of its sha256, written as a UUID (the deliverables schema's
  form), so the ID names exactly one image.
  A v3 model's backend (``backend_v3_<model>``) is built from ``Dockerfile.backend_v3`` with
  the build argument ``MODEL_NAME=<model>`` (its own weights baked in), one image per model
  sharing the backend base.
* deploy: runs each backend, then v3's API gateway, then each frontend with ``SERVING_URL`` =
  its backend's URL (v3: ``API_GATEWAY`` = the gateway's, and ``API_GATEWAY_KEY`` when
  ``gateway.api_key`` is on); waits for readiness; writes the URLs. The gateway is no image
  (on gcp it is Google API Gateway): as on the local target, it is ``python -m hw5kit.gateway``
  on a ``127.0.0.1`` port of the host (``targets.common.HostGateway``), routing to the backend
  containers' published ports by ``deployment/openapi_v3.yaml`` rendered again with them
  (``.hw5/container/openapi_v3.yaml``; the key in ``.hw5/container/gateway.key``).
  Network (``HW5_CONTAINER_NETWORK``):

  - ``isolated`` (the default as root, which rootful podman and docker are): every container
    runs with ``--network none`` (a loopback interface and nothing else), listening on the
    configured ``serving_port`` as on Cloud Run; a relay (``hw5kit.containers.relay``) publishes
    it on a free ``127.0.0.1`` port of the host and, for a frontend, makes its backend's (v3:
    the gateway's) published URL reachable from inside it, so the URL is the same inside and
    out. A container can reach nothing but that.
  - ``host``: the containers share the host's network (docker without root).

* stop / status: the containers this target started (labelled with this repository), their
  relays, and the gateway.
* verify (``check_service``, in ``container_checks.py``): every build ID names a recorded image
  build and the image still has that ID; each service's container runs that image; a photo is
  classified from inside the backend's container; a frontend's container has ``SERVING_URL`` =
  its backend's URL and reaches it from inside; and start-up made no network call.

Environment: ``HW5_CONTAINER_STORE`` (podman's storage, default ``.hw5/containers``),
``HW5_CONTAINER_ENGINE`` (docker|podman), ``HW5_CONTAINER_NETWORK`` (isolated|host),
``HW5_CONTAINER_TAG`` (the images' tag, default ``local``: ``hw5-<service>:local``).
"""

from __future__ import annotations

import hashlib
import os
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import procs
from .. import deliverables
from ..deployment import GATEWAY_SERVICE, Service
from ..project import PipelineError, Project
from ..report import Report
from . import container_checks
from .base import Target
from .common import (
    HostGateway,
    Recorder,
    StateRecords,
    deploy_in_order,
    now,
    reuse_port,
)
from .session import local_key

if TYPE_CHECKING:
    from ...photos import Photo

READY_TIMEOUT = 240.0
NETWORKS = ("isolated", "host")
DEPLOYMENT_LABEL = "hw5kit.deployment"
# build arguments of the backend Dockerfiles that choose the weights baked in (a backend's
# env in deployment.yaml sets one of them)
BAKE_ARGS = ("MODEL_NAME", "MODELS")


def build_id_of(image_id: str) -> str:
    """The build ID of an image: its ID's first 32 hex digits as a UUID."""
    digits = image_id.removeprefix("sha256:")[:32]
    return str(uuid.UUID(hex=digits))


def deployment_label(root: Path) -> str:
    """The label value marking one repository's containers (a digest of its path)."""
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]


def network_mode(env) -> str:
    from ...containers import relay

    wanted = env.get("HW5_CONTAINER_NETWORK") or ("isolated" if relay.can_relay() else "host")
    if wanted not in NETWORKS:
        raise PipelineError(f"HW5_CONTAINER_NETWORK must be one of {', '.join(NETWORKS)}")
    if wanted == "isolated" and not relay.can_relay():
        raise PipelineError(
            "HW5_CONTAINER_NETWORK=isolated needs root (the relay enters the containers' "
            "network namespaces); run as root or set HW5_CONTAINER_NETWORK=host"
        )
    return wanted


class ContainerTarget(StateRecords, Target):
    name = "container"
    build_id_of = staticmethod(build_id_of)  # the build ID an image ID stands for

    def __init__(self, project: Project, engine=None):
        self.project = project
        self.config = project.config
        self.root = project.root
        self._engine = engine
        self._record = Recorder(project)
        self.gateway = HostGateway(project, self._record.lock, self.save_deployment)

    # -- engine and records -- #
    @property
    def engine(self):
        if self._engine is None:
            from ...containers import ContainerError, detect

            store = self.project.env.get("HW5_CONTAINER_STORE") or self.root / ".hw5" / "containers"
            try:
                self._engine = detect(Path(store), log=self.project.log)
            except ContainerError as exc:
                raise PipelineError(str(exc)) from None
        return self._engine

    @property
    def deployment_label(self) -> str:
        """Marks this repository's containers: stop touches no other."""
        return deployment_label(self.root)

    def builder(self, *, verbose: bool = False):
        from ...containers import Builder

        engine = self.engine
        engine.echo = "all" if verbose else "steps"
        return Builder(
            engine,
            root=self.root,
            serving_port=self.config.serving_port,
            logs_dir=self.project.logs_dir,
            tag=self.project.env.get("HW5_CONTAINER_TAG") or "local",
        )

    # -- build -- #
    def build(self, names: list[str] | None = None, *, verbose: bool = False) -> int:
        from ...containers import ContainerError

        log = self.project.log
        services = self.config.select(names)
        for s in services:
            if not (self.root / s.dockerfile).is_file():
                raise PipelineError(f"{s.name}: {s.dockerfile} is missing")
        deliverables.load_for_update(self.project.deliverables_path)
        builder = self.builder(verbose=verbose)
        log(
            f"building {', '.join(s.name for s in services)} with {self.engine.kind} "
            f"(build logs: {self.project.logs_dir}; `-v` shows every line)"
        )
        builds = self.builds()
        done = []
        for s in services:
            try:
                if s.model is not None:  # a v3 model's backend: its group's Dockerfile
                    built = builder.build(
                        s.name, dockerfile_of=s.app, build_args={"MODEL_NAME": s.model}
                    )
                else:  # the models deployment.yaml gives it are the ones baked in
                    env = s.env_dict()
                    args = {k: env[k] for k in BAKE_ARGS if k in env}
                    built = builder.build(s.name, build_args=args)
                image_id = self.engine.image_id(built.image)
            except ContainerError as exc:
                log(f"build: {s.name} failed: {exc}")
                for b in done:
                    log(f"  built  {b}")
                raise PipelineError(
                    f"building {s.name} failed ({len(done)} of {len(services)} built and "
                    "recorded); fix it and run the build again (finished layers are cached)"
                ) from None
            build_id = build_id_of(image_id)
            builds[build_id] = {
                "id": build_id,
                "service": s.name,
                "status": "SUCCESS",
                "createTime": now(),
                "engine": self.engine.kind,
                "image": built.image,
                "image_id": image_id,
                "base": built.base,
                "size": built.size,
                "seconds": round(built.seconds, 1),
                "steps": built.steps,
                "cached_steps": built.cached,
            }
            self.save_builds(builds)
            self._record(s, build_id=build_id)
            done.append(f"{s.name}: build {build_id} = {built.summary()}")
        log(
            f"build: {len(services)} image(s) ready to deploy; recorded in "
            f"{self.project.deliverables_path.name}"
        )
        for line in done:
            log(f"  {line}")
        return 0

    # -- deploy -- #
    def _image_for(self, s: Service, current) -> tuple[str, dict]:
        build_id = deliverables.entry(current, *s.deliverable_key).get("build_id")
        record = self.builds().get(str(build_id)) if build_id else None
        build = self.command("build")
        if not record or record.get("service") != s.name:
            raise PipelineError(f"no container build of {s.name}: run `{build}` first")
        image = record["image"]
        if not self.engine.image_exists(image):
            raise PipelineError(f"{s.name}: image {image} is gone: run `{build}`")
        if build_id_of(self.engine.image_id(image)) != build_id:
            raise PipelineError(
                f"{s.name}: {image} was rebuilt since build {build_id} was recorded: run "
                f"`{build}` (it records the current image)"
            )
        return str(build_id), record

    def deploy(self, names: list[str] | None = None, *, verbose: bool = False) -> int:
        services = self.config.select(names)
        current = deliverables.load_for_update(self.project.deliverables_path)
        mode = network_mode(self.project.env)
        images: dict[str, tuple[str, dict]] = {}
        problems = []
        for s in services:
            try:
                images[s.name] = self._image_for(s, current)
            except PipelineError as exc:
                problems.append(str(exc))
        if problems:
            raise PipelineError("; ".join(problems))
        state = self.deployment()
        for s in services:
            previous = state["services"].get(s.name)
            if previous:
                self._stop_entry(s.name, previous)
                self.project.log(f"stopped the previous {s.name} ({previous.get('container')})")
        urls = {
            name: entry["url"]
            for name, entry in state["services"].items()
            if entry.get("url") and name != GATEWAY_SERVICE and self._running(entry)
        }
        lock = self._record.lock

        def start(s: Service) -> str:
            build_id, record = images[s.name]
            previous = state["services"].get(s.name)
            entry: dict[str, Any] = {"kind": s.kind, "build_id": build_id, "network": mode}
            try:
                return self._start(s, record, mode, previous, urls, entry)
            finally:
                with lock:
                    state["services"][s.name] = entry
                    if not entry.get("url"):
                        self._stop_entry(s.name, entry)
                        state["services"].pop(s.name)
                    self.save_deployment(state)

        self.project.log(
            f"deploying {', '.join(s.name for s in services)} as containers ({self.engine.kind}, "
            f"{mode} network; logs: {self.project.logs_dir})"
        )
        failed = deploy_in_order(
            self.project,
            services,
            start,
            urls,
            self._record,
            after_backends=lambda: self.gateway.step(services, state, urls),
        )
        return 1 if failed else 0

    def _start(self, s, record, mode, previous, urls, entry) -> str:
        from ...containers import ContainerError, run

        host_port = reuse_port(previous)
        url = f"http://127.0.0.1:{host_port}"
        env = {**s.env_dict(), "HW5_BUILD_ID": entry["build_id"]}
        secret_env = {}
        if s.kind == "backend":  # v2's session key, the same across restarts (session.py)
            secret_env["SECRET_KEY"] = env.pop("SECRET_KEY", "") or local_key(
                self.project.state_dir
            )
        outbound = []
        if s.kind == "frontend":
            # the backend's (v3: the gateway's) published URL, relayed into the container
            env[s.url_var] = urls[s.backend]
            env.update(self.gateway.frontend_env(s))
            outbound.append(int(urls[s.backend].rsplit(":", 1)[1]))
        labels = {DEPLOYMENT_LABEL: self.deployment_label}
        port = self.config.serving_port if mode == "isolated" else host_port
        try:
            box = run(
                s.name,
                record["image"],
                engine=self.engine,
                env=env,
                secret_env=secret_env,
                port=port,
                network="none" if mode == "isolated" else "host",
                labels=labels,
            )
        except ContainerError as exc:
            raise PipelineError(f"{s.name}: {exc}") from None
        entry.update(container=box.name, image=record["image"], port=host_port, started=now())
        if s.kind == "frontend":
            entry["serving_url"] = env[s.url_var]
        log_path = self.project.logs_dir / f"{s.name}-relay.log"
        if mode == "isolated":
            pid = box.pid()
            if not pid:
                raise PipelineError(f"{s.name}: container {box.name} exited at once:\n{box.logs()}")
            cmd = [sys.executable, "-m", "hw5kit.containers.relay", "--pid", str(pid)]
            cmd += ["--inbound", f"{host_port}:{port}"]
            for p in outbound:
                cmd += ["--outbound", str(p)]
            relay = procs.start(f"{s.name} relay", cmd, log_path=log_path, env=dict(os.environ))
            entry.update(relay_pid=relay.pid, relay_log=str(log_path))
            box.published = url
        self.project.log(f"[{s.name}] started {box.name} on {url}; waiting for it to be ready")
        try:
            seconds = box.wait_ready(
                timeout=READY_TIMEOUT, progress=lambda m: self.project.log(f"[{s.name}] {m}")
            )
        except ContainerError as exc:
            raise PipelineError(str(exc)) from None
        self.project.log(f"[{s.name}] ready in {seconds:.1f} s")
        entry["url"] = url
        return url

    # -- v3's gateway (targets.common.HostGateway) and verify -- #
    def gateway_key(self) -> str | None:
        """The gateway's API key (``.hw5/container/gateway.key``), or None when the config
        does not ask for keys."""
        return self.gateway.key()

    def check_service(
        self, service: Service, entry: Mapping[str, Any], data: Any, report: Report, photo: Photo
    ) -> None:
        container_checks.check_service(self, service, entry, data, report, photo)

    # -- stop / status -- #
    def _running(self, entry: dict[str, Any]) -> bool:
        if entry.get("kind") == "gateway":
            return self.gateway.running(entry)
        name = entry.get("container")
        if not name or not self.engine.container_running(name):
            return False
        relay = int(entry.get("relay_pid") or 0)
        return entry.get("network") != "isolated" or procs.pid_alive(relay)

    def _stop_entry(self, name: str, entry: dict[str, Any]) -> bool:
        """Stop the recorded container (keeping its log) and its relay; True if it ran."""
        from ...containers import attach
        from ...containers.engine import ContainerError

        ran = False
        container = entry.get("container")
        if container:
            try:
                box = attach(self.engine, container)
            except ContainerError:
                box = None
            if box is not None:
                ran = box.running()
                log_path = self.project.logs_dir / f"{name}.log"
                log_path.parent.mkdir(parents=True, exist_ok=True)
                with log_path.open("a") as fh:
                    fh.write(f"\n=== {now()} {container} ({entry.get('image')})\n{box.logs()}")
                box.stop()
        relay = int(entry.get("relay_pid") or 0)
        if relay and procs.pid_alive(relay):
            cmdline = Path(f"/proc/{relay}/cmdline").read_bytes().decode(errors="replace")
            if "hw5kit.containers.relay" in cmdline:
                procs.stop_pid(relay)
        return ran

    def labelled(self) -> list[str]:
        """Containers (running or not) that this target started for this repository."""
        out = self.engine.text(
            [
                "ps", "-a", "--filter", f"label={DEPLOYMENT_LABEL}={self.deployment_label}",
                "--format", "{{.Names}}",
            ]
        )  # fmt: skip
        return [line.strip() for line in out.splitlines() if line.strip()]

    def stop(self) -> int:
        state = self.deployment()
        recorded = {e.get("container") for e in state["services"].values()}
        stray = [n for n in self.labelled() if n not in recorded]
        if not state["services"] and not stray:
            self.project.log("nothing to stop: no container deployment is recorded")
            return 0
        for name, entry in sorted(state["services"].items()):
            if name == GATEWAY_SERVICE:
                ran = self.gateway.stop(entry)
                self.project.log(
                    f"{name}: {'stopped' if ran else 'was not running'} (API gateway, pid "
                    f"{entry.get('pid')}; log {entry.get('log')})"
                )
                continue
            ran = self._stop_entry(name, entry)
            self.project.log(
                f"{name}: {'stopped' if ran else 'was not running'} ({entry.get('container')}; "
                f"log {self.project.logs_dir / (name + '.log')})"
            )
            try:
                self._record(self.config.service(name), service_url=None)
            except (PipelineError, deliverables.DeliverablesError, ValueError) as exc:
                self.project.log(f"  (deliverables not updated: {exc})")
        for name in stray:
            self.engine.call(["rm", "-f", name], check=False, timeout=60)
            self.project.log(f"{name}: removed (started by this target, no longer recorded)")
        state["services"] = {}
        self.save_deployment(state)
        return 0

    def status(self) -> int:
        state = self.deployment()
        if not state["services"]:
            self.project.log("no container deployment (run `nox -s deploy -- --target container`)")
            return 0
        width = max(len(name) for name in state["services"])
        for name, entry in sorted(state["services"].items()):
            running = self._running(entry)
            health = {"backend": "/readyz", "gateway": "/healthz"}.get(
                entry.get("kind", ""), procs.STREAMLIT_HEALTH
            )
            status = procs.http_status(entry["url"] + health) if running else None
            where = (
                f"network host  process {entry.get('pid')} (API gateway; log {entry.get('log')})"
                if entry.get("kind") == "gateway"
                else f"network {entry.get('network')}  image {entry.get('image')}"
            )
            self.project.log(
                f"{name:{width}} {entry.get('container') or '-'}  "
                f"{'running' if running else 'stopped':8} {entry['url']}  health "
                f"{status or '-'}  {where}"
            )
        return 0
