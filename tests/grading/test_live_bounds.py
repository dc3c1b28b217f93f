"""`--live` contacts the services a submission names: no redirect is followed (a service could
point the grader's POST anywhere) and no more than 2 MiB of an answer is read."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hw5kit import photos
from hw5kit.grading import live

HUGE = 64 * 2**20


class _Service(BaseHTTPRequestHandler):
    hits: list[str]
    sent: list[int]
    elsewhere = ""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.hits.append(f"GET {self.path}")
        body = b"Hello!"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.hits.append(f"POST {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path == "/predict" and self.elsewhere:
            self.send_response(307)
            self.send_header("Location", self.elsewhere)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(HUGE))
        self.end_headers()
        chunk = b" " * 2**16
        try:
            for _ in range(HUGE // len(chunk)):
                self.wfile.write(chunk)
                self.sent[0] += len(chunk)
        except OSError:
            pass  # the grader stopped reading


@pytest.fixture
def service():
    servers = []

    def start(**attrs) -> tuple[str, type]:
        handler = type("Handler", (_Service,), {"hits": [], "sent": [0], **attrs})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", handler

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_redirect_is_not_followed_and_a_huge_answer_is_cut(service):
    elsewhere, other = service()
    url, redirecting = service(elsewhere=f"{elsewhere}/steal")
    ok, lines = live.check_backend(url, photos.photo("chelsea.png"), None)
    assert ok is None and "307" in " ".join(lines)
    assert redirecting.hits == ["GET /hello", "POST /predict"]
    assert other.hits == []  # the grader did not go where the service sent it
    url, huge = service()
    ok, lines = live.check_backend(url, photos.photo("chelsea.png"), None)
    assert ok is None
    assert huge.sent[0] < HUGE  # the grader stopped reading: the rest was never sent
