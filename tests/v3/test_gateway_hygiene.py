"""What the local gateway passes on and what it keeps to itself, against a loopback backend that
echoes everything it receives: no cookie shared between callers, hop-by-hop headers (and those
a ``Connection`` header names) dropped both ways, ``X-Forwarded-For`` appended, the API key
neither forwarded nor logged, path parameters kept inside their route."""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from .test_gateway_proxy import KEY, MODELS, _start_gateway


class _Mirror(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        out = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        # a cookie for this caller only, and hop-by-hop headers the caller must not see
        self.send_header("Set-Cookie", f"who={self.headers.get('X-Caller', 'anon')}; Path=/")
        self.send_header("Connection", "keep-alive, X-Upstream-Secret")
        self.send_header("X-Upstream-Secret", "internal")
        self.send_header("Keep-Alive", "timeout=5")
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tmp = tmp_path_factory.mktemp("hygiene")
    addresses = {f"backend_v3_{m}": f"http://127.0.0.1:{server.server_port}" for m in MODELS}
    process, url = _start_gateway(tmp, addresses, api_key=True, deadline=5)
    yield url, process
    process.stop()
    server.shutdown()


def _get(base: str, path: str, headers: dict[str, str]) -> tuple[int, dict, dict]:
    """A raw request (requests would add and merge headers of its own)."""
    host, port = base.split("://")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    response = conn.getresponse()
    body = json.loads(response.read() or b"{}")
    answer_headers = {k.lower(): v for k, v in response.getheaders()}
    conn.close()
    return response.status, body, answer_headers


def test_no_cookie_from_one_caller_reaches_the_next(mirrored):
    url, _ = mirrored
    # one gateway thread serves callers one after the other: several rounds reach them all
    for i in range(40):
        status, body, answer = _get(url, f"/models?key={KEY}", {"X-Caller": f"c{i}"})
        assert status == 200
        assert answer["set-cookie"].startswith(f"who=c{i}")  # the caller's own, passed back
        assert "cookie" not in {k.lower() for k in body["headers"]}, body["headers"]


def test_hop_by_hop_and_connection_named_headers_are_dropped_both_ways(mirrored):
    url, _ = mirrored
    status, body, answer = _get(
        url,
        f"/models?key={KEY}",
        {
            "Connection": "keep-alive, X-Secret-Hop, Upgrade",
            "X-Secret-Hop": "for the gateway only",
            "Keep-Alive": "timeout=99",
            "Upgrade": "websocket",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "TE": "trailers",
            "X-End-To-End": "kept",
        },
    )
    assert status == 200
    sent = {k.lower(): v for k, v in body["headers"].items()}
    for name in ("x-secret-hop", "keep-alive", "upgrade", "proxy-authorization", "te"):
        assert name not in sent, (name, sent)
    assert sent.get("connection", "").lower() in ("", "keep-alive", "close")
    assert sent["x-end-to-end"] == "kept"
    assert "x-upstream-secret" not in answer and "keep-alive" not in answer


def test_x_forwarded_for_is_appended_and_never_replaces_the_caller(mirrored):
    url, _ = mirrored
    _, body, _ = _get(url, f"/models?key={KEY}", {"X-Forwarded-For": "203.0.113.9"})
    sent = {k.lower(): v for k, v in body["headers"].items()}
    assert sent["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    _, body, _ = _get(url, f"/models?key={KEY}", {})
    assert {k.lower(): v for k, v in body["headers"].items()}["x-forwarded-for"] == "127.0.0.1"


def test_the_api_key_is_neither_forwarded_nor_logged(mirrored):
    url, process = mirrored
    secret = KEY
    _, body, _ = _get(url, f"/models?key={secret}&x=1", {})
    assert body["path"] == "/models?x=1"
    _, body, _ = _get(url, "/models", {"x-api-key": secret})
    assert secret not in json.dumps(body)
    r = requests.post(
        f"{url}/model/efficientnet_lite0/predict?key={secret}", json={"url": "x"}, timeout=10
    )
    assert r.status_code == 200 and secret not in r.text
    wrong = requests.get(f"{url}/models?key=not-{secret}-either", timeout=10)
    assert wrong.status_code == 403
    log = process.log_path.read_text()
    assert "GET /models" in log  # the access log is on ...
    assert secret not in log  # ... without the key, right or wrong


@pytest.mark.parametrize(
    ("raw_path", "expected"),
    [
        # an encoded slash, '?', '#' and '%' stay inside the one segment
        ("/models/a%2F..%2F..%2Fhello", "/models/a%2F..%2F..%2Fhello"),
        ("/models/x%3Fkey%3Dabc", "/models/x%3Fkey%3Dabc"),
        ("/models/x%23frag", "/models/x%23frag"),
        ("/models/100%25", "/models/100%25"),
        ("/models/caf%C3%A9", "/models/caf%C3%A9"),
    ],
)
def test_path_parameters_are_encoded_as_one_segment(mirrored, raw_path, expected):
    url, _ = mirrored
    status, body, _ = _get(url, raw_path, {"x-api-key": KEY})
    if status == 404:  # a parameter the route cannot hold is refused, never widened
        return
    assert status == 200 and body["path"] == expected


@pytest.mark.parametrize(
    "raw_path",
    ["/models/..", "/models/.", "/models/%2E%2E", "/model/../predict", "/model/%2e%2e/predict"],
)
def test_dot_segments_never_leave_the_route(mirrored, raw_path):
    url, _ = mirrored
    host, port = url.split("://")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(
        "POST" if raw_path.endswith("predict") else "GET", raw_path, headers={"x-api-key": KEY}
    )
    response = conn.getresponse()
    data = response.read()
    conn.close()
    assert response.status in (400, 404), (response.status, data)
