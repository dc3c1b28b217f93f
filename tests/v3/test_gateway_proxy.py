"""The local gateway process (``python -m hw5kit.gateway``) against small loopback backends:
routing by x-google-backend, 502 for a backend that is down, 504 past a deadline, API keys,
limits and request ids. The document is rendered from a deployment.yaml like the real one."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

from hw5kit import procs
from hw5kit.pipeline import config, render

from ..conftest import ROOT, subprocess_env

MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
KEY = "test-key-123"


class _Echo(BaseHTTPRequestHandler):
    """A stand-in backend: answers with what it received; /slow/... waits first."""

    delay = 0.0

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.server.delay:  # type: ignore[attr-defined]
            time.sleep(self.server.delay)  # type: ignore[attr-defined]
        out = json.dumps(
            {
                "backend": self.server.name,  # type: ignore[attr-defined]
                "method": self.command,
                "path": self.path,
                "body_bytes": len(body),
                "request_id": self.headers.get("X-Request-ID"),
                "api_key_header": self.headers.get("x-api-key"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:  # quiet
        pass


def _server(name: str, delay: float = 0.0) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.name = name  # type: ignore[attr-defined]
    server.delay = delay  # type: ignore[attr-defined]
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _config(tmp: Path, *, api_key: bool, deadline: float) -> config.Config:
    data = yaml.safe_load((ROOT / "deployment.yaml").read_text())
    data["gateway"]["api_key"] = api_key
    data["gateway"]["deadline"] = deadline
    path = tmp / "deployment.yaml"
    path.write_text(yaml.safe_dump(data))
    return config.load(path)


def _start_gateway(tmp: Path, addresses: dict[str, str], *, api_key: bool, deadline: float):
    cfg = _config(tmp, api_key=api_key, deadline=deadline)
    spec = tmp / "openapi_v3.yaml"
    spec.write_text(render.render_openapi(cfg, ROOT / "templates", addresses))
    port = procs.free_port()
    env = subprocess_env(tmp, HW5_GATEWAY_API_KEYS=KEY if api_key else "")
    process = procs.start(
        "gateway",
        [sys.executable, "-m", "hw5kit.gateway", "--spec", str(spec), "--port", str(port)],
        log_path=tmp / "gateway.log",
        env=env,
        cwd=ROOT,
        url=f"http://127.0.0.1:{port}",
    )
    url = f"http://127.0.0.1:{port}"
    procs.wait_http(f"{url}/healthz", timeout=60, process=process)
    return process, url


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """Three backends: lite0 answers at once, lite1 sleeps past the deadline, lite2 is down."""
    tmp = tmp_path_factory.mktemp("gateway")
    fast, slow = _server("lite0"), _server("lite1", delay=3.0)
    down = procs.free_port()  # nothing listens there
    addresses = {
        "backend_v3_efficientnet_lite0": f"http://127.0.0.1:{fast.server_port}",
        "backend_v3_efficientnet_lite1": f"http://127.0.0.1:{slow.server_port}",
        "backend_v3_efficientnet_lite2": f"http://127.0.0.1:{down}",
    }
    process, url = _start_gateway(tmp, addresses, api_key=False, deadline=0.5)
    yield url
    process.stop()
    fast.shutdown()
    slow.shutdown()


@pytest.fixture(scope="module")
def keyed_gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keyed")
    backend = _server("any")
    addresses = {f"backend_v3_{m}": f"http://127.0.0.1:{backend.server_port}" for m in MODELS}
    process, url = _start_gateway(tmp, addresses, api_key=True, deadline=5)
    yield url
    process.stop()
    backend.shutdown()


def test_routes_each_model_to_its_own_backend_with_the_path_appended(gateway):
    r = requests.post(f"{gateway}/model/efficientnet_lite0/predict", json={"url": "x"}, timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert body["backend"] == "lite0" and body["path"] == "/model/efficientnet_lite0/predict"
    assert body["body_bytes"] == len(json.dumps({"url": "x"}))
    models = requests.get(f"{gateway}/models", timeout=5).json()
    assert models["backend"] == "lite0" and models["path"] == "/models"  # the first model's
    assert requests.get(f"{gateway}/models/efficientnet_lite0", timeout=5).status_code == 200


def test_a_backend_that_is_down_answers_502_at_once_and_the_others_keep_working(gateway):
    start = time.monotonic()
    r = requests.post(f"{gateway}/model/efficientnet_lite2/predict", json={}, timeout=5)
    elapsed = time.monotonic() - start
    assert r.status_code == 502 and r.json()["error"]["code"] == "bad_gateway"
    assert "predict_efficientnet_lite2" in r.json()["error"]["message"]
    assert elapsed < 0.4  # well under the 0.5 s deadline: a refused connection is not waited on
    ok = requests.post(f"{gateway}/model/efficientnet_lite0/predict", json={}, timeout=5)
    assert ok.status_code == 200 and ok.json()["backend"] == "lite0"


def test_a_backend_slower_than_the_deadline_is_504_near_the_deadline(gateway):
    start = time.monotonic()
    r = requests.post(f"{gateway}/model/efficientnet_lite1/predict", json={}, timeout=10)
    elapsed = time.monotonic() - start
    assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
    assert "0.5 s deadline" in r.json()["error"]["message"]
    assert 0.45 < elapsed < 2.0  # the backend would take 3 s


def test_paths_and_methods_outside_the_document_are_refused(gateway):
    r = requests.post(f"{gateway}/model/resnet152/predict", json={}, timeout=5)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = requests.get(f"{gateway}/model/efficientnet_lite0/predict", timeout=5)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"


def test_request_ids_are_forwarded_and_echoed(gateway):
    r = requests.get(f"{gateway}/models", headers={"X-Request-ID": "abc-123"}, timeout=5)
    assert r.json()["request_id"] == "abc-123"
    r = requests.get(f"{gateway}/models", timeout=5)
    assert r.json()["request_id"] and r.headers["X-Request-ID"] == r.json()["request_id"]


def test_a_body_over_the_limit_is_413_without_reaching_the_backend(gateway):
    big = b"x" * (33 * 1024 * 1024)
    r = requests.post(
        f"{gateway}/model/efficientnet_lite0/predict",
        data=big,
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_without_api_key_config_no_key_is_needed(gateway):
    assert requests.get(f"{gateway}/models", timeout=5).status_code == 200


def test_api_key_required_when_enabled(keyed_gateway):
    url = f"{keyed_gateway}/model/efficientnet_lite1/predict"
    missing = requests.post(url, json={}, timeout=5)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthenticated"
    assert "x-api-key" in missing.json()["error"]["message"]
    wrong = requests.post(url, json={}, headers={"x-api-key": "nope"}, timeout=5)
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "permission_denied"
    by_header = requests.post(url, json={}, headers={"x-api-key": KEY}, timeout=5)
    assert by_header.status_code == 200
    assert by_header.json()["api_key_header"] is None  # checked here, not passed on
    by_query = requests.get(f"{keyed_gateway}/models?key={KEY}&top=1", timeout=5)
    assert by_query.status_code == 200 and by_query.json()["path"] == "/models?top=1"


def test_the_gateway_refuses_a_document_with_placeholders_or_keys_it_does_not_have(tmp_path):
    committed = ROOT / "deployment" / "openapi_v3.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "hw5kit.gateway", "--spec", str(committed), "--check"],
        env=subprocess_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "still a placeholder" in done.stderr
    cfg = _config(tmp_path, api_key=True, deadline=5)
    spec = tmp_path / "doc.yaml"
    addresses = {f"backend_v3_{m}": "http://127.0.0.1:9" for m in MODELS}
    spec.write_text(render.render_openapi(cfg, ROOT / "templates", addresses))
    done = subprocess.run(
        [sys.executable, "-m", "hw5kit.gateway", "--spec", str(spec), "--check"],
        env=subprocess_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "HW5_GATEWAY_API_KEYS names none" in done.stderr
