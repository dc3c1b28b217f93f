"""The overload settings and gunicorn configuration: values from the environment and CPUs."""

import importlib
import sys

import pytest

from hw5kit.serving.errors import Overloaded
from hw5kit.serving.http.observability import InflightLimiter
from hw5kit.serving.settings import (
    ServingSettings,
    SettingsError,
    cpu_count,
    default_max_inflight,
    http_threads,
)


def test_threads_and_in_flight_limit_follow_the_cpus_and_the_environment():
    assert http_threads({}) == 8 * cpu_count()
    assert default_max_inflight({}) == 4 * cpu_count()
    assert http_threads({"HW5_THREADS": "6"}) == 6
    assert default_max_inflight({"HW5_THREADS": "6"}) == 3
    assert default_max_inflight({"HW5_THREADS": "1"}) == 1
    env = {"HW5_THREADS": "10"}
    assert ServingSettings.from_env("v1", env).max_inflight == 5
    assert ServingSettings.from_env("v1", {**env, "HW5_MAX_INFLIGHT": "3"}).max_inflight == 3
    with pytest.raises(SettingsError, match="HW5_MAX_INFLIGHT must be a number"):
        ServingSettings.from_env("v1", {"HW5_MAX_INFLIGHT": "lots"})
    with pytest.raises(SettingsError, match="HW5_THREADS must be positive"):
        http_threads({"HW5_THREADS": "0"})


def test_the_limiter_refuses_past_its_limit_and_frees_slots():
    limiter = InflightLimiter(2)
    with limiter.slot(), limiter.slot():
        with pytest.raises(Overloaded) as err, limiter.slot():
            pass
        assert err.value.status == 503 and err.value.headers() == {"Retry-After": "1"}
    with limiter.slot():  # released, even after the refusal
        pass
    with pytest.raises(RuntimeError), limiter.slot():
        raise RuntimeError("a failed prediction still frees its slot")
    with limiter.slot(), limiter.slot():
        pass


def test_gunicorn_settings_suit_cloud_run(monkeypatch):
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("SECRET_KEY", "test")  # else the module picks one into os.environ
    monkeypatch.setenv("HW5_THREADS", "12")
    monkeypatch.delenv("HW5_WORKERS", raising=False)
    sys.modules.pop("hw5kit.serving.gunicorn_conf", None)
    conf = importlib.import_module("hw5kit.serving.gunicorn_conf")
    try:
        assert conf.bind == ["0.0.0.0:9123"]
        assert conf.workers == 1 and conf.threads == 12
        assert conf.graceful_timeout < 10  # inside Cloud Run's SIGTERM-to-SIGKILL window
        assert conf.timeout > conf.graceful_timeout
        assert conf.worker_class.endswith("JSONErrorThreadWorker")
        assert conf.accesslog is None  # the app logs requests, with httpRequest
        handler = conf.logconfig_dict["handlers"]["console"]
        assert handler["stream"] == "ext://sys.stdout"
        assert conf.logconfig_dict["formatters"]["main"]["()"].endswith("CloudLoggingFormatter")
    finally:
        sys.modules.pop("hw5kit.serving.gunicorn_conf", None)
