"""Inference engines: ONNX Runtime agrees with torch eager, OpenVINO in bfloat16 keeps the top-1,
exports are cached and checked, and every way it can fail falls back (auto: OpenVINO to ONNX
Runtime to torch) or says what is wrong (an explicit runtime)."""

import logging
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from hw5kit.photos import CORE_PHOTOS, PHOTOS, photo
from hw5kit.serving.errors import ModelUnavailable
from hw5kit.serving.images import decode_image
from hw5kit.serving.models import OFFLINE_MODELS, get_spec, load_classifier, runtime
from hw5kit.serving.models.weights import bake, weights_path

from ..conftest import ROOT, SUPPORT


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    return tmp_path / "th"


def images(names):
    return [decode_image(PHOTOS[n].path.read_bytes(), max_pixels=10**8) for n in names]


@pytest.mark.parametrize("name", OFFLINE_MODELS)
def test_onnx_top1_matches_torch_eager_on_every_labelled_photo(name, torch_home):
    onnx = load_classifier(name, runtime="onnx")
    eager = load_classifier(name, runtime="torch")
    assert onnx.runtime == "onnx" and eager.runtime == "torch"
    names = list(PHOTOS)
    batch = np.stack([onnx.preprocess(im) for im in images(names)])
    p_onnx, p_eager = onnx.predict_proba(batch), eager.predict_proba(batch)
    assert p_onnx.shape == (len(names), 1000)
    np.testing.assert_allclose(p_onnx.sum(axis=1), 1, atol=1e-4)
    assert list(p_onnx.argmax(1)) == list(p_eager.argmax(1))
    assert np.abs(p_onnx - p_eager).max() < 1e-3
    for photo_name, preds in zip(CORE_PHOTOS, onnx.classify(images(CORE_PHOTOS)), strict=True):
        assert photo(photo_name).matches(preds[0].label), (name, photo_name, preds[:3])


def test_the_export_is_cached_and_a_cached_start_never_imports_torch(torch_home):
    spec = get_spec("efficientnet_lite0")
    first = load_classifier("efficientnet_lite0", runtime="onnx", threads=1)
    cached = runtime.onnx_cache_path(spec, weights_path(spec))
    assert cached.is_file() and cached.parent == torch_home / "hw5kit" / "onnx"
    assert first.metadata()["inference"] == {"runtime": "onnx", "threads": 1, "onnx": str(cached)}
    code = (
        "import sys; from hw5kit.serving.models import load_classifier; "
        "c = load_classifier('efficientnet_lite0'); "
        "print(c.runtime, c.engine.source, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"TORCH_HOME": str(torch_home), "PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin"},
    ).stdout.split()
    assert out == [runtime.resolve_runtime("auto"), str(cached), "False"]


def test_an_unreadable_cache_file_is_exported_again(torch_home, caplog):
    spec = get_spec("efficientnet_lite0")
    cached = runtime.onnx_cache_path(spec, weights_path(spec))
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not an onnx file")
    with caplog.at_level(logging.WARNING):
        classifier = load_classifier("efficientnet_lite0")
    assert classifier.runtime == runtime.resolve_runtime("auto")
    assert "ignoring unreadable ONNX cache file" in caplog.text
    assert cached.stat().st_size > 1_000_000
    assert cached.stat().st_mode & 0o777 == 0o644


def test_a_cache_that_cannot_be_written_still_serves_from_memory(torch_home, caplog):
    torch_home.mkdir(parents=True)
    (torch_home / "hw5kit").write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        classifier = load_classifier("efficientnet_lite0")
    assert classifier.runtime == "onnx" and classifier.engine.source == "exported in memory"
    assert "could not cache the ONNX export" in caplog.text


def test_without_onnxruntime_auto_uses_torch_and_onnx_says_what_to_install(torch_home, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert runtime.resolve_runtime("auto") == "torch"
    classifier = load_classifier("efficientnet_lite0")
    assert classifier.runtime == "torch"
    (preds,) = classifier.classify(images(["coffee.png"]))
    assert preds[0].label == "espresso"
    with pytest.raises(ModelUnavailable, match="onnxruntime is not installed"):
        load_classifier("efficientnet_lite0", runtime="onnx")


def test_an_export_that_disagrees_with_torch_is_not_used(torch_home, monkeypatch, caplog):
    monkeypatch.setattr(runtime, "EXPORT_TOLERANCE", -1.0)  # nothing can agree this closely
    with caplog.at_level(logging.WARNING):
        assert load_classifier("efficientnet_lite0").runtime == "torch"
    assert "differs from torch" in caplog.text
    assert not (torch_home / "hw5kit" / "onnx").exists() or not any(
        (torch_home / "hw5kit" / "onnx").iterdir()
    )
    with pytest.raises(ModelUnavailable, match="ONNX Runtime cannot serve efficientnet_lite0"):
        load_classifier("efficientnet_lite0", runtime="onnx")


def test_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="runtime must be one of auto, openvino, onnx, torch"):
        runtime.resolve_runtime("tensorrt")
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp32"):
        runtime.resolve_precision("fp8")


