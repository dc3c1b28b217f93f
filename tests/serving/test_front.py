"""The buffering front (``hw5kit.serving.http.worker.BufferingThreadWorker``) under gunicorn with
a model-free app: a thread gets a request only once all of it has arrived, slow and silent
clients hold no thread, deadlines answer 408, and HTTP/1.1 framing (keep-alive, pipelining,
chunked bodies, 100-continue, oversized headers) still works."""

from __future__ import annotations

import json
import socket
import sys
import time

import pytest

from hw5kit import procs
from hw5kit.bench import stress
from hw5kit.serving.http.front import COMPLETE, HAND_OVER, NEED_MORE, RequestFrame

from ..conftest import ROOT, subprocess_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("front")
    port = procs.free_port()
    env = subprocess_env(
        tmp, HW5_READ_TIMEOUT="2", HW5_MIN_UPLOAD_KBPS="64", HW5_FRONT_BUFFER_MB="1"
    )
    env["PYTHONPATH"] += f":{ROOT}"
    cmd = [
        sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--threads", "4",
        "--worker-class", "hw5kit.serving.http.worker.BufferingThreadWorker",
        "--worker-connections", "1000", "tests.support.tinyapp:app",
    ]  # fmt: skip
    process = procs.start("front", cmd, log_path=tmp / "front.log", env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    procs.wait_http(f"{url}/", timeout=60, process=process)
    yield url, port
    process.stop()


def raw(port: int, data: bytes, *, timeout: float = 10.0, half_close: bool = True) -> bytes:
    """Send ``data``, then read until the server closes (after closing our side first, unless
    ``half_close`` is off: a client that closes its side is gone, and the front drops it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def bodies(answer: bytes) -> list[dict]:
    out = []
    for part in answer.split(b"HTTP/1.1 ")[1:]:
        head, _, rest = part.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        field = next(x for x in lines if x.lower().startswith(b"content-length"))
        length = int(field.split(b":")[1])
        out.append({"status": int(head[:3]), **json.loads(rest[:length])})
    return out


def test_four_threads_are_not_held_by_sixty_four_slow_clients(front):
    url, _ = front
    for kind in ("headers", "body", "idle"):
        figures = stress.slow_clients(url, clients=64, kind=kind, seconds=3, probe_path="/x")
        assert figures.connected == 64
        assert figures.as_dict()["probes_unanswered"] == 0, figures.as_dict()
        assert max(p for p in figures.probes if p is not None) < 1.0, figures.as_dict()


def test_the_app_reads_a_buffered_body_without_waiting(front):
    _, port = front
    body = b"z" * 300_000
    request = (
        b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % len(body)
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request + body[:1000])
        time.sleep(0.8)  # the rest comes late: the app must not be waiting for it
        s.sendall(body[1000:])
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    (got,) = bodies(answer)
    assert got["status"] == 200 and got["bytes"] == len(body) and got["arrived"]
    assert got["read_seconds"] < 0.2


def test_uploads_past_the_buffer_limit_wait_for_room_and_all_arrive(front):
    """1 MiB of room here: 12 concurrent uploads of 600 kB and 1.5 MB (those alone) take turns."""
    import concurrent.futures

    _, port = front

    def upload(size: int) -> dict:
        body = b"u" * size
        head = b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(head % size)
            s.sendall(body)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        return bodies(answer)[0]

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        sizes = [600_000] * 6 + [1_500_000] * 3 + [600_000] * 3
        answers = list(pool.map(upload, sizes))
    assert [(a["status"], a["bytes"]) for a in answers] == [(200, n) for n in sizes]


def test_deadlines_answer_408_and_close(front):
    _, port = front
    start = time.monotonic()
    late_head = raw(port, b"POST /x HTTP/1.1\r\nHost: x\r\n", half_close=False)
    # the client said nothing more: 408 at the header deadline (2 s here)
    assert late_head.startswith(b"HTTP/1.1 408"), late_head[:200]
    assert b'"request_timeout"' in late_head
    assert 1.5 < time.monotonic() - start < 8
    # a body of 100 kB gets the header deadline plus 100 kB at the 64 KiB/s floor: about 3.5 s
    start = time.monotonic()
    late_body = raw(
        port,
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"y" * 10,
        half_close=False,
    )
    took = time.monotonic() - start
    assert late_body.startswith(b"HTTP/1.1 408") and b"body did not arrive" in late_body
    assert 3.0 < took < 12, took
    # a connection that sends nothing is closed without an answer
    assert raw(port, b"", half_close=False) == b""


def test_keep_alive_pipelining_chunked_and_continue_still_work(front):
    _, port = front
    two = (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\nwxyz\r\n2\r\n12\r\n0\r\nTrailer-X: 1\r\n\r\n"
        b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answers = bodies(raw(port, two))
    assert [(a["status"], a["path"], a["bytes"]) for a in answers] == [
        (200, "/a", 3), (200, "/b", 6), (200, "/c", 0),
    ]  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /d HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n"
            b"Connection: close\r\n\r\n"
        )
        assert s.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"hello")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.count(b"100 Continue") == 0, answer  # sent once, by the front
    assert bodies(answer)[0]["bytes"] == 5


def test_oversized_and_malformed_heads_are_answered_by_the_parser(front):
    _, port = front
    huge = raw(port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert huge.startswith(b"HTTP/1.1 414"), huge[:100]
    fields = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 8000) for i in range(120))
    many = raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    assert many.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), many[:100]
    smuggle = raw(
        port,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
    )
    assert smuggle.startswith(b"HTTP/1.1 400"), smuggle[:100]


@pytest.mark.parametrize(
    ("chunks", "outcome"),
    [
        ([b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"], COMPLETE),
        ([b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"], COMPLETE),
        ([b"\r\nGET / HTTP/1.1\nHost: x\n\n"], COMPLETE),
        ([b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"], NEED_MORE),
        ([b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", b"cde"], COMPLETE),
        ([b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"], HAND_OVER),
        ([b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n"], HAND_OVER),
        ([b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"], HAND_OVER),
        ([b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab"], NEED_MORE),
        ([b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"], COMPLETE),
        ([b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], HAND_OVER),
        ([b"GET /" + b"a" * 5000], HAND_OVER),
        ([b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"], HAND_OVER),
    ],
)
def test_request_framing(chunks, outcome):
    frame = RequestFrame(max_head=4096, max_body=1_000_000)
    result = None
    for chunk in chunks:
        result = frame.feed(chunk)
    assert result == outcome
