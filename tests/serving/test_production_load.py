"""Issue 16's acceptance, as users run the backend: started exactly as its image starts it
(``gunicorn -c python:hw5kit.serving.gunicorn_conf``, no HW5_* tuning variable), on 127.0.0.1.

* closed-loop uploads of the labelled photos at concurrency 16, 32 and 64: no error at all
  (requests wait in the admission queue instead of getting 503s);
* 64 clients dripping their requests a byte a second (headers, or a body after complete
  headers), and 200 idle connections: ``/hello`` still answers within a second;
* 8 concurrent uploads of a 16-bit greyscale PNG just under the pixel limit, then 8 of other
  worst cases (16-bit RGBA, a palette with transparency, a large JPEG): the server's whole
  process tree stays under 1.5 GiB resident, and it still classifies a photo afterwards;
* the same load and slow clients through v3's gateway.

Counts and durations are bounded; the deadlines are generous where the property is not speed,
so a busy machine does not fail them (the queue's own deadline is 10 s).
"""

from __future__ import annotations

import io
import os
import sys

import numpy as np
import pytest
from PIL import Image

from hw5kit import procs
from hw5kit.bench import stress
from hw5kit.bench.load import upload_requests
from hw5kit.photos import PHOTOS, photo

from ..conftest import ROOT, SUPPORT

pytestmark = pytest.mark.slow
GIB = 2**30
LIMIT = int(1.5 * GIB)
LOAD = ((16, 64), (32, 96), (64, 192))  # (concurrency, requests)


def guarded(tmp) -> dict[str, str]:
    """Only what the tests need on top of the image's environment: the network guard."""
    return {
        "PYTHONPATH": os.pathsep.join([str(SUPPORT / "netguard"), str(ROOT / "src")]),
        "NETGUARD_LOG": str(tmp / "netguard.log"),
    }


@pytest.fixture(scope="module")
def backend(tmp_path_factory, baked_home):
    tmp = tmp_path_factory.mktemp("production")
    proc = stress.start_backend(tmp, baked_home, env=guarded(tmp))
    tuning = [k for k in stress.production_env(tmp) if k.startswith("HW5_")]
    assert set(tuning) <= set(stress.KEEP), tuning
    yield proc
    proc.stop()
    assert not (tmp / "netguard.log").exists() or (tmp / "netguard.log").read_text() == ""


def check_load(url: str, path: str = "/predict") -> None:
    requests_ = stress.photo_uploads()
    for concurrency, total in LOAD:
        figures = stress.closed_loop(
            url, requests_, concurrency=concurrency, total=total, max_seconds=150, path=path
        )
        summary = figures.as_dict()
        assert figures.sent == total, summary
        assert figures.errors == 0, summary


def test_uploads_at_concurrency_16_32_and_64_get_no_error(backend):
    check_load(backend.url)


def test_hello_answers_within_a_second_while_64_clients_drip(backend):
    for kind in ("headers", "body"):
        figures = stress.slow_clients(backend.url, clients=64, kind=kind, seconds=5)
        summary = figures.as_dict()
        assert figures.connected == 64 and summary["probes_unanswered"] == 0, summary
        assert max(figures.probes) < 1.0, summary
    idle = stress.slow_clients(backend.url, clients=200, kind="idle", seconds=3)
    assert idle.as_dict()["probes_unanswered"] == 0 and max(idle.probes) < 1.0, idle.as_dict()


def test_sixteen_bit_near_limit_pngs_stay_under_1_5_gib(backend):
    figures = stress.decode_flood(backend.url, backend.pid, uploads=8)
    summary = figures.as_dict()
    assert figures.width * figures.height < 40_000_000 <= (figures.width + 100) * figures.height
    assert figures.rss_peak < LIMIT, summary
    assert figures.statuses == {200: 8}, summary
    assert figures.after in PHOTOS["chelsea.png"].expected, summary


