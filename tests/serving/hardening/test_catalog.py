"""Every bad input of the catalog, sent to a live gunicorn backend: its documented 4xx JSON
error, and the server still serving afterwards. Plus: the docs' tables match the catalog."""

import re
from pathlib import Path

import pytest
import requests

from hw5kit.serving.errors import ERROR_CODES
from hw5kit.testkit import badinputs

from ...conftest import ROOT

pytestmark = pytest.mark.slow
SRC = ROOT / "src" / "hw5kit"


def test_the_catalog_is_large_and_unambiguous():
    names = [case.name for case in badinputs.CATALOG]
    assert len(names) >= 30 and len(set(names)) == len(names)
    for case in badinputs.CATALOG:
        assert 400 <= case.status < 500, case.name
        assert case.code in ERROR_CODES, f"{case.name}: code {case.code} is not documented"
        assert case.status in ERROR_CODES[case.code][0], case.name


def test_every_code_the_package_can_answer_is_documented():
    from hw5kit.serving import errors

    used = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ServingError)
    }
    for path in SRC.rglob("*.py"):
        used |= set(re.findall(r'\bcode="([a-z_]+)"', path.read_text()))
    from hw5kit.serving.http import handlers, worker

    used |= set(handlers._HTTP_CODES.values()) | set(worker._CODES.values())
    assert used - set(ERROR_CODES) == set()


ERRORS_PAGE = ROOT / "docs" / "maintainer" / "errors.md"


def test_the_docs_tables_are_generated_from_the_catalog():
    assert badinputs.PAGES == (ERRORS_PAGE,)
    text = ERRORS_PAGE.read_text()
    assert badinputs.render_page(text) == text, f"{ERRORS_PAGE} is stale: run {badinputs.COMMAND}"
    assert badinputs.main(["docs", "--check"]) == 0
    for case in badinputs.CATALOG:
        assert f"`{case.name}`" in text


def test_the_docs_command_rewrites_a_stale_copy(tmp_path: Path):
    copy = tmp_path / "errors.md"
    stale = ERRORS_PAGE.read_text().replace("`url_ftp`", "`url_gopher`")
    copy.write_text(stale)
    assert badinputs.main(["docs", "--check", "--path", str(copy)]) == 1
    assert copy.read_text() == stale
    assert badinputs.main(["docs", "--path", str(copy)]) == 0
    assert copy.read_text() == ERRORS_PAGE.read_text()


@pytest.mark.parametrize("case", badinputs.cases("v2"), ids=lambda c: c.name)
def test_bad_input_gets_its_documented_error(catalog_backend, hostile, case):
    base = catalog_backend.url
    before = hostile.requests
    kwargs = case.request(base, hostile.base, hostile.closed_port)
    r = requests.request(timeout=30, **kwargs)
    assert r.status_code == case.status, (case.name, r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("application/json"), r.text[:300]
    error = r.json()["error"]
    assert error["code"] == case.code, (case.name, error)
    assert len(error["message"]) > 10
    if case.status not in (414, 431):  # answered by gunicorn before the app
        assert error["request_id"] == r.headers["X-Request-ID"]
    if case.code == "blocked_destination":
        # refused before any connection: the hostile server saw at most the first hop, and
        # the backend's network guard saw no attempt to leave the machine
        assert hostile.requests - before <= (1 if "{remote}" in str(case.json) else 0)
        assert catalog_backend.blocked_network() == ""
    hello = requests.get(f"{base}/hello", timeout=10)
    assert hello.status_code == 200 and hello.text == "Hello!"


def test_the_backend_still_classifies_after_the_whole_catalog(catalog_backend, hostile):
    for case in badinputs.cases("v2"):
        requests.request(timeout=30, **case.request(catalog_backend.url, hostile.base, 9))
    r = requests.post(
        f"{catalog_backend.url}/predict",
        json={"url": f"{hostile.base}/photos/coffee.png"},
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["category"] == "espresso"
    metrics = requests.get(f"{catalog_backend.url}/metrics", timeout=10).text
    assert 'hw5_http_errors_total{code="blocked_destination",route="/predict"}' in metrics
    # not one 5xx along the way (/readyz answers 503 while the model loads, by design)
    fivexx = [
        line
        for line in metrics.splitlines()
        if re.search(r'status="5\d\d"', line) and 'route="/readyz"' not in line
    ]
    assert fivexx == []


def test_a_refused_body_does_not_spoil_the_keep_alive_connection(catalog_backend):
    """A 100 kB JSON body is refused unread (413); the next request on the same connection
    must still be answered (gunicorn alone would drain 64 KiB, then drop the connection)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(catalog_backend.url)
    body = b'{"url": "' + b"a" * 100_000 + b'"}'
    first = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    second = b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(first + second)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 413 ")
    assert b"HTTP/1.1 200 OK" in received and received.endswith(b"Hello!")


def test_loopback_is_refused_unless_explicitly_allowed(backend_factory, hostile):
    """Without HW5_ALLOW_LOOPBACK (the default everywhere but the local target), a URL on this
    machine is refused before any connection: the image server sees nothing."""
    backend = backend_factory("backend_v1", HW5_ALLOW_LOOPBACK="0")
    before = hostile.requests
    port = hostile.base.rsplit(":", 1)[1]
    for url in (
        f"{hostile.base}/photos/coffee.png",
        f"http://localhost:{port}/photos/coffee.png",
        f"http://[::ffff:127.0.0.1]:{port}/photos/coffee.png",
        f"http://2130706433:{port}/photos/coffee.png",
    ):
        r = requests.post(f"{backend.url}/predict", json={"url": url}, timeout=30)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "blocked_destination"
        assert "loopback" in r.json()["error"]["message"]
    assert hostile.requests == before
    assert backend.blocked_network() == ""
