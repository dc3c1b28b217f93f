"""int8 models served by backend_v2 under real gunicorn, from a TORCH_HOME baked as an image
build bakes it; and the start-up failure when an int8 model was never made."""

import subprocess

import pytest
import requests

from hw5kit.photos import CORE_PHOTOS, photo
from hw5kit.serving.models import INT8_MODELS, quantization

from ..conftest import start_backend

pytestmark = pytest.mark.slow
MODELS = ("efficientnet_lite0", *INT8_MODELS)


@pytest.fixture(scope="module")
def v2_int8(int8_torch_home, tmp_path_factory):
    backend = start_backend(
        "backend_v2",
        tmp_path_factory.mktemp("v2_int8"),
        MODELS=",".join(MODELS),
        TORCH_HOME=str(int8_torch_home),
    )
    yield backend
    backend.process.stop()
    assert backend.blocked_network() == ""


def classify_upload(base, name, **fields):
    with photo(name).path.open("rb") as fh:
        return requests.post(f"{base}/predict", files={"file": (name, fh)}, data=fields, timeout=60)


def test_v2_lists_the_int8_models_and_describes_them(v2_int8):
    assert requests.get(f"{v2_int8.url}/models", timeout=10).json() == list(MODELS)
    for name in INT8_MODELS:
        meta = requests.get(f"{v2_int8.url}/models/{name}", timeout=10).json()
        assert meta["name"] == name and meta["precision"] == "int8" and meta["loaded"] is True
        quant = meta["quantization"]
        assert quant["quantized_from"] == name.removesuffix("_int8")
        assert quant["recipe_id"] == quantization.recipe_id()
        assert quant["calibration"]["images"] == 63
    fp32 = requests.get(f"{v2_int8.url}/models/efficientnet_lite0", timeout=10).json()
    assert fp32["precision"] == "fp32" and "quantization" not in fp32


@pytest.mark.parametrize("model", INT8_MODELS)
def test_v2_int8_models_classify_the_core_photos_by_url_and_upload(v2_int8, photo_url, model):
    for name in CORE_PHOTOS:
        by_url = requests.post(
            f"{v2_int8.url}/predict", json={"url": photo_url(name), "model": model}, timeout=60
        )
        by_upload = classify_upload(v2_int8.url, name, model=model)
        for r in (by_url, by_upload):
            assert r.status_code == 200, r.text
            assert r.json()["model"] == model
            assert photo(name).matches(r.json()["category"]), (model, name, r.json())
        assert by_url.json()["predictions"] == by_upload.json()["predictions"]


def test_an_int8_model_is_chosen_for_a_session_like_any_other(v2_int8):
    with requests.Session() as s:
        r = s.put(f"{v2_int8.url}/model/efficientnet_lite0_int8", timeout=10)
        assert r.status_code == 200, r.text
        with photo("coffee.png").path.open("rb") as fh:
            answer = s.post(f"{v2_int8.url}/predict", files={"file": fh}, timeout=60).json()
    assert answer["model"] == "efficientnet_lite0_int8" and answer["category"] == "espresso"
    # a caller without that session still gets the default, fp32
    assert classify_upload(v2_int8.url, "coffee.png").json()["model"] == "efficientnet_lite0"


def test_a_missing_int8_model_stops_start_up_naming_the_file_and_the_fix(tmp_path):
    backend = start_backend(
        "backend_v1", tmp_path / "v1", wait=False, MODEL_NAME="efficientnet_lite0_int8"
    )
    try:
        backend.process.popen.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("gunicorn kept running without its int8 model")
    finally:
        backend.process.stop()
    assert backend.process.popen.returncode != 0
    log = backend.process.log_path.read_text()
    expected = tmp_path / "v1" / "torch_home" / "hw5kit" / "onnx"
    assert f"{expected}/efficientnet_lite0_int8-" in log
    assert f"-{quantization.recipe_id()}.onnx" in log
    assert "python -m hw5kit.serving.models.weights bake efficientnet_lite0_int8" in log
    assert backend.blocked_network() == ""