def _worst_cases() -> list[tuple[str, bytes]]:
    """Other images near the limit that cost the most per pixel to decode (all compress well)."""
    w, h = 6000, 6600
    out = []
    ramp = np.tile((np.arange(w, dtype=np.uint32) * 65535 // (w - 1)).astype(np.uint16), (h, 1))
    rgba = np.dstack([ramp >> 8, ramp[:, ::-1] >> 8, ramp >> 8, np.full_like(ramp, 160)])
    buf = io.BytesIO()
    Image.fromarray(rgba.astype(np.uint8), "RGBA").save(buf, "PNG", compress_level=9)
    out.append(("rgba.png", buf.getvalue()))
    del rgba
    palette = Image.fromarray((ramp >> 8).astype(np.uint8), "L").convert("P")
    palette.info["transparency"] = 0
    buf = io.BytesIO()
    palette.save(buf, "PNG", transparency=0, compress_level=9)
    out.append(("palette.png", buf.getvalue()))
    buf = io.BytesIO()
    Image.fromarray((ramp >> 8).astype(np.uint8), "L").convert("RGB").save(buf, "JPEG", quality=50)
    out.append(("big.jpg", buf.getvalue()))
    buf = io.BytesIO()
    Image.fromarray((ramp >> 8).astype(np.uint8), "L").convert("RGBA").save(
        buf, "WEBP", lossless=True
    )
    out.append(("big.webp", buf.getvalue()))
    return out


def test_other_worst_case_images_stay_under_1_5_gib(backend):
    cases = _worst_cases()
    uploads = [r for name, data in cases for r in upload_requests({name: data}, None)]
    with stress.rss_sampler(backend.pid) as peak:
        figures = stress.closed_loop(backend.url, uploads, concurrency=8, total=8, max_seconds=150)
    summary = figures.as_dict()
    assert figures.errors == 0, summary
    assert peak[0] < LIMIT, (peak[0] / 2**20, summary)
    after = stress.closed_loop(
        backend.url, stress.photo_uploads(["chelsea.png"]), concurrency=1, total=1
    )
    assert after.errors == 0, after.as_dict()


# ---- the same through v3's gateway ------------------------------------------------------------
@pytest.fixture(scope="module")
def gateway(tmp_path_factory, baked_home):
    """backend_v3 (efficientnet_lite0) as its image starts it, and the gateway in front."""
    from hw5kit.pipeline import config, render

    tmp = tmp_path_factory.mktemp("production-gateway")
    proc = stress.start_backend(
        tmp, baked_home, app="backend_v3",
        env={**guarded(tmp), "MODEL_NAME": "efficientnet_lite0", "MODELS": "efficientnet_lite0"},
    )  # fmt: skip
    cfg = config.load(ROOT / "deployment.yaml")
    # every model's route to the one backend: only efficientnet_lite0's is used
    addresses = {s.name: proc.url for s in cfg.v3_backends()}
    spec = tmp / "openapi_v3.yaml"
    spec.write_text(render.render_openapi(cfg, ROOT / "templates", addresses))
    port = procs.free_port()
    gw = procs.start(
        "gateway",
        [sys.executable, "-m", "hw5kit.gateway", "--spec", str(spec), "--port", str(port)],
        log_path=tmp / "gateway.log",
        env=stress.production_env(tmp, **guarded(tmp)),
        cwd=ROOT,
        url=f"http://127.0.0.1:{port}",
    )
    try:
        procs.wait_http(f"{gw.url}/healthz", timeout=60, process=gw)
        yield gw
    finally:
        gw.stop()
        proc.stop()


def test_through_the_gateway_no_error_at_16_32_64_and_slow_clients_hold_nothing(gateway):
    check_load(gateway.url, path="/model/efficientnet_lite0/predict")
    for kind in ("headers", "body"):
        figures = stress.slow_clients(
            gateway.url, clients=64, kind=kind, seconds=4, probe_path="/healthz"
        )
        summary = figures.as_dict()
        assert summary["probes_unanswered"] == 0 and max(figures.probes) < 1.0, summary


def test_the_photo_classifies_the_same_through_the_gateway(gateway):
    data = photo("coffee.png").path.read_bytes()
    figures = stress.closed_loop(
        gateway.url, upload_requests({"coffee.png": data}, None), concurrency=1, total=1,
        path="/model/efficientnet_lite0/predict",
    )  # fmt: skip
    assert figures.errors == 0, figures.as_dict()
