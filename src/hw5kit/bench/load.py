"""A bounded closed-loop load generator: N clients, each sending its next request when the last
one is answered, over one kept-alive HTTP connection each, for a fixed time and count.

Requests carry real photos, either as a URL on the loopback photo server (JSON ``{"url"}``) or
as a multipart upload in the field ``file``; bodies are built once, before the clock starts, so
the client spends as little CPU as it can on the two cores it shares with the server.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

MODES = ("url", "upload")


@dataclass(frozen=True)
class Request:
    body: bytes
    content_type: str
    photo: str


def url_requests(photos_base: str, names: Sequence[str], model: str | None) -> list[Request]:
    out = []
    for name in names:
        payload: dict = {"url": f"{photos_base}/{name}"}
        if model:
            payload["model"] = model
        out.append(Request(json.dumps(payload).encode(), "application/json", name))
    return out


def upload_requests(files: dict[str, bytes], model: str | None) -> list[Request]:
    out = []
    for name, data in files.items():
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode(),
            data,
            b"\r\n",
        ]
        if model:
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n'
                f"{model}\r\n".encode()
            )
        parts.append(f"--{boundary}--\r\n".encode())
        out.append(Request(b"".join(parts), f"multipart/form-data; boundary={boundary}", name))
    return out


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    categories: dict[str, set[str]] = field(default_factory=dict)  # photo -> top-1 labels seen

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


class HttpClient:
    """One client's kept-alive connection to ``base``; ``send`` posts one request."""

    def __init__(
        self,
        base: str,
        *,
        path: str = "/predict",
        timeout: float = 60.0,
        label: Callable[[object], str] | None = None,
    ):
        parts = urlsplit(base)
        self.label = label or (lambda answer: str(answer.get("category")))
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = path
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, req: Request) -> tuple[int, bytes]:
        """(HTTP status, body) of one request; a stale kept-alive connection is retried once."""
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(
                    "POST", self.path, body=req.body, headers={"Content-Type": req.content_type}
                )
                response = self.conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.close()
                return response.status, data
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt:  # a kept-alive connection closed while idle gets one fresh retry
                    raise
        raise AssertionError("unreachable")

    def send(self, req: Request) -> tuple[bool, str]:
        """(True, top-1 label) or (False, what went wrong)."""
        try:
            status, data = self.post(req)
        except (http.client.HTTPException, OSError) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        if status != 200:
            return False, f"HTTP {status}: {data[:200]!r}"
        try:
            return True, self.label(json.loads(data))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            return False, f"unexpected answer ({type(exc).__name__}): {data[:200]!r}"

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Client(Protocol):
    def send(self, payload) -> tuple[bool, str]: ...

    def close(self) -> None: ...


def run_load(
    make_client: Callable[[], Client],
    payloads: Sequence,
    *,
    concurrency: int,
    duration: float,
    warmup: float = 0.0,
    max_requests: int = 100_000,
) -> LoadResult:
    """``concurrency`` closed-loop clients cycle through ``payloads`` for ``warmup`` +
    ``duration`` seconds, at most ``max_requests`` measured requests; only requests started
    after the warm-up count, and the window lasts until the last of them is answered."""
    if not payloads:
        raise ValueError("no requests to send")
    lock = threading.Lock()
    result = LoadResult(concurrency, duration)
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration
    counted = [0]

    def loop(index: int) -> None:
        client = make_client()
        i = index
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                measured = t0 >= measure_from
                if measured:
                    with lock:
                        if counted[0] >= max_requests:
                            return
                        counted[0] += 1
                payload = payloads[i % len(payloads)]
                i += concurrency
                ok, answer = client.send(payload)
                elapsed = time.perf_counter() - t0
                if not measured:
                    continue
                with lock:
                    if ok:
                        result.latencies.append(elapsed)
                        name = getattr(payload, "photo", "?")
                        result.categories.setdefault(name, set()).add(answer)
                    else:
                        result.errors += 1
                        if len(result.error_samples) < 5:
                            result.error_samples.append(answer)
        finally:
            client.close()

    threads = [
        threading.Thread(target=loop, args=(i,), name=f"load-{i}", daemon=True)
        for i in range(concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = max(1e-9, time.perf_counter() - measure_from)
    return result


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), linear between the closest ranks."""
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)
