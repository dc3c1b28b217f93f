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
from .load import percentile, run_load


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


def measure(
    model: str,
    *,
    modes: list[str],
    concurrency: list[int],
    duration: float,
    warmup: float,
    max_requests: int,
    photos_base: str,
    photo_names: list[str],
) -> dict:
    settings = ServingSettings.from_env("v1", {**os.environ, "MODEL_NAME": model})
    registry = ModelRegistry(settings.models, loader=settings_loader(settings))
    registry.start(background=False)
    service = PredictionService(settings, registry)
    classifier = registry.get(model)
    records = []
    me = os.getpid()
    for mode in modes:
        items = payloads(mode, model, photos_base, photo_names)
        for n in concurrency:
            marks: dict = {}

            def mark(marks=marks) -> None:
                marks["cpu"] = procstats.sample(me)
                marks["sizes"] = service.batcher.stats()["sizes"]

            timer = threading.Timer(warmup, mark)
            timer.start()
            timings: list[dict] = []
            result = run_load(
                lambda timings=timings: ServiceClient(service, timings),
                items,
                concurrency=n,
                duration=duration,
                warmup=warmup,
                max_requests=max_requests,
            )
            timer.join()
            cpu = procstats.sample(me).cpu_since(marks["cpu"])
            before, after = marks["sizes"], service.batcher.stats()["sizes"]
            batches = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
            record = {"mode": mode, "concurrency": n, **summarize(result, cpu)}
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
            records.append(record)
            print(
                f"  in-process {model} {mode} c{n}: {record['throughput']:.1f} img/s, "
                f"p50 {record['p50_ms']:.1f} ms",
                file=sys.stderr,
                flush=True,
            )
    return {
        "model": model,
        "inference": classifier.engine.describe(),
        "rss_bytes": procstats.rss_bytes(me),
        "records": records,
    }


def main(args) -> int:
    out = measure(
        args.model,
        modes=args.modes,
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        max_requests=args.max_requests,
        photos_base=args.photos_url,
        photo_names=args.photos,
    )
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0
