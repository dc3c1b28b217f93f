"""The overload settings and gunicorn configuration: values from the environment and CPUs."""

import importlib
import os
import sys
import threading
import time

import pytest

from hw5kit.serving import capacity
from hw5kit.serving.errors import Overloaded
from hw5kit.serving.http.observability import AdmissionQueue
from hw5kit.serving.settings import (
    ServingSettings,
    SettingsError,
    cpu_count,
    default_instance_workers,
    default_max_inflight,
    default_queue_length,
    http_threads,
)


def test_threads_in_flight_limit_and_queue_follow_the_cpus_and_the_environment():
    cpus = cpu_count()
    assert default_max_inflight({}) == 4 * cpus
    assert default_queue_length({}) == 32 * cpus
    # a thread for every prediction in progress or waiting, and spare ones for probes
    assert http_threads({}) == 4 * cpus + 32 * cpus + 4 * cpus
    assert http_threads({"HW5_THREADS": "6"}) == 6
    # fewer threads asked: the limit and the queue shrink to fit them
    assert default_max_inflight({"HW5_THREADS": "6"}) == min(4 * cpus, 3)
    assert (
        default_max_inflight({"HW5_THREADS": "6"}) + default_queue_length({"HW5_THREADS": "6"}) < 6
    )
    assert default_max_inflight({"HW5_THREADS": "1"}) == 1
    assert default_queue_length({"HW5_THREADS": "1"}) == 0
    # more asked of the queue: more threads
    assert http_threads({"HW5_QUEUE_LENGTH": "100"}) == 4 * cpus + 100 + 4 * cpus
    settings = ServingSettings.from_env("v1", {"HW5_QUEUE_LENGTH": "7", "HW5_QUEUE_TIMEOUT": "2.5"})
    assert (settings.queue_length, settings.queue_timeout) == (7, 2.5)
    assert ServingSettings.from_env("v1", {"HW5_MAX_INFLIGHT": "3"}).max_inflight == 3
    assert ServingSettings.from_env("v1", {"HW5_QUEUE_LENGTH": "0"}).queue_length == 0
    with pytest.raises(SettingsError, match="HW5_MAX_INFLIGHT must be a whole number"):
        ServingSettings.from_env("v1", {"HW5_MAX_INFLIGHT": "lots"})
    with pytest.raises(SettingsError, match="HW5_THREADS must be a whole number of at least 1"):
        http_threads({"HW5_THREADS": "0"})
    with pytest.raises(SettingsError, match="HW5_QUEUE_LENGTH"):
        ServingSettings.from_env("v1", {"HW5_QUEUE_LENGTH": "-1"})
    with pytest.raises(SettingsError, match="HW5_QUEUE_TIMEOUT"):
        ServingSettings.from_env("v1", {"HW5_QUEUE_TIMEOUT": "soon"})


def test_the_plan_admits_no_more_than_its_threads_can_hold():
    for cpus in (1, 2, 4, 8):
        plan = capacity.plan(cpus)
        assert plan.admitted == 36 * cpus and plan.threads > plan.admitted
        for threads in (1, 2, 5, 16, 100):
            small = capacity.plan(cpus, threads=threads)
            assert small.threads == threads and small.inflight >= 1
            assert small.admitted <= max(1, threads - 1) or threads == 1


def test_the_queue_refuses_only_when_full():
    queue = AdmissionQueue(2, queue_length=1, timeout=30)
    with queue.slot(), queue.slot():
        waiter_done = threading.Event()

        def wait_for_a_slot():
            with queue.slot():
                waiter_done.set()

        thread = threading.Thread(target=wait_for_a_slot)
        thread.start()
        deadline = time.monotonic() + 10
        while queue.waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert queue.waiting == 1 and not waiter_done.is_set()
        with pytest.raises(Overloaded) as err, queue.slot():  # the queue is full
            pass
        assert err.value.status == 503 and "queue is full" in err.value.message
        assert int(err.value.headers()["Retry-After"]) >= 1
    thread.join(10)
    assert waiter_done.is_set()  # the slot freed went to the one waiting
    with pytest.raises(RuntimeError), queue.slot():
        raise RuntimeError("a failed prediction still frees its slot")
    with queue.slot(), queue.slot():
        pass


def test_a_waiter_gives_up_at_its_deadline_counted_from_its_arrival():
    queue = AdmissionQueue(1, queue_length=5, timeout=0.3)
    with queue.slot():
        start = time.monotonic()
        with pytest.raises(Overloaded) as err, queue.slot():
            pass
        assert 0.25 <= time.monotonic() - start < 5
        assert "within 0.3 s" in err.value.message
        # arrived long ago: past its deadline already, refused without waiting
        start = time.monotonic()
        with pytest.raises(Overloaded), queue.slot(arrived=time.monotonic() - 1):
            pass
        assert time.monotonic() - start < 0.2
    assert queue.waiting == 0
    with queue.slot():  # nothing leaked
        pass


def test_waiters_are_served_first_come_first_served():
    queue = AdmissionQueue(1, queue_length=10, timeout=30)
    order: list[int] = []
    threads = []
    with queue.slot():
        for i in range(5):

            def take(i=i):
                with queue.slot():
                    order.append(i)

            threads.append(threading.Thread(target=take))
            threads[-1].start()
            deadline = time.monotonic() + 10
            while queue.waiting < i + 1 and time.monotonic() < deadline:
                time.sleep(0.005)
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2, 3, 4]


def test_gunicorn_settings_suit_cloud_run(monkeypatch):
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("SECRET_KEY", "test")  # else the module picks one into os.environ
    monkeypatch.setenv("HW5_THREADS", "12")
    # empty: unset for the module, which sets both; monkeypatch then restores them
    monkeypatch.setenv("HW5_WORKERS", "")
    monkeypatch.setenv("HW5_INSTANCE_DIR", "")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # set by the module with several workers
    sys.modules.pop("hw5kit.serving.gunicorn_conf", None)
    conf = importlib.import_module("hw5kit.serving.gunicorn_conf")
    try:
        assert conf.bind == ["0.0.0.0:9123"]
        # the worker count is capacity's, told to the workers; the 12 threads are the
        # instance's, sized to its 11 admitted, which any one worker may hold (per_worker)
        assert conf.workers == default_instance_workers() >= 1
        assert os.environ["HW5_WORKERS"] == str(conf.workers)
        assert conf.threads == (12 if conf.workers == 1 else 11 + 1)
        assert os.stat(os.environ["HW5_INSTANCE_DIR"]).st_mode & 0o077 == 0  # private
        assert conf.worker_connections >= 1000  # arriving connections hold no thread
        assert conf.graceful_timeout < 10  # inside Cloud Run's SIGTERM-to-SIGKILL window
        assert conf.timeout > conf.graceful_timeout
        assert conf.worker_class.endswith("BufferingThreadWorker")
        assert conf.accesslog is None  # the app logs requests, with httpRequest
        handler = conf.logconfig_dict["handlers"]["console"]
        assert handler["stream"] == "ext://sys.stdout"
        assert conf.logconfig_dict["formatters"]["main"]["()"].endswith("CloudLoggingFormatter")
    finally:
        conf.on_exit(None)
        sys.modules.pop("hw5kit.serving.gunicorn_conf", None)
