"""Request ids, Prometheus metrics and JSON logs: in process, then from a live gunicorn."""

import io
import json
import logging
import re
import sys

import pytest
import requests

from hw5kit.photos import photo
from hw5kit.serving.http import create_app
from hw5kit.serving.http.logs import CloudLoggingFormatter, RequestContextFilter, logging_config
from hw5kit.serving.settings import ServingSettings


@pytest.fixture(scope="module")
def app():
    return create_app(ServingSettings(version="v1", load="sync"))


def upload():
    return {"file": (io.BytesIO(photo("coffee.png").path.read_bytes()), "coffee.png")}


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123", True),
        ("req_1.2:3", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("has space", False),
        ("x\u00e9", False),
        ("", False),
    ],
)
def test_request_ids_are_echoed_or_made(app, sent, kept):
    r = app.test_client().get("/hello", headers={"X-Request-ID": sent})
    rid = r.headers["X-Request-ID"]
    assert (rid == sent) is kept
    assert re.fullmatch(r"[A-Za-z0-9._:\-]{1,128}", rid)


def test_error_bodies_carry_the_request_id(app):
    r = app.test_client().post("/predict", json={}, headers={"X-Request-ID": "err-1"})
    assert r.status_code == 400 and r.json["error"]["request_id"] == "err-1"


def test_metrics_count_requests_by_route_model_and_status(app):
    c = app.test_client()
    assert c.post("/predict", data=upload()).status_code == 200
    assert c.post("/predict", json={"url": "http://10.0.0.1/"}).status_code == 403
    assert c.get("/models/nope-1").status_code == 404
    assert c.get("/models/nope-2").status_code == 404
    assert c.open("/hello", method="BREW").status_code == 405
    text = c.get("/metrics").get_data(as_text=True)
    assert c.get("/metrics").headers["Content-Type"].startswith("text/plain")

    def value(sample: str) -> float:
        match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
        assert match, f"no sample {sample}"
        return float(match.group(1))

    predict = 'method="POST",model="efficientnet_lite0",route="/predict"'
    assert value(f'hw5_http_requests_total{{{predict},status="200"}}') >= 1
    assert value(f'hw5_http_requests_total{{{predict},status="403"}}') >= 1
    # the path's name is not a label value: both 404s share the route pattern
    assert value('hw5_http_requests_total{method="GET",model="",route="/models/<name>",'
                 'status="404"}') >= 2  # fmt: skip
    assert "nope-1" not in text
    assert value('hw5_http_requests_total{method="OTHER",model="",route="(unmatched)",'
                 'status="405"}') >= 1  # fmt: skip
    assert value(f"hw5_http_request_duration_seconds_count{{{predict}}}") >= 2
    assert value('hw5_http_request_duration_seconds_bucket{le="+Inf",' + predict + "}") >= 2
    assert value('hw5_http_errors_total{code="blocked_destination",route="/predict"}') >= 1
    assert value('hw5_model_load_seconds{model="efficientnet_lite0"}') > 0
    assert value("hw5_models_ready") == 1
    assert value("hw5_http_requests_in_flight") == 1  # the scrape itself
    assert value("hw5_predictions_in_flight") == 0
    for stage in ("fetch", "preprocess", "inference"):
        assert (
            value(
                f'hw5_prediction_stage_seconds_count{{model="efficientnet_lite0",stage="{stage}"}}'
            )
            >= 1
        )
    assert value("process_resident_memory_bytes") > 50e6


def test_the_formatter_writes_cloud_logging_json():
    record = logging.LogRecord("hw5kit.x", logging.WARNING, __file__, 1, "hi %s", ("there",), None)
    record.httpRequest = {"status": 400}
    entry = json.loads(CloudLoggingFormatter().format(record))
    assert entry["severity"] == "WARNING" and entry["message"] == "hi there"
    assert entry["httpRequest"] == {"status": 400} and entry["logger"] == "hw5kit.x"
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(CloudLoggingFormatter().format(record))
    assert entry["severity"] == "ERROR"
    assert "Traceback" in entry["message"] and "ValueError: boom" in entry["message"]


def test_the_filter_adds_the_request_id_and_trace(app, monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "hw5-demo")
    headers = {"X-Request-ID": "rid-7", "X-Cloud-Trace-Context": "105445aa7843bc8bf206b1/1;o=1"}
    with app.test_request_context("/hello", headers=headers):
        app.preprocess_request()
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
        RequestContextFilter().filter(record)
    entry = json.loads(CloudLoggingFormatter().format(record))
    assert entry["request_id"] == "rid-7"
    assert (
        entry["logging.googleapis.com/trace"] == "projects/hw5-demo/traces/105445aa7843bc8bf206b1"
    )
    assert logging_config("info", "json")["handlers"]["console"]["filters"] == ["request"]


@pytest.mark.slow
def test_a_live_backend_logs_json_lines_cloud_logging_reads(backend_factory, photo_url):
    backend = backend_factory("backend_v1")
    base = backend.url
    r = requests.post(
        f"{base}/predict",
        json={"url": photo_url("coffee.png")},
        headers={"X-Request-ID": "ok-1"},
        timeout=60,
    )
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "ok-1"
    r = requests.post(
        f"{base}/predict", json={"url": "ftp://x/y"}, headers={"X-Request-ID": "b-2"}, timeout=10
    )
    assert r.status_code == 400
    r = requests.get(f"{base}/" + "x" * 9000, timeout=10)  # answered by gunicorn itself
    assert r.status_code == 414 and r.json()["error"]["code"] == "uri_too_long"
    backend.process.stop()

    lines = [line for line in backend.process.log_path.read_text().splitlines() if line.strip()]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a log line is not JSON: {line[:300]}")
    assert all({"severity", "message", "time"} <= set(e) for e in entries)
    by_id = {e.get("request_id"): e for e in entries if "httpRequest" in e}
    ok, bad = by_id["ok-1"], by_id["b-2"]
    assert ok["severity"] == "INFO" and ok["model"] == "efficientnet_lite0"
    http = ok["httpRequest"]
    assert http["requestMethod"] == "POST" and http["status"] == 200
    assert http["requestUrl"].endswith("/predict") and re.fullmatch(r"\d+\.\d+s", http["latency"])
    assert int(http["responseSize"]) > 100 and http["remoteIp"] == "127.0.0.1"
    assert bad["severity"] == "WARNING" and bad["error_code"] == "unsupported_scheme"
    assert bad["httpRequest"]["status"] == 400
    assert any(e["severity"] == "WARNING" and "Request Line is too large" in e["message"]
               for e in entries)  # fmt: skip
    assert any("Handling signal: term" in e["message"] for e in entries)
