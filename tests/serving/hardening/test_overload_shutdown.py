"""Overload (bounded in-flight work, a quick 503 past it) and graceful shutdown under load, on
live gunicorn backends. Requests are held in flight by a loopback image server that answers
only when the test says so, so nothing here depends on timing except the 10 s exit bound that
Cloud Run imposes."""

import os
import signal
import threading
import time

import pytest
import requests

from hw5kit.photos import photo

from ...support import httpserver as hs

pytestmark = pytest.mark.slow
COFFEE = photo("coffee.png").path.read_bytes()


class HeldImages:
    """A loopback server whose ``/hold/<n>`` answers the coffee photo once ``release()``."""

    def __init__(self):
        self.gate = threading.Event()
        self.arrived = threading.Semaphore(0)

        def hold(h):
            self.arrived.release()
            self.gate.wait(60)
            hs.send(h, 200, COFFEE, {"Content-Type": "image/png"})

        self.routes = {f"/hold/{i}": hold for i in range(64)}

    def wait_arrivals(self, n: int, timeout: float = 60) -> None:
        for _ in range(n):
            assert self.arrived.acquire(timeout=timeout), "a held request never arrived"


def post_url(base: str, url: str, results: list, **headers) -> None:
    try:
        r = requests.post(f"{base}/predict", json={"url": url}, headers=headers, timeout=60)
        results.append((r.status_code, r.json()))
    except requests.RequestException as exc:
        results.append((None, repr(exc)))


def test_past_the_limit_requests_wait_and_only_a_full_queue_gets_a_quick_503(backend_factory):
    backend = backend_factory(
        # one worker: the queue's order and occupancy are a process's (test_workers: several)
        "backend_v1",
        HW5_MAX_INFLIGHT="2",
        HW5_QUEUE_LENGTH="1",
        HW5_THREADS="8",
        HW5_WORKERS="1",
    )
    held = HeldImages()
    with hs.serve(held.routes) as images:
        results: list = []
        threads = [
            threading.Thread(target=post_url, args=(backend.url, f"{images}/hold/{i}", results))
            for i in range(3)
        ]
        for t in threads[:2]:
            t.start()
        held.wait_arrivals(2)  # both slots taken, their fetches waiting
        threads[2].start()  # the third waits in the queue: no 503 for it
        deadline = time.monotonic() + 30
        while (
            "hw5_predictions_queued 1.0"
            not in requests.get(f"{backend.url}/metrics", timeout=10).text
        ):
            assert time.monotonic() < deadline, "the third request never queued"
            time.sleep(0.05)
        with photo("chelsea.png").path.open("rb") as fh:  # the queue is full: 503 at once
            r = requests.post(f"{backend.url}/predict", files={"file": fh}, timeout=30)
        assert r.status_code == 503
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["code"] == "overloaded"
        assert r.json()["error"]["details"] == {"max_in_flight": 2, "queue_length": 1}
        # everything that is not a prediction is still answered
        assert requests.get(f"{backend.url}/hello", timeout=10).text == "Hello!"
        assert requests.get(f"{backend.url}/readyz", timeout=10).status_code == 200
        metrics = requests.get(f"{backend.url}/metrics", timeout=10).text
        assert "hw5_predictions_in_flight 2.0" in metrics
        assert "hw5_predictions_max_in_flight 2.0" in metrics
        assert "hw5_predictions_max_queued 1.0" in metrics
        assert 'hw5_http_errors_total{code="overloaded",route="/predict"} 1.0' in metrics
        held.gate.set()
        for t in threads:
            t.join(60)
    assert [status for status, _ in results] == [200, 200, 200]
    assert all(body["category"] == "espresso" for _, body in results)
    # the slots are free again
    with photo("chelsea.png").path.open("rb") as fh:
        r = requests.post(f"{backend.url}/predict", files={"file": fh}, timeout=30)
    assert r.status_code == 200
    metrics = requests.get(f"{backend.url}/metrics", timeout=10).text
    assert "hw5_predictions_in_flight 0.0" in metrics and "hw5_predictions_queued 0.0" in metrics


