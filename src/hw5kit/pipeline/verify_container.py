"""verify's checks on the container target (see ``verify.py``): build, image, container,
a photo classified from inside, frontend wiring from inside, and no network at start-up."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .config import Service

if TYPE_CHECKING:
    from .verify import Verifier

FLAG = "-- --target container"

# Run inside a frontend's container: GET SERVING_URL/hello as the frontend would reach it.
_HELLO_CODE = """
import json, os, urllib.request
url = os.environ.get("SERVING_URL", "").rstrip("/") + "/hello"
try:
    with urllib.request.urlopen(url, timeout=20) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode()[:100]}))
except Exception as e:
    print(json.dumps({"status": 0, "body": f"{type(e).__name__}: {e}"}))
"""
# Run inside a container: its network interfaces (from /proc/net/dev).
_INTERFACES_CODE = """
lines = open("/proc/net/dev").read().splitlines()[2:]
print(" ".join(sorted(line.split(":")[0].strip() for line in lines)))
"""


def container_checks(v: Verifier, s: Service, entry: dict, data: Any) -> None:
    from ..containers import ContainerError, attach
    from .targets.container import ContainerTarget, build_id_of

    target = ContainerTarget(v.project)
    where = v._where(s)
    build_id = str(entry["build_id"])
    record = target.builds().get(build_id)
    if not v._add(
        where,
        f"build {build_id}",
        bool(record and record.get("service") == s.name),
        f"image {record['image']} ({record['size'] / 1e6:.0f} MB)" if record else "no such build",
        f"run `nox -s build {FLAG}`",
    ):
        return
    running = target.deployment()["services"].get(s.name)
    try:
        box = attach(target.engine, running["container"]) if running else None
    except ContainerError:
        box = None
    if box is None or not box.running():
        v._add(where, "container", False, "not running", f"run `nox -s deploy {FLAG}`")
        return
    image_id = target.engine.text(["inspect", "--format", "{{.Image}}", box.name])
    v._add(
        where,
        f"container {box.name}",
        build_id_of(image_id) == build_id,
        f"runs image {image_id.removeprefix('sha256:')[:12]} (build {build_id_of(image_id)})",
        f"the container runs another image than the recorded build: run `nox -s deploy {FLAG}`",
    )
    _no_network_at_start(v, s, where, box, running, record)
    if s.kind == "frontend":
        backend = v.config.service(s.backend)
        expected = v.backend_url(backend, data)
        v._wiring(where, box.env.get("SERVING_URL"), expected, backend)
        _frontend_reaches_backend(v, where, box)
    else:
        _classify_inside(v, s, where, box)


def _inside(box, code: str) -> str:
    return box.engine.text(["exec", box.name, "python", "-c", code], timeout=120)


def _classify_inside(v: Verifier, s: Service, where: str, box) -> None:
    from ..containers import ContainerError

    try:
        status, body = box.request("POST", "/predict", v.photo.path.read_bytes())
        category = json.loads(body).get("category") if status == 200 else None
    except (ContainerError, ValueError) as exc:
        status, body, category = 0, str(exc), None
    ok = status == 200 and v.photo.matches(str(category))
    v._add(
        where,
        f"{v.photo.name} classified from inside the container",
        ok,
        f"{category!r}" if status == 200 else f"{status}: {body[:200]}",
        v._redeploy_fix(s),
    )


def _frontend_reaches_backend(v: Verifier, where: str, box) -> None:
    from ..containers import ContainerError

    try:
        answer = json.loads(_inside(box, _HELLO_CODE).splitlines()[-1])
    except (ContainerError, ValueError, IndexError) as exc:
        answer = {"status": 0, "body": str(exc)}
    v._add(
        where,
        "GET SERVING_URL/hello from inside the container",
        answer["status"] == 200 and answer["body"].strip() == "Hello!",
        f"{answer['status']} {answer['body'][:80]!r}",
        f"the frontend cannot reach its backend: redeploy both (`nox -s deploy {FLAG}`)",
    )


def _no_network_at_start(v: Verifier, s: Service, where: str, box, running, record) -> None:
    """Start-up made no network call: the container has no interface but loopback; or, on the
    host network, the same image starts and classifies again with no network at all."""
    from ..containers import ContainerError, run

    what = "no network call at start-up"
    if running.get("network") == "isolated":
        mode = box.engine.text(["inspect", "--format", "{{.HostConfig.NetworkMode}}", box.name])
        try:
            interfaces = _inside(box, _INTERFACES_CODE)
        except ContainerError as exc:
            interfaces = f"? ({exc})"
        v._add(
            where,
            what,
            mode == "none" and interfaces == "lo",
            f"network {mode}, interfaces: {interfaces}; serving reached through the relay",
            f"redeploy (`nox -s deploy {FLAG}`) with HW5_CONTAINER_NETWORK unset, as root",
        )
        return
    try:
        with run(s.name, record["image"], engine=box.engine, network="none") as probe:
            seconds = probe.wait_ready(timeout=180)
            ok, detail = True, f"the image starts with no network in {seconds:.1f} s"
            if s.kind != "frontend":
                status, body = probe.request("POST", "/predict", v.photo.path.read_bytes())
                category = json.loads(body).get("category") if status == 200 else None
                ok = status == 200 and v.photo.matches(str(category))
                detail += f" and classifies {v.photo.name} as {category!r}"
    except (ContainerError, ValueError) as exc:
        ok, detail = False, str(exc)[:300]
    v._add(
        where,
        what + " (host network: checked with a copy started with no network)",
        ok,
        detail,
        "the service needs the network to start: bake what it fetches into the image",
    )