needs_bf16 = pytest.mark.skipif(
    not runtime.bf16_native(), reason="OpenVINO reports no native bfloat16 on this CPU"
)


@needs_bf16
@pytest.mark.parametrize("name", OFFLINE_MODELS)
def test_openvino_bf16_is_the_default_and_keeps_fp32s_top1_on_every_labelled_photo(
    name, torch_home
):
    served = load_classifier(name, threads=2)
    fp32 = load_classifier(name, runtime="onnx", threads=2)
    assert served.runtime == "openvino"
    assert served.metadata()["inference"]["precision"] == "bf16"
    assert served.engine.source == fp32.engine.source  # the same ONNX file
    names = list(PHOTOS)
    batch = np.stack([fp32.preprocess(im) for im in images(names)])
    p_bf16, p_fp32 = served.predict_proba(batch), fp32.predict_proba(batch)
    assert p_bf16.shape == (len(names), 1000)
    np.testing.assert_allclose(p_bf16.sum(axis=1), 1, atol=2e-2)
    assert list(p_bf16.argmax(1)) == list(p_fp32.argmax(1))
    assert np.abs(p_bf16 - p_fp32).max() < 0.2  # bfloat16 keeps 8 bits of mantissa
    # one batch or one image at a time, from other threads: the same answers
    with ThreadPoolExecutor(4) as pool:
        rows = list(
            pool.map(lambda i: served.predict_proba(batch[i : i + 1])[0], range(len(names)))
        )
    np.testing.assert_allclose(np.stack(rows), p_bf16, atol=2e-2)


@needs_bf16
def test_loading_openvino_calls_no_one(torch_home, tmp_path):
    """``import openvino`` sends a usage event to Google Analytics unless its conversion tools
    stay unimported: a served model's start must make no connection beyond loopback."""
    load_classifier("efficientnet_lite0", runtime="onnx")  # the export, in this process
    guard_log = tmp_path / "netguard.log"
    code = (
        "import time; from hw5kit.serving.models import load_classifier; "
        "c = load_classifier('efficientnet_lite0'); time.sleep(1); print(c.runtime)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={
            "TORCH_HOME": str(torch_home),
            "PYTHONPATH": f"{SUPPORT / 'netguard'}:{ROOT / 'src'}",
            "NETGUARD_LOG": str(guard_log),
            "HOME": str(tmp_path),  # no consent file from an earlier run
            "PATH": "/usr/bin",
        },
    ).stdout.split()
    assert out == ["openvino"]
    assert not guard_log.exists() or guard_log.read_text() == ""


@needs_bf16
def test_fp32_precision_keeps_onnx_runtime_and_openvino_can_be_asked_for(torch_home):
    assert load_classifier("efficientnet_lite0", precision="fp32").runtime == "onnx"
    explicit = load_classifier("efficientnet_lite0", runtime="openvino", precision="fp32")
    assert explicit.runtime == "openvino"
    assert explicit.metadata()["inference"]["precision"] == "fp32"
    (preds,) = explicit.classify(images(["coffee.png"]))
    assert preds[0].label == "espresso"


def test_without_openvino_auto_uses_onnx_and_openvino_says_what_to_install(torch_home, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert runtime.resolve_runtime("auto") == "onnx"
    assert load_classifier("efficientnet_lite0").runtime == "onnx"
    with pytest.raises(ModelUnavailable, match="openvino is not installed"):
        load_classifier("efficientnet_lite0", runtime="openvino")


@needs_bf16
def test_a_cache_that_cannot_be_written_falls_back_from_openvino_to_onnx(torch_home, caplog):
    torch_home.mkdir(parents=True)
    (torch_home / "hw5kit").write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        classifier = load_classifier("efficientnet_lite0")
    assert classifier.runtime == "onnx"
    assert "serving with ONNX Runtime instead of OpenVINO" in caplog.text
    with pytest.raises(ModelUnavailable, match="OpenVINO cannot serve efficientnet_lite0"):
        load_classifier("efficientnet_lite0", runtime="openvino")


def test_bake_exports_onnx_next_to_the_weights(tmp_path):
    home = tmp_path / "baked"
    bake(["efficientnet_lite0"], home, log=lambda m: None)
    exports = list((home / "hw5kit" / "onnx").glob("efficientnet_lite0-*.onnx"))
    assert len(exports) == 1
    bare = tmp_path / "bare"
    bake(["efficientnet_lite0"], bare, log=lambda m: None, onnx=False)
    assert (bare / "hub" / "checkpoints").is_dir() and not (bare / "hw5kit").exists()


def test_bake_keeps_the_weights_when_the_export_disagrees(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "EXPORT_TOLERANCE", -1.0)
    said = []
    written = bake(["efficientnet_lite0"], tmp_path / "home", log=said.append)
    assert written[0].is_file()
    assert any("no ONNX export" in m and "served with torch" in m for m in said), said
    assert not list((tmp_path / "home").glob("hw5kit/onnx/*.onnx"))
