"""A bounded load session against a live gunicorn backend: good and bad inputs mixed.

``python -m hw5kit.loadtest`` (or ``nox -s loadtest``) starts a backend on 127.0.0.1 (the
catalog's limits, loopback fetches allowed) and a loopback image server, then sends
``--requests`` requests (default 5,000) from ``--concurrency`` clients (default 32): photo
uploads, photo URLs and the cheap cases of the bad-input catalog. It checks that

* every answer is the expected one: 200 for a good request, the catalog's status and code for a
  bad one, or a deliberate 503 (``overloaded``, with ``Retry-After``) when the server is full;
* no other 5xx appears;
* the backend's resident memory (master and workers) at the end is within ``--rss-tolerance``
  (10%) of its level after the warm-up;

and prints the figures (throughput, status counts, latency percentiles, memory). Clients that
get a 503 wait its ``Retry-After`` (at most 1 s) before their next request, as a polite client
would. Exit status 0 when every check holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import procs
from .paths import ROOT
from .photos import CORE_PHOTOS, photo
from .testkit.badinputs import BACKEND_ENV, Case, cases
from .testkit.hostile import HostileServer

DELIBERATE_503 = {"overloaded", "not_ready"}


@dataclass(frozen=True)
class Planned:
    kind: str  # "upload", "url" or the catalog case's name
    case: Case | None = None
    photo: str | None = None


def plan(total: int, *, bad_fraction: float, seed: int, version: str = "v1") -> list[Planned]:
    """A reproducible mix: ``bad_fraction`` catalog cases, the rest uploads and URL fetches of
    the labelled photos, shuffled."""
    rng = random.Random(seed)  # noqa: S311  (a reproducible mix, not a secret)
    bad_cases = [c for c in cases(version) if c.in_load_mix]
    out: list[Planned] = []
    for i in range(total):
        if rng.random() < bad_fraction:
            case = bad_cases[i % len(bad_cases)]
            out.append(Planned(case.name, case=case))
        else:
            kind = "upload" if rng.random() < 0.5 else "url"
            out.append(Planned(kind, photo=rng.choice(CORE_PHOTOS)))
    rng.shuffle(out)
    return out


@dataclass
class Outcome:
    kind: str
    status: int | None
    code: str | None
    seconds: float
    ok: bool
    note: str = ""


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(pid: int) -> int:
    """Resident memory of ``pid`` and its children (gunicorn's master and workers), in bytes."""
    total = _rss_bytes(pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                total += _rss_bytes(int(entry.name))
    return total


@dataclass
class Report:
    requests: int
    concurrency: int
    seconds: float
    statuses: dict[str, int]
    unexpected: list[str]
    server_errors: int
    deliberate_503: int
    good_ok: int
    latency_ms: dict[str, float]
    rss_after_warmup_mb: float
    rss_peak_mb: float
    rss_end_mb: float
    rss_growth: float
    rss_tolerance: float
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return (
            not self.unexpected
            and self.server_errors == 0
            and self.rss_growth <= self.rss_tolerance
        )

    def lines(self) -> list[str]:
        rate = self.requests / self.seconds if self.seconds else 0.0
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        lat = self.latency_ms
        return [
            f"requests      {self.requests} at concurrency {self.concurrency} in "
            f"{self.seconds:.1f} s ({rate:.0f} requests/s)",
            f"statuses      {statuses}",
            f"good answered {self.good_ok} predictions (200); deliberate 503s: "
            f"{self.deliberate_503}; other 5xx: {self.server_errors}",
            f"latency (200) p50 {lat.get('p50', 0):.0f} ms, p95 {lat.get('p95', 0):.0f} ms, "
            f"p99 {lat.get('p99', 0):.0f} ms, max {lat.get('max', 0):.0f} ms",
            f"memory (RSS)  {self.rss_after_warmup_mb:.0f} MB after warm-up, peak "
            f"{self.rss_peak_mb:.0f} MB, end {self.rss_end_mb:.0f} MB "
            f"({self.rss_growth:+.1%}; limit +{self.rss_tolerance:.0%})",
            f"unexpected    {len(self.unexpected)}"
            + "".join(f"\n  {u}" for u in self.unexpected[:20]),
            "PASS" if self.passed else "FAIL",
        ]


class Session:
    """Sends planned requests to ``base``; each client thread keeps its own connection."""

    def __init__(self, base: str, hostile: HostileServer):
        import requests

        self.requests = requests
        self.base = base
        self.hostile = hostile
        self._local = threading.local()
        self._photos = {name: photo(name).path.read_bytes() for name in CORE_PHOTOS}

    def _http(self):
        if not hasattr(self._local, "session"):
            self._local.session = self.requests.Session()
        return self._local.session

    def send(self, item: Planned) -> Outcome:
        http = self._http()
        start = time.perf_counter()
        try:
            if item.case is not None:
                kwargs = item.case.request(self.base, self.hostile.base, self.hostile.closed_port)
                r = http.request(timeout=60, **kwargs)
            elif item.kind == "upload":
                files = {"file": (item.photo, self._photos[item.photo])}
                r = http.post(f"{self.base}/predict", files=files, timeout=60)
            else:
                url = f"{self.hostile.base}/photos/{item.photo}"
                r = http.post(f"{self.base}/predict", json={"url": url}, timeout=60)
        except self.requests.RequestException as exc:
            self._local.session = self.requests.Session()  # start over on a fresh connection
            return Outcome(item.kind, None, None, time.perf_counter() - start, False, repr(exc))
        seconds = time.perf_counter() - start
        try:
            body = r.json()
        except ValueError:
            body = {}
        code = body.get("error", {}).get("code") if isinstance(body, dict) else None
        if r.status_code == 503 and code in DELIBERATE_503:
            ok = "Retry-After" in r.headers
            delay = min(float(r.headers.get("Retry-After", "1") or 1), 1.0)
            time.sleep(delay)
            return Outcome(
                item.kind, 503, code, seconds, ok, "" if ok else "503 without Retry-After"
            )
        if item.case is not None:
            ok = r.status_code == item.case.status and code == item.case.code
        else:
            ok = r.status_code == 200 and photo(item.photo).matches(body.get("category", ""))
        note = "" if ok else f"{r.status_code} {code or ''} {r.text[:160]!r}"
        return Outcome(item.kind, r.status_code, code, seconds, ok, note)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values = sorted(values)
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return {"p50": q[49] * 1000, "p95": q[94] * 1000, "p99": q[98] * 1000, "max": values[-1] * 1000}


def run_against(
    base: str,
    pid: int,
    hostile: HostileServer,
    *,
    requests: int,
    concurrency: int,
    warmup: int,
    bad_fraction: float,
    seed: int,
    rss_tolerance: float,
    progress: Callable[[str], None] = print,
) -> Report:
    session = Session(base, hostile)
    with ThreadPoolExecutor(concurrency, thread_name_prefix="load") as pool:
        progress(f"warm-up: {warmup} requests")
        list(pool.map(session.send, plan(warmup, bad_fraction=bad_fraction, seed=seed + 1)))
        baseline = tree_rss(pid)
        peak = baseline
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.wait(0.5):
                peak = max(peak, tree_rss(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        items = plan(requests, bad_fraction=bad_fraction, seed=seed)
        progress(f"load: {requests} requests from {concurrency} clients")
        start = time.perf_counter()
        outcomes: list[Outcome] = []
        step = max(requests // 10, 1)
        for i, outcome in enumerate(pool.map(session.send, items), 1):
            outcomes.append(outcome)
            if i % step == 0 and i < requests:
                progress(f"  {i}/{requests} ({time.perf_counter() - start:.0f} s)")
        seconds = time.perf_counter() - start
        stop.set()
        sampler.join()
    end = tree_rss(pid)
    peak = max(peak, end)
    statuses = Counter(str(o.status) for o in outcomes)
    server_errors = sum(
        1
        for o in outcomes
        if o.status is not None and o.status >= 500 and not (o.status == 503 and o.ok)
    )
    unexpected = [f"{o.kind}: {o.note}" for o in outcomes if not o.ok]
    good = [o.seconds for o in outcomes if o.status == 200]
    mb = 1024 * 1024
    return Report(
        requests=requests,
        concurrency=concurrency,
        seconds=seconds,
        statuses=dict(statuses),
        unexpected=unexpected,
        server_errors=server_errors,
        deliberate_503=sum(1 for o in outcomes if o.status == 503 and o.ok),
        good_ok=len(good),
        latency_ms=_percentiles(good),
        rss_after_warmup_mb=baseline / mb,
        rss_peak_mb=peak / mb,
        rss_end_mb=end / mb,
        rss_growth=(end - baseline) / baseline if baseline else 0.0,
        rss_tolerance=rss_tolerance,
        kinds=dict(Counter(o.kind if o.kind in ("upload", "url") else "bad" for o in outcomes)),
    )


def run(
    *,
    app: str = "backend_v1",
    requests: int = 5000,
    concurrency: int = 32,
    warmup: int | None = None,
    bad_fraction: float = 0.4,
    seed: int = 5,
    rss_tolerance: float = 0.10,
    env: Mapping[str, str] | None = None,
    workdir: Path | None = None,
    progress: Callable[[str], None] = print,
) -> Report:
    """Start ``app`` under gunicorn on a free loopback port and run the session against it."""
    import tempfile

    workdir = Path(workdir or tempfile.mkdtemp(prefix="hw5-loadtest-"))
    environ = dict(os.environ if env is None else env)
    environ.update(BACKEND_ENV)
    environ["HW5_ALLOW_LOOPBACK"] = "1"
    environ.setdefault("HW5_LOG_LEVEL", "warning")
    port = procs.free_port()
    base = f"http://127.0.0.1:{port}"
    process = procs.start(
        app,
        procs.gunicorn_command(ROOT / "apps" / app, port=port, python=sys.executable),
        log_path=workdir / f"{app}.log",
        env=environ,
        url=base,
    )
    try:
        progress(f"starting {app} on {base} (log: {process.log_path})")
        procs.wait_http(f"{base}/readyz", timeout=180, process=process, progress=progress)
        with HostileServer() as hostile:
            return run_against(
                base,
                process.pid,
                hostile,
                requests=requests,
                concurrency=concurrency,
                warmup=warmup if warmup is not None else max(concurrency * 4, requests // 10),
                bad_fraction=bad_fraction,
                seed=seed,
                rss_tolerance=rss_tolerance,
                progress=progress,
            )
    finally:
        process.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw5kit.loadtest",
        description="Bounded load session against a local gunicorn backend: good and bad "
        "inputs mixed; checks for unexpected answers, 5xx and memory growth, prints figures.",
    )
    parser.add_argument("--app", default="backend_v1", choices=["backend_v1", "backend_v2"])
    parser.add_argument("--requests", type=int, default=5000, help="requests after warm-up")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients")
    parser.add_argument("--warmup", type=int, help="warm-up requests (default: a tenth)")
    parser.add_argument("--bad-fraction", type=float, default=0.4, help="share of bad inputs")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--rss-tolerance", type=float, default=0.10, help="allowed RSS growth")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")
    report = run(
        app=args.app,
        requests=args.requests,
        concurrency=args.concurrency,
        warmup=args.warmup,
        bad_fraction=args.bad_fraction,
        seed=args.seed,
        rss_tolerance=args.rss_tolerance,
    )
    print("\n".join(report.lines()))
    if args.json:
        args.json.write_text(json.dumps(asdict(report) | {"passed": report.passed}, indent=2))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
