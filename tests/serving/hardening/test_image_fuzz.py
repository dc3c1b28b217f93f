"""Decoding untrusted bytes: damaged versions of real images in every accepted format (and a
few modes) must decode or raise the decoder's 422 error, never anything else."""

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hw5kit.photos import photo
from hw5kit.serving.errors import UnprocessableImage
from hw5kit.serving.images import decode_image


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def samples() -> list[bytes]:
    base = Image.open(photo("chelsea.png").path).convert("RGB").resize((48, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        _encode(base, "JPEG", exif=exif),
        _encode(base.convert("CMYK"), "JPEG"),
        _encode(base, "PNG"),
        _encode(base.convert("P"), "PNG", transparency=0),
        _encode(base.convert("LA"), "PNG"),
        _encode(base.convert("1"), "PNG"),
        _encode(base, "WEBP"),
        _encode(base, "GIF"),
        _encode(base, "BMP"),
        _encode(base.convert("RGBA"), "BMP"),
    ]


def test_the_samples_decode(samples):
    for data in samples:
        assert decode_image(data, max_pixels=10_000).mode == "RGB"


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.integers(min_value=0, max_value=9),
    edits=st.lists(
        st.tuples(st.floats(min_value=0, max_value=1), st.integers(min_value=0, max_value=255)),
        min_size=1,
        max_size=8,
    ),
    cut=st.one_of(st.none(), st.floats(min_value=0.05, max_value=1)),
)
def test_damaged_images_never_raise_anything_but_a_422(samples, which, edits, cut):
    data = bytearray(samples[which])
    for where, byte in edits:
        data[min(int(where * len(data)), len(data) - 1)] = byte
    if cut is not None:
        data = data[: max(1, int(cut * len(data)))]
    try:
        image = decode_image(bytes(data), max_pixels=10_000_000)
    except UnprocessableImage as exc:
        assert exc.status == 422 and exc.message
    else:
        assert image.mode == "RGB" and image.size[0] * image.size[1] <= 10_000_000
