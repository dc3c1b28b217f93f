"""The container target's provenance checks for ``verify`` (``ContainerTarget.check_service``):
the build is a recorded image build, the service's container runs that image, a photo is
classified from inside the backend's container (a v3 model's backend: on its
``/model/<name>/predict``), a frontend's container has its backend's URL and reaches it from
inside (v3: lists the models through the gateway), and start-up made no network call. The API
gateway itself is checked over HTTP by ``verify.py``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..deployment import Service
from ..report import Report

if TYPE_CHECKING:
    from ...photos import Photo
    from .container import ContainerTarget

# Run inside a frontend's container: GET <its URL variable>/<path> as the frontend would reach
# it (argv: variable, path), with the v3 frontend's API key when it has one.
_GET_CODE = """
import json, os, sys, urllib.error, urllib.request
var, path = sys.argv[1:3]
key = os.environ.get("API_GATEWAY_KEY", "")
req = urllib.request.Request(
    os.environ.get(var, "").rstrip("/") + path, headers={"x-api-key": key} if key else {}
)
try:
    with urllib.request.urlopen(req, timeout=20) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode()[:300]}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode(errors="replace")[:300]}))
except Exception as e:
    print(json.dumps({"status": 0, "body": f"{type(e).__name__}: {e}"}))
"""
# Run inside a container: its network interfaces (from /proc/net/dev).
_INTERFACES_CODE = """
lines = open("/proc/net/dev").read().splitlines()[2:]
print(" ".join(sorted(line.split(":")[0].strip() for line in lines)))
"""


def check_service(
    target: ContainerTarget,
    s: Service,
    entry: Mapping[str, Any],
    data: Any,
    report: Report,
    photo: Photo,
) -> None:
    from ...containers import ContainerError, attach

    where = report.where(s)
    build_id = str(entry["build_id"])
    record = target.builds().get(build_id)
    if not report.add(
        where,
        f"build {build_id}",
        bool(record and record.get("service") == s.name),
        f"image {record['image']} ({record['size'] / 1e6:.0f} MB)" if record else "no such build",
        f"run `{target.command('build')}`",
    ):
        return
    running = target.deployment()["services"].get(s.name)
    try:
        box = attach(target.engine, running["container"]) if running else None
    except ContainerError:
        box = None
    if box is None or not box.running():
        report.add(where, "container", False, "not running", f"run `{target.command('deploy')}`")
        return
    image_id = target.engine.text(["inspect", "--format", "{{.Image}}", box.name])
    runs = target.build_id_of(image_id)
    report.add(
        where,
        f"container {box.name}",
        runs == build_id,
        f"runs image {image_id.removeprefix('sha256:')[:12]} (build {runs})",
        "the container runs another image than the recorded build: run "
        f"`{target.command('deploy')}`",
    )
    _no_network_at_start(target, report, photo, s, where, box, running, record)
    if s.kind == "frontend":
        target.check_wiring(report, s, box.env, data)
        _frontend_reaches_backend(target, report, s, where, box)
    else:
        _classify_inside(target, report, photo, s, where, box)


def _inside(box, code: str, *args: str) -> str:
    return box.engine.text(["exec", box.name, "python", "-c", code, *args], timeout=120)


def _classify_inside(
    target: ContainerTarget, report: Report, photo: Photo, s: Service, where: str, box
) -> None:
    from ...containers import ContainerError

    # a v3 model's backend: its route behind the gateway
    path = f"/model/{s.model}/predict" if s.model else "/predict"
    try:
        status, body = box.request("POST", path, photo.path.read_bytes())
        category = json.loads(body).get("category") if status == 200 else None
    except (ContainerError, ValueError) as exc:
        status, body, category = 0, str(exc), None
    ok = status == 200 and photo.matches(str(category))
    report.add(
        where,
        f"{photo.name} classified from inside the container"
        + (f" (POST {path})" if s.model else ""),
        ok,
        f"{category!r}" if status == 200 else f"{status}: {body[:200]}",
        target.redeploy_fix(s),
    )


def _frontend_reaches_backend(
    target: ContainerTarget, report: Report, s: Service, where: str, box
) -> None:
    """From inside: v1/v2 ``GET SERVING_URL/hello``; v3 ``GET API_GATEWAY/models`` (with the
    key, when there is one) lists the models."""
    from ...containers import ContainerError

    path = "/models" if s.version == "v3" else "/hello"
    try:
        answer = json.loads(_inside(box, _GET_CODE, s.url_var, path).splitlines()[-1])
    except (ContainerError, ValueError, IndexError) as exc:
        answer = {"status": 0, "body": str(exc)}
    body = answer["body"].strip()
    if s.version == "v3":
        expected = [str(b.model) for b in target.config.v3_backends()]
        try:
            ok = json.loads(body) == expected
        except ValueError:
            ok = False
        fix = f"the frontend cannot reach the gateway: redeploy v3 (`{target.command('deploy')}`)"
    else:
        ok = body == "Hello!"
        fix = f"the frontend cannot reach its backend: redeploy both (`{target.command('deploy')}`)"
    report.add(
        where,
        f"GET {s.url_var}{path} from inside the container",
        answer["status"] == 200 and ok,
        f"{answer['status']} {body[:120]!r}",
        fix,
    )


def _no_network_at_start(
    target: ContainerTarget,
    report: Report,
    photo: Photo,
    s: Service,
    where: str,
    box,
    running,
    record,
) -> None:
    """Start-up made no network call: the container has no interface but loopback; or, on the
    host network, the same image starts and classifies again with no network at all."""
    from ...containers import ContainerError, run

    what = "no network call at start-up"
    if running.get("network") == "isolated":
        mode = box.engine.text(["inspect", "--format", "{{.HostConfig.NetworkMode}}", box.name])
        try:
            interfaces = _inside(box, _INTERFACES_CODE)
        except ContainerError as exc:
            interfaces = f"? ({exc})"
        report.add(
            where,
            what,
            mode == "none" and interfaces == "lo",
            f"network {mode}, interfaces: {interfaces}; serving reached through the relay",
            f"redeploy (`{target.command('deploy')}`) with HW5_CONTAINER_NETWORK unset, as root",
        )
        return
    try:
        with run(s.name, record["image"], engine=box.engine, network="none") as probe:
            seconds = probe.wait_ready(timeout=180)
            ok, detail = True, f"the image starts with no network in {seconds:.1f} s"
            if s.kind != "frontend":
                status, body = probe.request("POST", "/predict", photo.path.read_bytes())
                category = json.loads(body).get("category") if status == 200 else None
                ok = status == 200 and photo.matches(str(category))
                detail += f" and classifies {photo.name} as {category!r}"
    except (ContainerError, ValueError) as exc:
        ok, detail = False, str(exc)[:300]
    report.add(
        where,
        what + " (host network: checked with a copy started with no network)",
        ok,
        detail,
        "the service needs the network to start: bake what it fetches into the image",
    )