def test_a_queued_request_gets_503_at_its_deadline(backend_factory):
    backend = backend_factory(
        "backend_v1",
        HW5_MAX_INFLIGHT="1",
        HW5_QUEUE_LENGTH="4",
        HW5_QUEUE_TIMEOUT="1.5",
        HW5_WORKERS="1",
    )
    held = HeldImages()
    with hs.serve(held.routes) as images:
        results: list = []
        first = threading.Thread(target=post_url, args=(backend.url, f"{images}/hold/0", results))
        first.start()
        held.wait_arrivals(1)
        start = time.monotonic()
        with photo("chelsea.png").path.open("rb") as fh:
            r = requests.post(f"{backend.url}/predict", files={"file": fh}, timeout=30)
        waited = time.monotonic() - start
        held.gate.set()
        first.join(60)
    assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded"
    assert "within 1.5 s" in r.json()["error"]["message"]
    assert 1.0 < waited < 10, waited
    assert results[0][0] == 200


def wait_exit(process, timeout: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.popen.poll() is not None:
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def test_sigterm_under_load_lets_every_request_in_flight_finish(backend_factory):
    in_flight = 16
    # the default workers (several here), each with room for all 16 however they spread
    backend = backend_factory("backend_v1", HW5_THREADS="32", HW5_MAX_INFLIGHT="32")
    held = HeldImages()
    with hs.serve(held.routes) as images:
        results: list = []
        threads = [
            threading.Thread(
                target=post_url,
                args=(backend.url, f"{images}/hold/{i}", results),
                kwargs={"X-Request-ID": f"held-{i}"},
            )
            for i in range(in_flight)
        ]
        for t in threads:
            t.start()
        held.wait_arrivals(in_flight)  # every one in flight: its fetch is being served

        os.kill(backend.process.pid, signal.SIGTERM)  # Cloud Run signals the container's PID 1
        sigterm = time.monotonic()
        # the requests stay in flight for a while after SIGTERM, then are answered
        release = threading.Timer(1.5, held.gate.set)
        release.start()
        for t in threads:
            t.join(60)
        exited = wait_exit(backend.process, 15)
        release.cancel()
    assert exited is not None, "gunicorn did not exit"
    took = time.monotonic() - sigterm
    assert took < 10, f"gunicorn exited {took:.1f} s after SIGTERM; Cloud Run kills at 10 s"
    assert backend.process.popen.returncode == 0
    assert len(results) == in_flight
    failures = [(status, body) for status, body in results if status != 200]
    assert failures == []
    assert all(body["category"] == "espresso" for _, body in results)
    log = backend.process.log_path.read_text()
    assert "Handling signal: term" in log
    assert sum(f'"request_id": "held-{i}"' in log for i in range(in_flight)) == in_flight


def test_a_request_that_would_outlast_the_window_does_not_delay_the_exit(backend_factory):
    """The graceful timeout (8 s) is the bound: a request stuck longer is cut, and the process
    is gone before Cloud Run's 10 s."""
    backend = backend_factory(
        "backend_v1", HW5_FETCH_TOTAL_TIMEOUT="60", HW5_FETCH_READ_TIMEOUT="60"
    )
    held = HeldImages()
    with hs.serve(held.routes) as images:
        results: list = []
        thread = threading.Thread(target=post_url, args=(backend.url, f"{images}/hold/0", results))
        thread.start()
        held.wait_arrivals(1)
        os.kill(backend.process.pid, signal.SIGTERM)
        exited = wait_exit(backend.process, 15)
        held.gate.set()
        thread.join(60)
    assert exited is not None and exited < 10, exited
    assert results and results[0][0] != 200  # cut: the one request that could not finish
