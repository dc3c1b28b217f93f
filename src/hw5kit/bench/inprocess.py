"""Benchmark subject (c): the in-process limit. Our own pipeline (safe fetch or the uploaded
bytes, decode, preprocess, micro-batched inference, top-k) called directly by N threads, with
the same settings as the served backend and no HTTP, Flask or gunicorn in the way.

Runs in a process of its own (``python -m hw5kit.bench inprocess ...``) so that its CPU time and
memory are its own; prints one JSON document with a record per (mode, concurrency).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
from dataclasses import dataclass

from ..photos import PHOTOS
from ..serving.registry import ModelRegistry, settings_loader
from ..serving.service import PredictionService, PredictRequest
from ..serving.settings import ServingSettings
from . import procstats
from .load import MODES, percentile, run_load


@dataclass(frozen=True)
class Payload:
    photo: str
    request: PredictRequest


class ServiceClient:
    def __init__(self, service: PredictionService, timings: list[dict]):
        self.service = service
        self.timings = timings

    def send(self, payload: Payload) -> tuple[bool, str]:
        try:
            answer = self.service.predict(payload.request)
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        self.timings.append(answer["timing_ms"])  # list.append is atomic
        return True, answer["category"]

    def close(self) -> None:
        pass


def payloads(mode: str, model: str, photos_base: str, names: list[str]) -> list[Payload]:
    if mode == "url":
        return [Payload(n, PredictRequest(model=model, url=f"{photos_base}/{n}")) for n in names]
    return [
        Payload(n, PredictRequest(model=model, data=PHOTOS[n].path.read_bytes())) for n in names
    ]


def summarize(result, cpu: float) -> dict:
    lat = result.latencies
    return {
        "requests": result.ok,
        "errors": result.errors,
        "error_samples": result.error_samples,
        "seconds": result.seconds,
        "throughput": result.throughput,
        "p50_ms": _ms(percentile(lat, 50)),
        "p95_ms": _ms(percentile(lat, 95)),
        "p99_ms": _ms(percentile(lat, 99)),
        "cpu_seconds": cpu,
        "cpu_ms_per_image": cpu / result.ok * 1000 if result.ok else None,
        "categories": {k: sorted(v) for k, v in result.categories.items()},
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


class InProcessSubject:
    """Our pipeline loaded once in this process; ``phase`` drives it like a load test."""

    def __init__(self, model: str, photos_base: str, photo_names: list[str]):
        settings = ServingSettings.from_env("v1", {**os.environ, "MODEL_NAME": model})
        self.registry = ModelRegistry(settings.models, loader=settings_loader(settings))
        self.registry.start(background=False)
        self.service = PredictionService(settings, self.registry)
        self.model = model
        self.items = {mode: payloads(mode, model, photos_base, photo_names) for mode in MODES}

    def phase(
        self, mode: str, concurrency: int, duration: float, warmup: float, max_requests: int
    ) -> dict:
        me = os.getpid()
        service = self.service
        marks: dict = {}

        def mark() -> None:
            marks["cpu"] = procstats.sample(me)
            marks["sizes"] = service.batcher.stats()["sizes"]

        timer = threading.Timer(warmup, mark)
        timer.start()
        timings: list[dict] = []
        result = run_load(
            lambda: ServiceClient(service, timings),
            self.items[mode],
            concurrency=concurrency,
            duration=duration,
            warmup=warmup,
            max_requests=max_requests,
        )
        timer.join()
        cpu = procstats.sample(me).cpu_since(marks["cpu"])
        before, after = marks["sizes"], service.batcher.stats()["sizes"]
        batches = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
        record = {"mode": mode, "concurrency": concurrency, **summarize(result, cpu)}
        images = sum(k * v for k, v in batches.items())
        record["mean_batch"] = images / sum(batches.values()) if batches else None
        # where the time goes, per request (median ms): fetch, decode + preprocess, inference
        record["stages_ms"] = (
            {
                stage: statistics.median(t[stage] for t in timings)
                for stage in ("fetch", "preprocess", "inference", "total")
            }
            if timings
            else {}
        )
        return record

    def final(self) -> dict:
        return {
            "model": self.model,
            "inference": self.registry.get(self.model).engine.describe(),
            "rss_bytes": procstats.rss_bytes(os.getpid()),
        }


def main(args) -> int:
    """A line protocol on stdin/stdout: a JSON phase request per line in, a JSON record per
    line out; ``{"ready": ...}`` first, the process summary after stdin closes."""
    subject = InProcessSubject(args.model, args.photos_url, args.photos)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(subject.phase(**json.loads(line))), flush=True)
    print(json.dumps(subject.final()), flush=True)
    return 0
