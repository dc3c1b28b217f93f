"""Serving under real load and attack, as users run it (issue 16's three measurements).

Each measurement drives a server that was started exactly as its image starts it (see
``start_backend``: ``gunicorn -c python:hw5kit.serving.gunicorn_conf``, no tuning variable) and
returns plain figures; ``python -m hw5kit.bench stress`` prints them, the tests assert on them.

* ``closed_loop``: N clients upload real photos (the labelled photos shipped in packages), each
  sending its next request when the last is answered; every answer's status is counted.
* ``slow_clients``: N connections that send their request a byte at a time (headers, or a body
  after complete headers, or nothing at all) while a probe times ``GET /hello``.
* ``decode_flood``: N concurrent uploads of a generated 16-bit greyscale PNG just under the pixel
  limit, while the server's resident memory (its whole process tree) is sampled; then one real
  photo must still classify.

Everything is bounded: request counts, durations and socket timeouts.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import selectors
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths, procs
from ..paths import ROOT
from ..photos import PHOTOS
from . import procstats
from .load import HttpClient, Request, percentile, upload_requests

# variables that tune the server: a measurement "as users run it" starts without any of them
TUNING_PREFIXES = ("HW5_", "GUNICORN_", "WEB_CONCURRENCY")
KEEP = ("HW5_LOG_FORMAT",)


def production_env(torch_home: Path, **extra: str) -> dict[str, str]:
    """This checkout's code and the baked weights; no ``HW5_*`` tuning variable."""
    env = {
        k: v
        for k, v in os.environ.items()
        if (not k.startswith(TUNING_PREFIXES) or k in KEEP)
        and k not in ("PORT", "SERVING_PORT", "MODEL_NAME", "MODELS", "SECRET_KEY")
    }
    env["PYTHONPATH"] = paths.pythonpath()
    env["TORCH_HOME"] = str(torch_home)
    env.update(extra)
    return env


def image_command(app: str = "backend_v1", python: str = sys.executable) -> list[str]:
    """The backend images' CMD (``Dockerfile.backend_v1``): the port comes from ``PORT``."""
    return [
        python, "-m", "gunicorn", "-c", "python:hw5kit.serving.gunicorn_conf",
        "--chdir", str(ROOT / "apps" / app), "app:app",
    ]  # fmt: skip


def start_backend(
    workdir: Path, torch_home: Path, *, app: str = "backend_v1", env: Mapping[str, str] = ()
) -> procs.Process:
    """A backend started as its image starts it, on a free loopback port, ready."""
    port = procs.free_port()
    environ = production_env(torch_home, PORT=str(port), HW5_BIND_HOST="127.0.0.1", **dict(env))
    proc = procs.start(
        f"stress-{app}",
        image_command(app),
        log_path=workdir / f"{app}-{port}.log",
        env=environ,
        url=f"http://127.0.0.1:{port}",
    )
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=180, process=proc)
    except BaseException:
        proc.stop()
        raise
    return proc


def photo_uploads(names: list[str] | None = None) -> list[Request]:
    """Multipart uploads of the labelled photos that are installed."""
    files = {}
    for name, item in PHOTOS.items():
        if names and name not in names:
            continue
        try:
            files[name] = item.path.read_bytes()
        except (FileNotFoundError, OSError):
            continue
    if not files:
        raise RuntimeError("no labelled photo is installed (scikit-image, scikit-learn, ...)")
    return upload_requests(files, None)


# ---- closed-loop load -------------------------------------------------------------------------
@dataclass
class LoadFigures:
    concurrency: int
    sent: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)  # status (or exception name) -> count
    latencies: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.sent - self.statuses.get(200, 0)

    def as_dict(self) -> dict:
        ok = self.statuses.get(200, 0)
        return {
            "concurrency": self.concurrency,
            "requests": self.sent,
            "ok": ok,
            "errors": self.errors,
            "error_rate": round(self.errors / self.sent, 4) if self.sent else None,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items(), key=str)},
            "throughput": round(ok / self.seconds, 1) if self.seconds else None,
            "p50_ms": _ms(percentile(self.latencies, 50)),
            "p99_ms": _ms(percentile(self.latencies, 99)),
            "max_ms": _ms(max(self.latencies) if self.latencies else None),
            "samples": self.samples,
        }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def closed_loop(
    base: str,
    requests: list[Request],
    *,
    concurrency: int,
    total: int,
    max_seconds: float = 120.0,
    path: str = "/predict",
) -> LoadFigures:
    """``concurrency`` clients send ``total`` requests in all (fewer if ``max_seconds`` runs
    out), each on its own kept-alive connection, no retry: every 503 counts."""
    figures = LoadFigures(concurrency)
    lock = threading.Lock()
    left = [total]
    stop_at = time.monotonic() + max_seconds

    def client(index: int) -> None:
        conn = HttpClient(base, path=path, timeout=60.0)
        i = index
        try:
            while time.monotonic() < stop_at:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                req = requests[i % len(requests)]
                i += concurrency
                t0 = time.perf_counter()
                try:
                    status, data = conn.post(req)
                except (http.client.HTTPException, OSError) as exc:
                    status, data = type(exc).__name__, str(exc).encode()
                elapsed = time.perf_counter() - t0
                with lock:
                    figures.sent += 1
                    figures.statuses[status] += 1
                    if status == 200:
                        figures.latencies.append(elapsed)
                    elif len(figures.samples) < 5:
                        figures.samples.append(f"{status}: {data[:160]!r}")
        finally:
            conn.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max_seconds + 90)
    figures.seconds = time.perf_counter() - start
    return figures


