"""What separate frontend and backend services cost (short answer 5): each one's memory, and the
latency of the extra hop from the frontend to the backend.

``python -m hw5kit.bench hop`` bakes the model (as the image build does), starts a real
``backend_v1`` (gunicorn, ``hw5kit.serving.gunicorn_conf``) and a real ``frontend_v1`` (Streamlit,
``SERVING_URL`` = the backend) on 127.0.0.1, and measures:

* memory: the resident set (RSS) of each service's process tree (gunicorn master + worker;
  the Streamlit process), after start-up and again after every request below was served;
* latency, per request, in interleaved rounds (the order rotating each round, so that a shared
  machine's changing load hits every path alike), for the labelled photos by URL (the backend
  fetches it from a loopback photo server) and by upload (the image bytes cross the hop):

  - ``inprocess``: our pipeline called in this process, no HTTP: what one merged service
    (page and model in the same process) would run;
  - ``direct``: a raw ``POST /predict`` to the backend on a kept-alive connection (as ``curl``
    or another service would call it);
  - ``client``: the frontend's own client code (``hw5kit.frontend.client.ServingClient``) calling
    the backend: exactly the call the frontend service makes for each classification, i.e. the
    hop itself;
  - ``page`` (URL only; needs Playwright and Debian's chromium): a headless browser on the real
    Streamlit page: from the click on the classify button to the answer's label shown. This is
    the whole path of a person using the frontend (browser, Streamlit's websocket, the page's
    script rerun, the hop, the rendering), not the hop alone.

The hop's cost is ``client`` minus ``inprocess`` (the same work, with and without the HTTP
call), and, seen from the backend, the client's round trip minus the backend's own time
(``timing_ms.total`` in its answer). Writes ``results.json`` and ``README.md`` (default
``reports/hop/``).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import procs
from ..paths import ROOT
from ..photos import PHOTOS
from . import procstats
from .harness import photo_server, prepare_in_subprocess, run_meta, start_server, subject_env
from .load import HttpClient, percentile, upload_requests, url_requests

Log = Callable[[str], None]
MiB = 2**20
PATHS = ("inprocess", "direct", "client", "page")
MODES = ("url", "upload")
PATH_TITLES = {
    "inprocess": "in one process (no hop): our pipeline called directly",
    "direct": "backend directly: raw HTTP POST /predict",
    "client": "frontend's client code → backend (the hop)",
    "page": "through the frontend: browser → Streamlit page → backend",
}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
UI_LANG = "fr"


@dataclass
class HopPlan:
    model: str = "efficientnet_lite0"
    rounds: int = 60  # timed requests per path and mode
    warmup: int = 3  # untimed requests per path and mode first
    page_rounds: int = 20  # timed page runs (each is several round trips in the browser)
    browser: bool = True
    photos: list[str] = field(default_factory=lambda: list(PHOTOS))

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.warmup < 0 or self.page_rounds < 0:
            raise ValueError("rounds must be at least 1, warmup and page_rounds at least 0")


SMOKE = {"rounds": 4, "warmup": 1, "page_rounds": 2}


# ---- the paths -----------------------------------------------------------------------------
class InProcess:
    """Our pipeline (fetch or upload, decode, preprocess, batched inference, top-k) in this
    process, loaded from the baked TORCH_HOME with the served backend's settings."""

    def __init__(self, model: str, torch_home: Path):
        from ..serving.registry import ModelRegistry, settings_loader
        from ..serving.service import PredictionService
        from ..serving.settings import ServingSettings
        from .quant import torch_home_env

        env = {**subject_env(torch_home), "MODEL_NAME": model}
        settings = ServingSettings.from_env("v1", env)
        with torch_home_env(torch_home):
            self.registry = ModelRegistry(settings.models, loader=settings_loader(settings))
            t0 = time.perf_counter()
            self.registry.start(background=False)
            # loading the baked ONNX export (what loading a model for each request would cost)
            self.load_seconds = time.perf_counter() - t0
        self.service = PredictionService(settings, self.registry)
        self.model = model

    def send(self, mode: str, photo: str, photos_base: str) -> tuple[str, float | None]:
        from ..serving.service import PredictRequest

        if mode == "url":
            req = PredictRequest(model=self.model, url=f"{photos_base}/{photo}")
        else:
            req = PredictRequest(model=self.model, data=PHOTOS[photo].path.read_bytes())
        answer = self.service.predict(req)
        return answer["category"], answer["timing_ms"]["total"]


class Direct:
    """A raw POST /predict on one kept-alive connection (the bench's load-generator client)."""

    def __init__(self, base: str, photos_base: str, photos: list[str]):
        self.http = HttpClient(base)
        files = {name: PHOTOS[name].path.read_bytes() for name in photos}
        self.bodies = {
            "url": {r.photo: r for r in url_requests(photos_base, photos, None)},
            "upload": {r.photo: r for r in upload_requests(files, None)},
        }

    def send(self, mode: str, photo: str, photos_base: str) -> tuple[str, float | None]:
        status, data = self.http.post(self.bodies[mode][photo])
        if status != 200:
            raise RuntimeError(f"backend answered HTTP {status}: {data[:200]!r}")
        answer = json.loads(data)
        return answer["category"], answer["timing_ms"]["total"]

    def close(self) -> None:
        self.http.close()


