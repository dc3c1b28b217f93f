"""Running service containers: start, wait for health, look inside, read logs, stop.

Containers use the host network by default, like the local target's processes: a service
listens on ``PORT`` (a free loopback port) and is reached at ``http://127.0.0.1:PORT``. With
``network="none"`` the container has a loopback interface only, so it cannot reach anything
outside itself; it is then checked from the inside (``Container.request`` runs Python in the
container). That is how the tests show that a service starts and classifies with no network.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import procs
from .engine import ContainerError, Engine
from .images import Builder

CONTAINER_LABEL = "hw5kit.container"
NETWORKS = ("host", "none")

# Python run inside a container: one HTTP request to its own port, the answer as JSON on stdout.
# The request body (an image to classify) comes on stdin and is sent as a multipart upload.
_REQUEST_CODE = """
import json, sys, urllib.error, urllib.request, uuid
port, method, path = sys.argv[1:4]
data = sys.stdin.buffer.read() if method == "POST" else None
headers = {}
if data:
    b = uuid.uuid4().hex
    head = f'--{b}\\r\\nContent-Disposition: form-data; name="file"; filename="image"\\r\\n'
    head += "Content-Type: application/octet-stream\\r\\n\\r\\n"
    data = head.encode() + data + f"\\r\\n--{b}--\\r\\n".encode()
    headers["Content-Type"] = f"multipart/form-data; boundary={b}"
req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, headers, method=method)
try:
    with urllib.request.urlopen(req, timeout=60) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
except OSError as e:
    status, body = 0, str(e).encode()
