"""What the targets that run services on this machine (local, container) share: state files,
ports that survive a redeploy, deliverables writing, and the deploy order (backends, then the
frontends whose backend answers) with its summary."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ... import procs
from .. import deliverables
from ..config import Service
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
        flag = "" if project.target == "local" else f" -- --target {project.target}"
        log(f"stop them with `nox -s stop{flag}`; check them with `nox -s verify{flag}`")
    return failed