class FrontendClient:
    """The frontend's client code, as the page builds it (no cookies, its timeouts)."""

    def __init__(self, base: str):
        from ..frontend.client import ServingClient

        self.client = ServingClient(base)

    def send(self, mode: str, photo: str, photos_base: str) -> tuple[str, float | None]:
        from ..frontend.client import Upload

        image = (
            f"{photos_base}/{photo}"
            if mode == "url"
            else Upload(photo, PHOTOS[photo].path.read_bytes(), "image/*")
        )
        prediction = self.client.predict(image)
        return prediction.top.label, prediction.timing_ms.get("total")


class Page:
    """Headless Chromium on the real Streamlit page: paste the photo's URL, click, wait for the
    answer with the expected label (consecutive photos have different labels, so a stale answer
    never counts)."""

    def __init__(self, frontend_url: str):
        from playwright.sync_api import sync_playwright

        from ..frontend.i18n import Translator

        self.tr = Translator(UI_LANG)
        self._pw = sync_playwright().start()
        try:
            self.browser = self._pw.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            self.page = self.browser.new_page(viewport={"width": 1280, "height": 1500})
            self.page.set_default_timeout(60_000)
            self.page.goto(frontend_url)
            self.page.get_by_role("textbox", name=self.tr("url_label")).wait_for()
        except BaseException:
            self._pw.stop()
            raise

    def run(self, url: str, label: str) -> float:
        box = self.page.get_by_role("textbox", name=self.tr("url_label"))
        box.fill(url)
        button = self.page.get_by_role("button", name=self.tr("classify"))
        start = time.perf_counter()
        button.click()
        # the answer is a success alert, or a warning when the model is unsure
        alerts = self.page.locator('[data-testid^="stAlertContent"]')
        alerts.filter(has_text=label).first.wait_for()
        return time.perf_counter() - start

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.browser.close()
        self._pw.stop()


