"""What the targets that run services on this machine (local, container) share: state files,
ports that survive a redeploy, deliverables writing, the deploy order (backends, then v3's
gateway, then the frontends whose backend answers) with its summary, and v3's API gateway as a
process on this machine (``HostGateway``)."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ... import procs
from .. import deliverables, rerun
from ..deployment import GATEWAY_SERVICE, Service
from ..project import PipelineError, Project


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_json(path: Path, data: Any) -> None:
    deliverables.write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except ValueError as exc:
        raise PipelineError(f"{path} is corrupted ({exc}); delete it and run again") from None


class StateRecords:
    """What a target records in its state folder (``.hw5/<target>/``): one entry per build
    (``builds.json``) and what is deployed (``deployment.json``)."""

    project: Project

    @property
    def builds_path(self) -> Path:
        return self.project.state_dir / "builds.json"

    @property
    def deployment_path(self) -> Path:
        return self.project.state_dir / "deployment.json"

    def builds(self) -> dict[str, Any]:
        return read_json(self.builds_path, {})

    def deployment(self) -> dict[str, Any]:
        return read_json(self.deployment_path, {"services": {}})

    def save_builds(self, data: dict[str, Any]) -> None:
        write_json(self.builds_path, data)

    def save_deployment(self, data: dict[str, Any]) -> None:
        write_json(self.deployment_path, data)


def reuse_port(previous: dict[str, Any] | None) -> int:
    """The service's previous port when it is free (frontends keep working across a backend's
    redeploy), else a new free one."""
    if previous and previous.get("port"):
        port = int(previous["port"])
        with socket.socket() as sock:
            # as gunicorn and Tornado do: a port whose old connections linger is reusable
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                pass
            else:
                return port
    return procs.free_port()


class Recorder:
    """Writes one service's fields into the target's deliverables file (thread-safe)."""

    def __init__(self, project: Project):
        self.project = project
        self.lock = threading.Lock()

    def __call__(self, service: Service, **fields: str | None) -> None:
        with self.lock:
            deliverables.update(
                self.project.deliverables_path,
                {service.deliverable_key: fields},
                target=self.project.target,
            )


def deploy_in_order(
    project: Project,
    services: list[Service],
    start: Callable[[Service], str],
    urls: dict[str, str],
    record: Recorder,
    *,
    after_backends: Callable[[], dict[str, str | None]] | None = None,
) -> dict[str, str]:
    """Start the backends (in parallel), then ``after_backends`` (the local v3 gateway: it
    adds the URL frontend_v3 calls to ``urls`` and returns its outcome), then the frontends
    whose backend runs; ``start`` returns the service's URL or raises PipelineError /
    ServiceFailed. Records each URL (None on failure), logs a summary; returns
    ``{service: why it failed}``."""
    outcomes: dict[str, str | None] = {}

    def one(s: Service) -> None:
        try:
            url = start(s)
        except (procs.ServiceFailed, PipelineError) as exc:
            outcomes[s.name] = str(exc)
            record(s, service_url=None)
            return
        urls[s.name] = url
        outcomes[s.name] = None
        record(s, service_url=url)

    backends = [s for s in services if s.kind != "frontend"]
    with ThreadPoolExecutor(max_workers=max(1, len(backends))) as pool:
        list(pool.map(one, backends))
    extra = after_backends() if after_backends is not None else {}
    outcomes.update(extra)
    ready = []
    for s in services:
        if s.kind != "frontend":
            continue
        if s.backend in urls:
            ready.append(s)
        else:
            outcomes[s.name] = f"skipped: its backend {s.backend} is not running"
    with ThreadPoolExecutor(max_workers=max(1, len(ready))) as pool:
        list(pool.map(one, ready))
    failed = {k: v for k, v in outcomes.items() if v}
    log = project.log
    total = len(services) + len(extra)
    log(f"deploy: {total - len(failed)} of {total} services running")
    for name in failed.keys() & extra.keys():
        log(f"  FAILED {name}: {failed[name]}")
    for s in services:
        if s.name in failed:
            log(f"  FAILED {s.name}: {failed[s.name]}")
        else:
            wired = f" ({s.url_var}={urls[s.backend]})" if s.kind == "frontend" else ""
            log(f"  ok     {s.name}: {urls[s.name]}{wired}")
    if not failed:
        stop, verify = (rerun.command(project.target, cmd) for cmd in ("stop", "verify"))
        log(f"stop them with `{stop}`; check them with `{verify}`")
    return failed


# -- v3's API gateway as a process on this machine (the local and container targets) -- #
GATEWAY_SPEC = "openapi_v3.yaml"
GATEWAY_KEY_FILE = "gateway.key"
GATEWAY_KEYS_ENV = "HW5_GATEWAY_API_KEYS"
GATEWAY_READY_TIMEOUT = 60.0


def process_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def stop_recorded(entry: dict[str, Any]) -> bool:
    """Stop a recorded process if it still runs and is still the one recorded (its command line
    holds the entry's ``marker``); True if it ran."""
    pid = int(entry.get("pid") or 0)
    if not pid or not procs.pid_alive(pid):
        return False
    marker = entry.get("marker", "")
    if marker and not any(marker in a for a in process_cmdline(pid)):
        return False  # the PID now belongs to something else
    procs.stop_pid(pid)
    return True


class HostGateway:
    """v3's API gateway as a process on this machine: ``python -m hw5kit.gateway`` (gunicorn on
    127.0.0.1) reading ``deployment/openapi_v3.yaml`` rendered again with the backends' URLs on
    this machine (``<state dir>/openapi_v3.yaml``), with an API key in ``<state dir>/gateway.key``
    when ``gateway.api_key`` is on. Google API Gateway is no image, so the container target runs
    it this way too, routing to the backend containers' published ports.

    Its record is ``state["services"]["gateway_v3"]`` in the target's deployment state; ``save``
    writes that state (called with ``lock`` held)."""

    def __init__(
        self, project: Project, lock: threading.Lock, save: Callable[[dict], None] | None = None
    ):
        self.project = project
        self.config = project.config
        self.lock = lock
        self.save = save

    @property
    def key_path(self) -> Path:
        return self.project.state_dir / GATEWAY_KEY_FILE

    @property
    def spec_path(self) -> Path:
        return self.project.state_dir / GATEWAY_SPEC

    def key(self) -> str | None:
        """The gateway's API key (made once, kept in the key file), or None when the config
        does not ask for keys."""
        gateway = self.config.gateway
        if gateway is None or not gateway.api_key:
            return None
        with self.lock:
            if not self.key_path.exists():
                import secrets

                deliverables.write_atomic(self.key_path, secrets.token_urlsafe(24) + "\n")
                self.key_path.chmod(0o600)
            return self.key_path.read_text().strip()

    def frontend_env(self, service: Service) -> dict[str, str]:
        """What a v3 frontend gets besides API_GATEWAY: API_GATEWAY_KEY when keys are on."""
        key = self.key() if service.version == "v3" else None
        return {"API_GATEWAY_KEY": key} if key else {}

    def step(
        self, services: list[Service], state: dict, urls: dict[str, str]
    ) -> dict[str, str | None]:
        """``deploy_in_order``'s ``after_backends``: (re)start the gateway when v3 is being
        deployed; its URL stands for the v3 backend group in ``urls`` (what frontend_v3 calls).
        Returns ``{gateway_v3: None}`` or ``{gateway_v3: why it failed}``; ``{}`` without v3."""
        backends = self.config.v3_backends()
        if not backends or not any(s.version == "v3" for s in services):
            return {}
        group = backends[0].group
        try:
            urls[group] = self.start(state, urls)
        except (procs.ServiceFailed, PipelineError) as exc:
            urls.pop(group, None)
            return {GATEWAY_SERVICE: str(exc)}
        with self.lock:
            deliverables.update(
                self.project.deliverables_path,
                {},
                target=self.project.target,
                gateway_url=("v3", urls[group]),
            )
        self.project.log(f"  ok     {GATEWAY_SERVICE}: {urls[group]} (API gateway)")
        return {GATEWAY_SERVICE: None}

    def start(self, state: dict, urls: dict[str, str]) -> str:
        """Render the document with the backends' ``urls``, (re)start the gateway on its
        previous port when free, wait for its health; returns its URL."""
        from ..render import OPENAPI_TEMPLATE, render_openapi

        backends = self.config.v3_backends()
        missing = [b.name for b in backends if b.name not in urls]
        if missing:
            raise PipelineError(f"the gateway needs its backends running: {', '.join(missing)}")
        templates = self.project.root / "templates"
        if not (templates / OPENAPI_TEMPLATE).is_file():
            raise PipelineError(
                f"{templates / OPENAPI_TEMPLATE} is missing: the gateway's OpenAPI document is "
                "rendered from it"
            )
        spec = self.spec_path
        text = render_openapi(self.config, templates, {b.name: urls[b.name] for b in backends})
        deliverables.write_atomic(spec, text)
        previous = state["services"].get(GATEWAY_SERVICE)
        if previous and stop_recorded(previous):
            self.project.log(f"stopped the previous gateway (pid {previous['pid']})")
        port = reuse_port(previous)
        url = f"http://127.0.0.1:{port}"
        env = dict(self.project.env)
        env.pop(GATEWAY_KEYS_ENV, None)
        key = self.key()
        if key:
            env[GATEWAY_KEYS_ENV] = key
        cmd = [sys.executable, "-m", "hw5kit.gateway", "--spec", str(spec)]
        cmd += ["--port", str(port)]
        log_path = self.project.logs_dir / f"{GATEWAY_SERVICE}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as fh:
            fh.write(f"\n=== {now()} deploy {GATEWAY_SERVICE} on {url} ({spec})\n")
        process = procs.start(
            GATEWAY_SERVICE, cmd, log_path=log_path, env=env, cwd=self.project.root, url=url
        )
        with self.lock:
            state["services"][GATEWAY_SERVICE] = {
                "pid": process.pid,
                "port": port,
                "url": url,
                "kind": "gateway",
                "log": str(log_path),
                "marker": str(spec),
                "spec": str(spec),
                "started": now(),
            }
            if self.save is not None:
                self.save(state)
        try:
            procs.wait_http(f"{url}/healthz", timeout=GATEWAY_READY_TIMEOUT, process=process)
        except procs.ServiceFailed:
            process.stop()
            raise
        self.project.log(f"[{GATEWAY_SERVICE}] ready on {url} ({spec})")
        return url

    def stop(self, entry: dict[str, Any]) -> bool:
        """Stop the recorded gateway and clear its URL in the deliverables; True if it ran."""
        stopped = stop_recorded(entry)
        # stopping must work even with a hand-broken deliverables file
        with contextlib.suppress(PipelineError, deliverables.DeliverablesError, ValueError):
            deliverables.update(
                self.project.deliverables_path,
                {},
                target=self.project.target,
                gateway_url=("v3", None),
            )
        return stopped

    @staticmethod
    def running(entry: dict[str, Any]) -> bool:
        return procs.pid_alive(int(entry.get("pid") or 0))
