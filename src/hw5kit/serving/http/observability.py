"""Request ids, Prometheus metrics, request logs and the overload limiter of a backend.

Every request gets an id: the caller's ``X-Request-ID`` when it is a plain token (letters,
digits, ``._:-``, at most 128), else a new one. It is echoed in the ``X-Request-ID`` response
header, put in error bodies and in every log line of the request.

Metrics are per process (one gunicorn worker by default, see ``gunicorn_conf``); ``GET /metrics``
serves them in the Prometheus text format. Route labels are Flask's rule (``/models/<name>``),
never the raw path, and the model label is set only once the model is known to exist, so no
caller can create label values at will.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from ..errors import Overloaded
from ..instance import METRICS_ENV

REQUEST_ID_HEADER = "X-Request-ID"
# when the request had fully arrived (time.monotonic()), stamped by the buffering front
ARRIVED_KEY = "hw5.arrived"
_VALID_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_METHODS = {"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"}
_QUIET_ROUTES = {"/healthz", "/readyz", "/metrics"}  # probes and scrapes: DEBUG when fine
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

log = logging.getLogger("hw5kit.serving.requests")
disable_created_metrics()  # no *_created series: they double the output and nobody graphs them


class _RegistryCollector:
    """Model readiness and load times, read from the model registry at scrape time."""

    def __init__(self, registry) -> None:
        self.registry = registry

    def collect(self):
        ready = GaugeMetricFamily(
            "hw5_models_ready", "1 once every configured model is loaded, else 0"
        )
        ready.add_metric([], 1.0 if self.registry.ready else 0.0)
        yield ready
        load = GaugeMetricFamily(
            "hw5_model_load_seconds", "Seconds it took to load each model", labels=["model"]
        )
        if self.registry.ready:
            for name in self.registry.names:
                load.add_metric([name], float(self.registry.get(name).load_seconds))
        yield load


class Metrics:
    """The backend's Prometheus metrics. With several gunicorn workers (``gunicorn_conf`` then
    sets ``PROMETHEUS_MULTIPROC_DIR``) each worker writes its counters, histograms and gauges to
    files there, and a scrape, whichever worker takes it, sums them over the workers (gauges
    of the workers alive: ``livesum``); the process figures and model readiness are those of
    the worker that answers."""

    def __init__(self, model_registry) -> None:
        self.multiprocess = bool(os.environ.get(METRICS_ENV))
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, cpu, fds
        self.registry.register(_RegistryCollector(model_registry))
        reg = self.registry
        live = {"multiprocess_mode": "livesum"}  # ignored in a single process
        self.requests = Counter(
            "hw5_http_requests",
            "HTTP requests answered, by route, method, model and status",
            ["route", "method", "model", "status"],
            registry=reg,
        )
        self.errors = Counter(
            "hw5_http_errors",
            "Error answers by route and stable error code",
            ["route", "code"],
            registry=reg,
        )
        self.latency = Histogram(
            "hw5_http_request_duration_seconds",
            "Time from the request's arrival in the app to its answer",
            ["route", "method", "model"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.in_flight = Gauge(
            "hw5_http_requests_in_flight", "Requests being handled right now", registry=reg, **live
        )
        self.predictions_in_flight = Gauge(
            "hw5_predictions_in_flight",
            "Predictions holding one of the limited slots (fetch, decode, inference)",
            registry=reg,
            **live,
        )
        self.predictions_limit = Gauge(
            "hw5_predictions_max_in_flight",
            "The limit on predictions in flight; past it requests wait in the queue",
            registry=reg,
            **live,
        )
        self.queued = Gauge(
            "hw5_predictions_queued",
            "Predictions waiting for a slot right now",
            registry=reg,
            **live,
        )
        self.queue_limit = Gauge(
            "hw5_predictions_max_queued",
            "The admission queue's length; past it requests get 503 + Retry-After",
            registry=reg,
            multiprocess_mode="max",
        )
        self.queue_wait = Histogram(
            "hw5_prediction_queue_wait_seconds",
            "Time from a prediction's arrival to its slot",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.stages = Histogram(
            "hw5_prediction_stage_seconds",
            "Time spent per prediction stage (fetch, preprocess, inference)",
            ["model", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )

        # what a scrape reads: with several workers, their files summed (read at each collect)
        # plus this worker's process figures and readiness
        self.exposed = self.registry
        if self.multiprocess:
            self.exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.exposed)
            ProcessCollector(registry=self.exposed)
            self.exposed.register(_RegistryCollector(model_registry))

    def exposition(self) -> Response:
        return Response(generate_latest(self.exposed), mimetype=CONTENT_TYPE_LATEST)

    def observe_prediction(self, answer: dict) -> None:
        timing = answer.get("timing_ms") or {}
        for stage in ("fetch", "preprocess", "inference"):
            if stage in timing:
                self.stages.labels(answer.get("model", ""), stage).observe(timing[stage] / 1000)


class _Waiter:
    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.granted = False


class AdmissionQueue:
    """At most ``limit`` predictions in progress; up to ``queue_length`` more wait for a slot,
    first come first served, each until ``timeout`` seconds after its arrival.

    A request gets 503 ``overloaded`` + ``Retry-After`` only when the queue is full, or when it
    would wait past its deadline: at once if the queue ahead of it cannot drain in time at the
    rate slots have been freed lately, else when the deadline passes.
    """

    def __init__(
        self,
        limit: int,
        metrics: Metrics | None = None,
        *,
        queue_length: int = 0,
        timeout: float = 10.0,
    ) -> None:
        if limit < 1:
            raise ValueError("the in-flight limit must be at least 1")
        if queue_length < 0 or timeout < 0:
            raise ValueError("the queue length and timeout must be zero or more")
        self.limit = limit
        self.queue_length = queue_length
        self.timeout = timeout
        self._lock = threading.Lock()
        self._busy = 0
        self._waiters: deque[_Waiter] = deque()
        self._hold = 0.0  # recent seconds a slot is held (moving average), 0 until known
        self._metrics = metrics
        if metrics is not None:
            metrics.predictions_limit.set(limit)
            metrics.queue_limit.set(queue_length)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _refuse(self, why: str, wait: float) -> Overloaded:
        error = Overloaded(
            f"the server is busy: {why}; retry after the Retry-After delay",
            details={"max_in_flight": self.limit, "queue_length": self.queue_length},
        )
        error.retry_after = max(1, math.ceil(wait))
        return error

    def _expected_wait(self, ahead: int) -> float:
        return (ahead // self.limit + 1) * self._hold

    def _acquire(self, arrived: float) -> float:
        deadline = arrived + self.timeout
        with self._lock:
            if self._busy < self.limit and not self._waiters:
                self._busy += 1
                return 0.0
            ahead = len(self._waiters)
            if ahead >= self.queue_length:
                raise self._refuse(
                    f"{self.limit} predictions in progress and {ahead} waiting (the queue is full)",
                    self._expected_wait(ahead),
                )
            expected = self._expected_wait(ahead)
            if time.monotonic() + expected > deadline:
                raise self._refuse(
                    f"{ahead} predictions are waiting; this one would wait about "
                    f"{expected:.1f} s, past the {self.timeout:g} s limit",
                    expected,
                )
            waiter = _Waiter()
            self._waiters.append(waiter)
            self._gauge_queue()
        waiter.event.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if not waiter.granted:
                self._waiters.remove(waiter)
                self._gauge_queue()
                raise self._refuse(
                    f"no prediction slot freed within {self.timeout:g} s", self._hold or 1.0
                )
        return time.monotonic() - arrived

    def _release(self, held: float) -> None:
        with self._lock:
            self._hold = held if not self._hold else 0.8 * self._hold + 0.2 * held
            if self._waiters:  # the slot passes to the first waiter: _busy stays
                waiter = self._waiters.popleft()
                waiter.granted = True
                waiter.event.set()
                self._gauge_queue()
            else:
                self._busy -= 1

    def _gauge_queue(self) -> None:
        if self._metrics is not None:
            self._metrics.queued.set(len(self._waiters))

    @contextmanager
    def slot(self, arrived: float | None = None) -> Iterator[None]:
        """Hold one slot for the block. ``arrived``: when the request arrived
        (``time.monotonic()``; the server's front stamps it), default now."""
        waited = self._acquire(time.monotonic() if arrived is None else arrived)
        gauge = self._metrics.predictions_in_flight if self._metrics else None
        if self._metrics is not None:
            self._metrics.queue_wait.observe(waited)
        if gauge is not None:
            gauge.inc()
        start = time.monotonic()
        try:
            yield
        finally:
            if gauge is not None:
                gauge.dec()
            self._release(time.monotonic() - start)


def request_id_from(value: str | None) -> str:
    if value and _VALID_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def _route() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "(unmatched)"


def _http_request(response: Response, seconds: float) -> dict:
    """The ``httpRequest`` object of Cloud Logging's LogEntry."""
    entry = {
        "requestMethod": request.method if request.method in _METHODS else "OTHER",
        "requestUrl": request.url[:2000],
        "status": response.status_code,
        "responseSize": str(response.calculate_content_length() or 0),
        "latency": f"{seconds:.6f}s",
        "remoteIp": request.headers.get("X-Forwarded-For", request.remote_addr or "")
        .split(",")[0]
        .strip(),
        "protocol": request.environ.get("SERVER_PROTOCOL", ""),
    }
    if request.content_length:
        entry["requestSize"] = str(request.content_length)
    agent = request.headers.get("User-Agent")
    if agent:
        entry["userAgent"] = agent[:300]
    referer = request.headers.get("Referer")
    if referer:
        entry["referer"] = referer[:300]
    return entry


def install(app: Flask, metrics: Metrics) -> None:
    """Request id, metrics and the request log around every request of ``app``."""

    @app.before_request
    def _start() -> None:
        g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        g.started = time.perf_counter()
        g.in_flight = True
        metrics.in_flight.inc()

    @app.after_request
    def _finish(response: Response) -> Response:
        request_id = g.get("request_id") or request_id_from(None)
        response.headers[REQUEST_ID_HEADER] = request_id
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        route = _route()
        method = request.method if request.method in _METHODS else "OTHER"
        model = g.get("model", "")
        status = response.status_code
        metrics.requests.labels(route, method, model, str(status)).inc()
        metrics.latency.labels(route, method, model).observe(seconds)
        code = g.get("error_code")
        if code:
            metrics.errors.labels(route, code).inc()
        if status >= 500:
            level = logging.ERROR if status != 503 else logging.WARNING
        elif status >= 400:
            level = logging.WARNING
        elif route in _QUIET_ROUTES:
            level = logging.DEBUG
        else:
            level = logging.INFO
        if log.isEnabledFor(level):
            extra = {"httpRequest": _http_request(response, seconds), "route": route}
            if model:
                extra["model"] = model
            if code:
                extra["error_code"] = code
            log.log(level, "%s %s %d", method, request.path[:200], status, extra=extra)
        return response

    @app.teardown_request
    def _teardown(exc) -> None:
        if g.pop("in_flight", False):
            metrics.in_flight.dec()