def browser_problem() -> str | None:
    """Why the page path cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (python -m hw5kit.devenv system chromium installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (the test extra)"
    return None


def page_sequence(labels: dict[str, str], n: int) -> list[str]:
    """``n`` photos in turn, skipping any whose label contains another's or is contained in it
    (the wait matches the label as text), so that consecutive answers always differ."""
    usable = [
        p
        for p, label in labels.items()
        if not any(o != p and (label in labels[o] or labels[o] in label) for o in labels)
    ]
    if len(usable) < 2:
        raise RuntimeError(f"need two photos with distinct labels for the page path: {labels}")
    return [usable[i % len(usable)] for i in range(n)]


# ---- figures -------------------------------------------------------------------------------
def summarize(seconds: list[float], server_ms: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    out = {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "mean_ms": statistics.fmean(ms) if ms else None,
    }
    if server_ms:
        out["server_p50_ms"] = percentile(server_ms, 50)
        # what the request cost outside the backend's own work, request by request
        out["outside_server_p50_ms"] = percentile(
            [a - b for a, b in zip(ms, server_ms, strict=True)], 50
        )
    return out


def hop_figures(latency: dict) -> dict:
    """The extra hop per mode, p50: the frontend client's round trip minus the backend's own
    time (request by request); and client minus in-process, client minus direct."""
    out = {}
    for mode, paths in latency.items():
        client, inproc, direct = paths.get("client"), paths.get("inprocess"), paths.get("direct")
        if not (client and inproc and direct):
            continue
        out[mode] = {
            "client_p50_ms": client["p50_ms"],
            "backend_p50_ms": client.get("server_p50_ms"),
            "hop_ms": client.get("outside_server_p50_ms"),
            "client_minus_inprocess_ms": client["p50_ms"] - inproc["p50_ms"],
            "client_minus_direct_ms": client["p50_ms"] - direct["p50_ms"],
        }
    return out


def memory(proc: procs.Process) -> dict:
    sample = procstats.sample(proc.pid)
    return {"rss_bytes": sample.rss, "processes": sample.processes}


# ---- the run -------------------------------------------------------------------------------
def start_frontend(
    backend: str, torch_home: Path, workdir: Path
) -> tuple[procs.Process, str, float]:
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    app = ROOT / "apps" / "frontend_v1" / "app.py"
    env = subject_env(torch_home, SERVING_URL=backend, UI_LANG=UI_LANG)
    t0 = time.perf_counter()
    proc = procs.start(
        "frontend_v1",
        procs.streamlit_command(app, port=port, python=sys.executable),
        log_path=workdir / "frontend_v1.log",
        env=env,
        url=url,
    )
    try:
        procs.wait_http(url + procs.STREAMLIT_HEALTH, timeout=120, process=proc)
    except BaseException:
        proc.stop()
        raise
    return proc, url, time.perf_counter() - t0


def run(plan: HopPlan, *, command: str, log: Log = print) -> dict:
    started = time.perf_counter()
    results: dict = {"meta": run_meta(command, plan)}
    problem = browser_problem() if plan.browser and plan.page_rounds else "not asked for"
    results["meta"]["page_skipped"] = problem
    loads: list[tuple[float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="hw5-hop-") as tmp:
        workdir = Path(tmp)
        torch_home = workdir / "torch_home"
        log(f"baking {plan.model} (weights and ONNX export, the build step)")
        prepare_in_subprocess([plan.model], torch_home, log)
        with contextlib.ExitStack() as stack:
            photos_base, _ = stack.enter_context(photo_server(workdir, log))
            backend, backend_url, backend_cold = start_server(
                "ours", plan.model, torch_home, workdir
            )
            stack.callback(backend.stop)
            log(f"backend_v1 ready at {backend_url} in {backend_cold:.2f} s")
            frontend, frontend_url, frontend_cold = start_frontend(backend_url, torch_home, workdir)
            stack.callback(frontend.stop)
            log(f"frontend_v1 ready at {frontend_url} in {frontend_cold:.2f} s")
            time.sleep(1.0)  # let both settle before the first memory sample
            services = {
                "backend_v1": {"cold_start_s": backend_cold, "after_start": memory(backend)},
                "frontend_v1": {"cold_start_s": frontend_cold, "after_start": memory(frontend)},
            }
            for name, entry in services.items():
                mem = entry["after_start"]
                log(f"{name}: {mem['rss_bytes'] / MiB:.0f} MiB over {mem['processes']} processes")
            inproc = InProcess(plan.model, torch_home)
            results["model_load_s"] = inproc.load_seconds
            log(f"{plan.model} loaded in this process in {inproc.load_seconds:.2f} s")
            direct = Direct(backend_url, photos_base, plan.photos)
            stack.callback(direct.close)
            senders = {"inprocess": inproc, "direct": direct, "client": FrontendClient(backend_url)}
            latency, labels = measure_requests(plan, senders, photos_base, loads, log)
            if problem is None:
                page = Page(frontend_url)
                stack.callback(page.close)
                latency["url"]["page"] = measure_page(plan, page, photos_base, labels, loads, log)
            services["backend_v1"]["after_run"] = memory(backend)
            services["frontend_v1"]["after_run"] = memory(frontend)
            for name, entry in services.items():
                mem = entry["after_run"]
                log(f"{name} after the run: {mem['rss_bytes'] / MiB:.0f} MiB")
    results["services"] = services
    results["latency"] = latency
    results["labels"] = labels
    results["hop"] = hop_figures(latency)
    results["meta"]["load_averages_during"] = loads
    results["meta"]["load_average_after"] = procstats.load_average()
    results["meta"]["wall_seconds"] = time.perf_counter() - started
    return results


def measure_requests(plan: HopPlan, senders: dict, photos_base: str, loads: list, log: Log):
    """Every (mode, path) ``warmup`` then ``rounds`` times, interleaved and rotating."""
    names = list(senders)
    labels: dict[str, str] = {}
    latency: dict = {}
    for mode in MODES:
        seconds: dict[str, list[float]] = {n: [] for n in names}
        server: dict[str, list[float]] = {n: [] for n in names}
        for i in range(plan.warmup + plan.rounds):
            photo = plan.photos[i % len(plan.photos)]
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                t0 = time.perf_counter()
                label, server_ms = senders[name].send(mode, photo, photos_base)
                elapsed = time.perf_counter() - t0
                seen = labels.setdefault(photo, label)
                if seen != label:
                    raise RuntimeError(f"{photo}: {name} says {label!r}, earlier {seen!r}")
                if i >= plan.warmup:
                    seconds[name].append(elapsed)
                    if server_ms is not None:
                        server[name].append(server_ms)
            if i % 10 == 0:
                loads.append(procstats.load_average())
        latency[mode] = {n: summarize(seconds[n], server[n]) for n in names}
        log(f"{mode}: p50 " + ", ".join(f"{n} {latency[mode][n]['p50_ms']:.1f} ms" for n in names))
    return latency, labels


def measure_page(
    plan: HopPlan, page: Page, photos_base: str, labels: dict, loads: list, log: Log
) -> dict:
    sequence = page_sequence(labels, plan.warmup + plan.page_rounds)
    seconds = []
    for i, photo in enumerate(sequence):
        elapsed = page.run(f"{photos_base}/{photo}", labels[photo])
        if i >= plan.warmup:
            seconds.append(elapsed)
    loads.append(procstats.load_average())
    summary = summarize(seconds, [])
    log(f"page: p50 {summary['p50_ms']:.0f} ms over {summary['n']} runs")
    return summary