print(json.dumps({"status": status, "body": body.decode("utf-8", "replace")}))
"""


def health_path(service: str) -> str:
    """Where a service says it is ready: Streamlit's health route, else the backend's /readyz."""
    return procs.STREAMLIT_HEALTH if service.startswith("frontend") else "/readyz"


@dataclass
class Container:
    """A running (or stopped) service container started by ``run``."""

    engine: Engine
    name: str
    service: str
    image: str
    port: int
    network: str
    env: dict[str, str] = field(default_factory=dict)
    final_logs: str | None = None
    # with no network: the host URL a relay (relay.py) forwards to the container's port, if any
    published: str | None = None

    @property
    def url(self) -> str | None:
        """The URL from the host, or None when the container has no network and no relay."""
        if self.published:
            return self.published
        return f"http://127.0.0.1:{self.port}" if self.network == "host" else None

    def pid(self) -> int:
        """The PID (on the host) of the container's main process; 0 when it is not running."""
        done = self.engine.call(["inspect", "--format", "{{.State.Pid}}", self.name], check=False)
        text = done.stdout.decode().strip() if done.returncode == 0 else ""
        return int(text) if text.isdigit() else 0

    def running(self) -> bool:
        return self.engine.container_running(self.name)

    def logs(self, tail: int | None = None) -> str:
        """The container's output (kept after ``stop``)."""
        if self.final_logs is not None:
            text = self.final_logs
        else:
            done = self.engine.call(["logs", self.name], check=False)
            text = (done.stdout + done.stderr).decode(errors="replace")
        if tail is not None:
            text = "\n".join(text.splitlines()[-tail:])
        return text

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
        """One HTTP request made from inside the container to its own port: (status, body)."""
        done = self.engine.call(
            ["exec", "-i", self.name, "python", "-c", _REQUEST_CODE, str(self.port), method, path],
            check=False,
            input=body or b"",
            timeout=120,
        )
        if done.returncode != 0:
            raise ContainerError(
                f"running Python inside {self.name} failed (exit {done.returncode}): "
                f"{done.stderr.decode(errors='replace')[-1500:]}"
            )
        answer = json.loads(done.stdout.decode().strip().splitlines()[-1])
        return answer["status"], answer["body"]

    def status(self, path: str) -> int | None:
        """HTTP status of ``path``: from the host, or from inside without a network."""
        if self.url:
            return procs.http_status(f"{self.url}{path}")
        try:
            return self.request("GET", path)[0] or None
        except ContainerError:
            return None

    def wait_ready(
        self,
        path: str | None = None,
        *,
        timeout: float = 180.0,
        progress: Callable[[str], None] | None = None,
    ) -> float:
        """Poll ``path`` (default: the service's health path) until 200; return the seconds."""
        path = path or health_path(self.service)
        start = time.monotonic()
        next_note = start + 10
        last_check = 0.0
        while True:
            status = self.status(path)
            if status == 200:
                return time.monotonic() - start
            now = time.monotonic()
            if now - last_check > 1.0:
                last_check = now
                if not self.running():
                    raise ContainerError(
                        f"container {self.name} ({self.image}) exited before {path} answered; "
                        f"its log ends with:\n{self.logs(tail=40)}"
                    )
            if now - start > timeout:
                raise ContainerError(
                    f"{self.name}: {path} did not answer 200 within {timeout:g} s (last: "
                    f"{status}); its log ends with:\n{self.logs(tail=40)}"
                )
            if progress is not None and now >= next_note:
                progress(f"still waiting for {self.name}{path} ({now - start:.0f} s)")
                next_note = now + 10
            time.sleep(0.2)

    def stop(self, timeout: int = 10) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s; the logs are kept; the container removed."""
        if self.final_logs is None:
            with contextlib.suppress(ContainerError):
                self.final_logs = self.logs()
        self.engine.call(["stop", "-t", str(timeout), self.name], check=False, timeout=timeout + 30)
        self.engine.call(["rm", "-f", self.name], check=False, timeout=60)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run(
    service: str,
    image: str,
    *,
    engine: Engine,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    network: str = "host",
    mounts: Sequence[tuple[Path | str, str]] = (),
    name: str | None = None,
    port_variable: str = "PORT",
    labels: Mapping[str, str] | None = None,
    secret_env: Mapping[str, str] | None = None,
) -> Container:
    """Start ``image`` as ``service``, detached, listening on ``port`` (a free one by default).

    ``env`` is added to the container's environment, with ``port_variable`` (``PORT``, as Cloud
    Run sets it, or ``SERVING_PORT``) set to ``port``; ``mounts`` are ``(host_path,
    container_path)`` pairs, mounted read-only unless the container path ends with ``:rw``;
    ``labels`` are added to the container's (it always has ``hw5kit.container=<service>``);
    ``secret_env`` too, passed by name only (``-e KEY``, the value in the engine's environment).
    """
    if network not in NETWORKS:
        raise ContainerError(f"network must be one of {', '.join(NETWORKS)}, not {network!r}")
    if not engine.image_exists(image):
        raise ContainerError(f"image {image} does not exist: build it first (build {service})")
    port = port or procs.free_port()
    name = name or f"hw5-{service}-{secrets.token_hex(4)}"
    if port_variable not in ("PORT", "SERVING_PORT"):
        raise ContainerError(f"port_variable must be PORT or SERVING_PORT, not {port_variable!r}")
    environ = {port_variable: str(port), **(env or {})}
    args = ["run", "-d", "--name", name, "--network", network]
    args += ["--label", f"{CONTAINER_LABEL}={service}"]
    for key, value in (labels or {}).items():
        args += ["--label", f"{key}={value}"]
    for key, value in environ.items():
        args += ["-e", f"{key}={value}"]
    # secrets by name only: the engine reads their values from its own environment, so they
    # never appear on a command line (ps) nor in this function's error messages
    for key in secret_env or {}:
        args += ["-e", key]
    for host, inside in mounts:
        mode = "rw" if inside.endswith(":rw") else "ro"
        args += ["-v", f"{host}:{inside.removesuffix(':rw')}:{mode}"]
    engine.call([*args, image], timeout=120, env=dict(secret_env or {}))
    return Container(engine, name, service, image, port, network, dict(environ))


def up(
    builder: Builder,
    version: str,
    *,
    env: Mapping[str, str] | None = None,
    build_args: Mapping[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Container]:
    """Build and start ``backend_<version>``, then ``frontend_<version>`` with ``SERVING_URL``
    set to the backend; wait until both are ready. Returns ``{"backend": .., "frontend": ..}``,
    still running (stop them, or ``python -m hw5kit.containers stop --all``). If anything fails,
    what was started is stopped.
    """
    backend, frontend = f"backend_{version}", f"frontend_{version}"
    back_image = builder.build(backend, build_args=build_args).image
    front_image = builder.build(frontend).image
    started: list[Container] = []
    try:
        back = run(backend, back_image, engine=builder.engine, env=env)
        started.append(back)
        back.wait_ready(progress=progress)
        assert back.url is not None
        front = run(frontend, front_image, engine=builder.engine, env={"SERVING_URL": back.url})
        started.append(front)
        front.wait_ready(progress=progress)
    except BaseException:
        for box in started:
            box.stop()
        raise
    return {"backend": back, "frontend": front}


def attach(engine: Engine, name: str) -> Container:
    """A handle on a container started earlier (by ``run``, maybe in another process)."""
    done = engine.call(["inspect", "--format", "{{json .}}", name], check=False)
    if done.returncode != 0:
        raise ContainerError(f"no container named {name!r} (see `python -m hw5kit.containers ps`)")
    info = json.loads(done.stdout.decode())
    if isinstance(info, list):
        info = info[0]
    config = info.get("Config") or {}
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    labels = config.get("Labels") or {}
    port = env.get("PORT") or env.get("SERVING_PORT") or "8000"
    network = (info.get("HostConfig") or {}).get("NetworkMode") or "host"
    return Container(
        engine,
        info.get("Name", name).lstrip("/"),
        labels.get(CONTAINER_LABEL, ""),
        config.get("Image", ""),
        int(port),
        "none" if network == "none" else "host",
        env,
    )


def leftover(engine: Engine) -> list[str]:
    """Names of containers this package started that still exist."""
    out = engine.text(
        ["ps", "-a", "--filter", f"label={CONTAINER_LABEL}", "--format", "{{.Names}}"]
    )
    return [line for line in out.splitlines() if line.strip()]


def remove_leftovers(engine: Engine) -> list[str]:
    names = leftover(engine)
    for name in names:
        engine.call(["rm", "-f", name], check=False, timeout=60)
    return names