# ---- slow clients -------------------------------------------------------------------------------
SLOW_KINDS = ("headers", "body", "idle")


@dataclass
class SlowFigures:
    clients: int
    kind: str
    seconds: float = 0.0
    probes: list[float | None] = field(default_factory=list)  # s, None: no answer in time
    connected: int = 0
    closed_by_server: int = 0
    answers: Counter = field(default_factory=Counter)  # what the slow clients finally got

    def as_dict(self) -> dict:
        answered = [p for p in self.probes if p is not None]
        return {
            "clients": self.clients,
            "kind": self.kind,
            "seconds": round(self.seconds, 1),
            "connected": self.connected,
            "probes": len(self.probes),
            "probes_unanswered": len(self.probes) - len(answered),
            "probe_p50_ms": _ms(percentile(answered, 50)),
            "probe_max_ms": _ms(max(answered) if answered else None),
            "closed_by_server": self.closed_by_server,
            "slow_client_answers": dict(self.answers),
        }


def _slow_request(kind: str, host: str, port: int) -> tuple[bytes, bytes]:
    """(sent at once, dripped a byte at a time) for one slow client."""
    body = b"x" * 4096
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    if kind == "headers":
        return b"", head + body
    if kind == "body":
        return head, body
    return b"", b""  # idle: connect and send nothing


def probe(base: str, path: str = "/hello", timeout: float = 5.0) -> float | None:
    """Seconds until ``GET path`` answers 200 on a new connection, None if it does not."""
    parts = base.split("://", 1)[1].split(":")
    t0 = time.perf_counter()
    try:
        conn = http.client.HTTPConnection(parts[0], int(parts[1]), timeout=timeout)
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        conn.close()
    except (OSError, http.client.HTTPException):
        return None
    return time.perf_counter() - t0 if response.status == 200 else None


def slow_clients(
    base: str,
    *,
    clients: int = 64,
    kind: str = "headers",
    seconds: float = 8.0,
    interval: float = 1.0,
    probe_path: str = "/hello",
    probe_every: float = 0.25,
    probe_timeout: float = 5.0,
) -> SlowFigures:
    """``clients`` connections drip their request a byte every ``interval`` seconds for
    ``seconds`` while ``GET probe_path`` is timed every ``probe_every`` seconds."""
    if kind not in SLOW_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SLOW_KINDS)}")
    host, port = base.split("://", 1)[1].split(":")
    figures = SlowFigures(clients, kind)
    sel = selectors.DefaultSelector()
    socks: dict[socket.socket, list] = {}
    for _ in range(clients):
        s = socket.create_connection((host, int(port)), timeout=5)
        first, drip = _slow_request(kind, host, int(port))
        if first:
            s.sendall(first)
        s.setblocking(False)
        socks[s] = [drip, b""]
        sel.register(s, selectors.EVENT_READ)
    figures.connected = len(socks)
    stop = threading.Event()

    def dripper() -> None:
        next_drip = time.monotonic()
        while not stop.is_set() and socks:
            now = time.monotonic()
            if now >= next_drip:
                for s, state in list(socks.items()):
                    if state[0]:
                        try:
                            s.send(state[0][:1])
                            state[0] = state[0][1:]
                        except OSError:
                            figures.closed_by_server += 1
                            _forget(sel, socks, s)
                next_drip = now + interval
            for key, _ in sel.select(timeout=0.05):
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    socks[s][1] += data
                    continue
                figures.closed_by_server += 1
                answer = socks[s][1].split(b" ", 2)[1:2]
                figures.answers[answer[0].decode() if answer else "none"] += 1
                _forget(sel, socks, s)

    thread = threading.Thread(target=dripper, daemon=True)
    start = time.monotonic()
    thread.start()
    try:
        time.sleep(min(1.5, seconds / 4))  # the slow clients are in place
        while time.monotonic() - start < seconds:
            t0 = time.monotonic()
            figures.probes.append(probe(base, probe_path, probe_timeout))
            time.sleep(max(0.0, probe_every - (time.monotonic() - t0)))
    finally:
        stop.set()
        thread.join(10)
        figures.seconds = time.monotonic() - start
        for s in list(socks):
            _forget(sel, socks, s)
        sel.close()
    return figures


