"""Through gunicorn, the served top-1 (ONNX Runtime, micro-batched) is torch eager's top-1."""

import pytest
import requests

from hw5kit.photos import CORE_PHOTOS, photo
from hw5kit.serving.images import decode_image
from hw5kit.serving.models import OFFLINE_MODELS, load_classifier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def eager_top1():
    """Top-1 label of torch eager, in this process, for every offline model and core photo."""
    out = {}
    images = [decode_image(photo(n).path.read_bytes(), max_pixels=10**8) for n in CORE_PHOTOS]
    for model in OFFLINE_MODELS:
        classifier = load_classifier(model, runtime="torch")
        for name, preds in zip(CORE_PHOTOS, classifier.classify(images, k=1), strict=True):
            out[model, name] = preds[0].label
    return out


@pytest.mark.parametrize("model", OFFLINE_MODELS)
def test_served_top1_is_torch_eager_top1(backend_v2, photo_url, eager_top1, model):
    for name in CORE_PHOTOS:
        r = requests.post(
            f"{backend_v2.url}/predict", json={"url": photo_url(name), "model": model}, timeout=60
        )
        assert r.status_code == 200, r.text
        assert r.json()["category"] == eager_top1[model, name], (model, name, r.json())
    # the backend served from ONNX exports it made in its own TORCH_HOME
    exports = backend_v2.process.log_path.parent / "torch_home" / "hw5kit" / "onnx"
    assert any(exports.glob(f"{model}-*.onnx")), list(exports.glob("*"))
