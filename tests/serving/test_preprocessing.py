"""The fast preprocessing (resample only the centre-crop region) gives the pixels of the plain
recipe (resize the whole photo, then crop), on every labelled photo and both normalisations."""

import numpy as np
import pytest
from PIL import Image

from hw5kit.photos import PHOTOS
from hw5kit.serving.images import decode_image
from hw5kit.serving.models import preprocessing as pp


def plain(pre: pp.Preprocessing, image: Image.Image) -> np.ndarray:
    """The textbook recipe: resize the shorter side, centre-crop, normalise."""
    image = image.convert("RGB")
    width, height = image.size
    scale = pre.resize / min(width, height)
    new_w, new_h = max(pre.crop, round(width * scale)), max(pre.crop, round(height * scale))
    image = image.resize((new_w, new_h), pp._RESAMPLE[pre.interpolation])
    left, top = (new_w - pre.crop) // 2, (new_h - pre.crop) // 2
    image = image.crop((left, top, left + pre.crop, top + pre.crop))
    pixels = (np.asarray(image, np.float32) - np.asarray(pre.mean, np.float32)) / np.asarray(
        pre.std, np.float32
    )
    return pixels.transpose(2, 0, 1)


@pytest.mark.parametrize(
    "pre",
    [pp.efficientnet_lite(224), pp.efficientnet_lite(260), pp.imagenet(), pp.imagenet(224, 232)],
    ids=["lite224", "lite260", "imagenet256", "imagenet232"],
)
def test_fast_preprocessing_matches_resize_then_crop(pre):
    for name, photo in PHOTOS.items():
        image = decode_image(photo.path.read_bytes(), max_pixels=10**8)
        fast, slow = pre(image), plain(pre, image)
        assert fast.shape == slow.shape == (3, pre.crop, pre.crop)
        assert fast.dtype == np.float32 and fast.flags.c_contiguous
        # within rounding: at most a couple of 8-bit levels on a few pixels
        levels = np.abs(fast - slow) * np.asarray(pre.std, np.float32).reshape(3, 1, 1)
        assert levels.max() <= 2.5, name
        assert levels.mean() < 0.05, name


def test_an_image_already_at_the_target_size_is_only_cropped():
    pre = pp.Preprocessing(crop=4, resize=6, mean=(0, 0, 0), std=(1, 1, 1))
    image = Image.fromarray(np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3))
    out = pre(image)
    assert np.array_equal(out, np.asarray(image, np.float32)[1:5, 2:6].transpose(2, 0, 1))