def _forget(sel, socks: dict, s: socket.socket) -> None:
    with contextlib.suppress(KeyError, ValueError):
        sel.unregister(s)
    socks.pop(s, None)
    s.close()


# ---- decode memory -------------------------------------------------------------------------------
def sixteen_bit_png(width: int, height: int) -> bytes:
    """A 16-bit greyscale PNG of ``width`` x ``height`` that compresses to a few dozen kB (every
    row the same gradient: PNG's Up filter makes the rows after the first zeros)."""
    import numpy as np
    from PIL import Image

    row = (np.arange(width, dtype=np.uint32) * 65535 // max(1, width - 1)).astype(np.uint16)
    array = np.broadcast_to(row, (height, width))
    image = Image.fromarray(np.ascontiguousarray(array))  # uint16: mode I;16
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=9)
    return out.getvalue()


def near_limit_size(max_pixels: int = 40_000_000) -> tuple[int, int]:
    """6000 x 6600 under the default 40 M pixel limit (the issue's image), scaled to others."""
    if max_pixels >= 6000 * 6600:
        return 6000, 6600
    side = int(max_pixels**0.5 * 0.99)
    return side, side


@dataclass
class FloodFigures:
    uploads: int
    image_bytes: int
    width: int
    height: int
    rss_before: int = 0
    rss_peak: int = 0
    rss_after: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    after: str | None = None  # the real photo's top-1 after the flood, or what went wrong

    def as_dict(self) -> dict:
        mib = 2**20
        return {
            "uploads": self.uploads,
            "image": f"{self.width}x{self.height} 16-bit greyscale PNG, {self.image_bytes:,} bytes",
            "rss_before_mib": round(self.rss_before / mib),
            "rss_peak_mib": round(self.rss_peak / mib),
            "rss_after_mib": round(self.rss_after / mib),
            "seconds": round(self.seconds, 1),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "after": self.after,
        }


@contextmanager
def rss_sampler(pid: int, every: float = 0.01) -> Iterator[list[int]]:
    """Samples the resident memory of ``pid``'s process tree; the list holds the peak."""
    peak = [procstats.sample(pid).rss]
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], procstats.sample(pid).rss)
            stop.wait(every)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join(5)


def decode_flood(
    base: str,
    pid: int,
    *,
    uploads: int = 8,
    size: tuple[int, int] | None = None,
    path: str = "/predict",
    after_photo: str = "chelsea.png",
) -> FloodFigures:
    width, height = size or near_limit_size()
    data = sixteen_bit_png(width, height)
    request = upload_requests({"big16.png": data}, None)[0]
    figures = FloodFigures(uploads, len(data), width, height)
    figures.rss_before = procstats.sample(pid).rss
    lock = threading.Lock()

    def send() -> None:
        client = HttpClient(base, path=path, timeout=120.0)
        try:
            status, _ = client.post(request)
        except (http.client.HTTPException, OSError) as exc:
            status = type(exc).__name__
        finally:
            client.close()
        with lock:
            figures.statuses[status] += 1

    start = time.perf_counter()
    with rss_sampler(pid) as peak:
        threads = [threading.Thread(target=send, daemon=True) for _ in range(uploads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
    figures.seconds = time.perf_counter() - start
    figures.rss_peak = peak[0]
    figures.rss_after = procstats.sample(pid).rss
    real = upload_requests({after_photo: PHOTOS[after_photo].path.read_bytes()}, None)[0]
    client = HttpClient(base, path=path, timeout=60.0)
    try:
        status, body = client.post(real)
        figures.after = (
            json.loads(body).get("category") if status == 200 else f"HTTP {status}: {body[:200]!r}"
        )
    except (http.client.HTTPException, OSError) as exc:
        figures.after = f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return figures
