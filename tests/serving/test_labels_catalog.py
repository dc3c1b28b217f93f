"""Labels, the model catalog and per-model preprocessing."""

import numpy as np
import pytest
from PIL import Image

from hw5kit.serving.errors import UnknownModel
from hw5kit.serving.labels import imagenet_labels
from hw5kit.serving.models import get_spec, known_models, parse_model_list, top_k
from hw5kit.serving.models.preprocessing import Preprocessing, efficientnet_lite, imagenet


def test_labels_are_torchvisions_imagenet_categories_in_order():
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    labels = imagenet_labels()
    assert len(labels) == 1000
    assert list(labels) == list(_IMAGENET_CATEGORIES)
    assert labels[281] == "tabby" and labels[967] == "espresso" and labels[872] == "tripod"


@pytest.mark.parametrize(
    ("name", "size"),
    [("efficientnet_lite0", 224), ("efficientnet_lite1", 240), ("efficientnet_lite2", 260)],
)
def test_lite_specs_use_lite_normalisation_and_their_own_size(name, size):
    spec = get_spec(name)
    assert spec.family == "efficientnet_lite"
    assert spec.preprocessing.crop == size
    assert spec.preprocessing.mean == (127.0, 127.0, 127.0)
    assert spec.preprocessing.std == (128.0, 128.0, 128.0)


def test_torchvision_spec_comes_from_the_default_weights():
    spec = get_spec("resnet152")
    assert spec.family == "torchvision"
    assert spec.weights_file == "resnet152-f82ba261.pth"
    assert spec.weights_url.endswith("/resnet152-f82ba261.pth")
    assert (spec.preprocessing.crop, spec.preprocessing.resize) == (224, 232)
    swin = get_spec("swin_b")
    assert swin.preprocessing.interpolation == "bicubic"
    assert swin.preprocessing.resize == 238


@pytest.mark.parametrize("name", ["nope", "ResNet152", "../etc/passwd", "", "a" * 80, 3])
def test_unknown_or_malformed_names_are_refused_with_the_known_list(name):
    with pytest.raises(UnknownModel) as err:
        get_spec(name)
    assert err.value.details["known"] == known_models()
    assert err.value.status == 404


def test_course_models_are_all_resolvable():
    for name in known_models():
        assert get_spec(name).name == name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("a", ["a"]), (" a , b ", ["a", "b"]), ("efficientnet_lite0,resnet18", None)],
)
def test_parse_model_list(raw, expected):
    names = parse_model_list(raw)
    assert names == (expected or [n.strip() for n in raw.split(",")])


@pytest.mark.parametrize("raw", ["", "a,,b", "a,a", " , "])
def test_parse_model_list_rejects(raw):
    with pytest.raises(ValueError):
        parse_model_list(raw)


def test_top_k_orders_and_clamps():
    probs = np.zeros(1000, np.float32)
    probs[[3, 7, 1]] = [0.5, 0.3, 0.2]
    preds = top_k(probs, 3)
    assert [p.index for p in preds] == [3, 7, 1]
    assert preds[0].label == imagenet_labels()[3]
    assert len(top_k(probs, 5000)) == 1000
    assert len(top_k(probs, 0)) == 1


def test_lite_preprocessing_maps_pixels_to_lite_range():
    pre = efficientnet_lite(224)
    white = pre(Image.new("RGB", (300, 400), (255, 255, 255)))
    grey = pre(Image.new("RGB", (300, 400), (127, 127, 127)))
    assert white.shape == (3, 224, 224) and white.dtype == np.float32
    assert np.allclose(white, 128 / 128) and np.allclose(grey, 0)


def test_imagenet_preprocessing_uses_mean_std():
    pre = imagenet()
    out = pre(Image.new("RGB", (256, 256), (0, 0, 0)))
    assert np.allclose(out[0], -0.485 / 0.229, atol=1e-5)
    assert np.allclose(out[2], -0.406 / 0.225, atol=1e-5)


def test_preprocessing_centre_crops_after_resizing_the_shorter_side():
    # left half red, right half blue, wide image: the centre crop must keep both halves equally
    image = Image.new("RGB", (800, 200), (255, 0, 0))
    image.paste((0, 0, 255), (400, 0, 800, 200))
    pre = Preprocessing(crop=100, resize=100, mean=(0, 0, 0), std=(1, 1, 1))
    out = pre(image)
    assert out.shape == (3, 100, 100)
    assert out[0, :, :50].mean() > 250 and out[2, :, 50:].mean() > 250
    # grayscale and RGBA inputs are converted
    assert pre(Image.new("L", (120, 130))).shape == (3, 100, 100)
    assert pre(Image.new("RGBA", (130, 120))).shape == (3, 100, 100)


def test_preprocessing_rejects_bad_configuration():
    with pytest.raises(ValueError):
        Preprocessing(crop=300, resize=200, mean=(0, 0, 0), std=(1, 1, 1))
    with pytest.raises(ValueError):
        Preprocessing(crop=10, resize=20, mean=(0, 0, 0), std=(1, 1, 1), interpolation="fancy")
