"""Decoding untrusted bytes: formats sniffed from content, limits, orientation, odd modes."""

import io

import numpy as np
import pytest
from PIL import Image

from hw5kit.photos import photo
from hw5kit.serving.errors import ImageTooLarge, UnprocessableImage
from hw5kit.serving.images import decode_image, sniff

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
    assert decode_image(data, max_pixels=LIMIT, draft=5000).size == (2400, 1600)
