"""Decoding untrusted bytes: formats sniffed from content, limits, orientation, odd modes."""

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from hw5kit.photos import photo
from hw5kit.serving.errors import ImageTooLarge, Overloaded, UnprocessableImage
from hw5kit.serving.images import (
    WORST_BYTES_PER_PIXEL,
    DecodeBudget,
    centre_region,
    decode_cost,
    decode_image,
    reduction_factor,
    sniff,
)

LIMIT = 40_000_000


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    return Image.open(photo("chelsea.png").path).convert("RGB")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_accepted_formats_decode_to_rgb(chelsea, fmt):
    data = encode(chelsea, fmt)
    assert sniff(data) == fmt
    image = decode_image(data, max_pixels=LIMIT)
    assert image.mode == "RGB" and image.size == chelsea.size


def test_format_comes_from_the_bytes_not_the_name(chelsea):
    assert sniff(encode(chelsea, "PNG")) == "PNG"
    with pytest.raises(UnprocessableImage, match="HTML"):
        decode_image(b"<!DOCTYPE html><html>nope</html>", max_pixels=LIMIT)
    with pytest.raises(UnprocessableImage, match="text 'hello"):
        decode_image(b"hello world, not an image", max_pixels=LIMIT)
    with pytest.raises(UnprocessableImage, match="empty"):
        decode_image(b"", max_pixels=LIMIT)
    tiff = encode(chelsea, "TIFF")
    with pytest.raises(UnprocessableImage, match="JPEG, PNG, WebP, GIF or BMP"):
        decode_image(tiff, max_pixels=LIMIT)


def test_truncated_image_is_a_clear_422(chelsea):
    data = encode(chelsea, "JPEG")
    with pytest.raises(UnprocessableImage) as err:
        decode_image(data[: len(data) // 3], max_pixels=LIMIT)
    assert err.value.code == "corrupt_image" and err.value.status == 422


def test_pixel_limit_is_checked_before_decoding():
    # an 8000 x 8000 PNG of one colour is tiny on the wire: refused from the header alone
    big = encode(Image.new("L", (8000, 8000)), "PNG")
    assert len(big) < 200_000
    with pytest.raises(ImageTooLarge) as err:
        decode_image(big, max_pixels=10_000_000)
    assert err.value.details["width"] == 8000 and err.value.status == 422
    # far past Pillow's own bomb threshold: still the same clear error
    bomb = encode(Image.new("1", (20000, 20000)), "PNG")
    with pytest.raises(ImageTooLarge):
        decode_image(bomb, max_pixels=10_000_000)


def test_exif_orientation_is_applied(chelsea):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode(chelsea, "JPEG", exif=exif)
    image = decode_image(data, max_pixels=LIMIT)
    assert image.size == (chelsea.height, chelsea.width)


def test_transparency_is_flattened_on_white():
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    image = decode_image(encode(rgba, "PNG"), max_pixels=LIMIT)
    assert np.asarray(image).min() == 255


def test_sixteen_bit_images_are_scaled():
    array = np.linspace(0, 65535, 100 * 100).reshape(100, 100).astype(np.uint16)
    image = decode_image(encode(Image.fromarray(array), "PNG"), max_pixels=LIMIT)
    pixels = np.asarray(image)
    assert pixels.min() == 0 and pixels.max() == 255


def test_gif_first_frame(chelsea):
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    image = decode_image(buf.getvalue(), max_pixels=LIMIT)
    assert image.getpixel((5, 5))[0] > 200


def test_jpeg_draft_decodes_smaller_but_never_below_the_need():
    big = Image.new("RGB", (2400, 1600), (10, 200, 30))
    data = encode(big, "JPEG")
    full = decode_image(data, max_pixels=LIMIT)
    small = decode_image(data, max_pixels=LIMIT, draft=256)
    assert full.size == (2400, 1600)
    assert min(small.size) >= 256 and small.size[0] < 2400
    # a need above the image's size: full scale, only the centre square the model sees
    assert decode_image(data, max_pixels=LIMIT, draft=5000).size == (1600, 1600)


def test_only_the_centre_square_is_kept_and_reduced_to_twice_the_need():
    wide = np.zeros((600, 24000), np.uint8)
    wide[:, 11700:12300] = 255  # a white square in the middle, black elsewhere
    image = decode_image(encode(Image.fromarray(wide), "PNG"), max_pixels=LIMIT, draft=100)
    assert image.size == (200, 200)  # the 600 x 600 centre, reduced by 3 (still >= 2 x 100)
    assert np.asarray(image).min() == 255  # all of it the white square
    assert centre_region((24000, 600), 100) == (11700, 0, 12300, 600)
    assert centre_region((24000, 600), None) == (0, 0, 24000, 600)
    assert reduction_factor((4000, 3000), 256) == 5 and reduction_factor((300, 300), 256) == 1


def test_reduced_images_keep_what_the_full_decode_shows():
    """Reduce-then-convert gives (within rounding) what convert-then-resize gives."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (1200, 1200, 4), np.uint8)
    reduced = decode_image(
        encode(Image.fromarray(rgba, "RGBA"), "PNG"), max_pixels=LIMIT, draft=100
    )
    full = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), max_pixels=LIMIT)
    expected = np.asarray(full.reduce(6), np.float32)
    assert reduced.size == (200, 200)
    assert np.abs(np.asarray(reduced, np.float32) - expected).max() <= 2
    ramp = np.linspace(1000, 5000, 1200 * 1200).reshape(1200, 1200).astype(np.uint16)
    grey = np.asarray(
        decode_image(encode(Image.fromarray(ramp), "PNG"), max_pixels=LIMIT, draft=100)
    )
    assert grey.shape == (200, 200, 3) and grey.min() == 0 and grey.max() == 255
    palette = Image.fromarray(rng.integers(0, 256, (900, 900), np.uint8)).convert("P")
    decoded = decode_image(encode(palette, "PNG", transparency=0), max_pixels=LIMIT, draft=100)
    assert decoded.mode == "RGB" and decoded.size == (225, 225)


def test_the_cost_covers_every_mode_and_the_budget_bounds_decodes_in_flight():
    for mode in ("1", "L", "P", "I;16", "I", "F", "RGB", "RGBA", "LA", "PA", "CMYK"):
        per_pixel = decode_cost(mode, (1000, 1000), "PNG", 100) / 1e6
        assert 1 <= per_pixel <= 20, (mode, per_pixel)
    for size in ((6000, 6600), (6300, 6300), (16383, 2400)):
        worst = decode_cost("RGBA", size, "WEBP", 256) / (size[0] * size[1])
        assert 17 <= worst <= WORST_BYTES_PER_PIXEL, (size, worst)
    budget = DecodeBudget(100, timeout=0.2)
    order = []

    def decode(cost, name):
        with budget.reserve(cost):
            order.append(("start", name, budget.used))
            time.sleep(0.1)

    with budget.reserve(60):
        waiting = threading.Thread(target=decode, args=(60, "second"))
        waiting.start()
        time.sleep(0.05)
        assert order == []  # 60 + 60 > 100: it waits
    waiting.join(5)
    assert order == [("start", "second", 60)]
    with budget.reserve(500):  # larger than the budget: runs alone
        assert budget.used == 500
        with pytest.raises(Overloaded), budget.reserve(1):
            pass
    assert budget.used == 0 and budget.peak == 500
