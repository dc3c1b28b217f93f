"""Turning untrusted bytes into an RGB image, or a clear 4xx error, in bounded memory.

The format is sniffed from the bytes themselves (never the file name or Content-Type) and only
JPEG, PNG, WebP, GIF (first frame) and BMP are decoded. The pixel count is checked from the
header before any pixel is decoded, so a small file claiming 100k x 100k pixels costs nothing.

Memory: a decode costs its pixels times a few bytes (``decode_cost``), reserved from a
``DecodeBudget`` shared by every decode in flight before any pixel is decoded, so that
concurrent worst-case images wait for each other instead of adding up. Each image is decoded
once at its stored size (JPEGs at a reduced scale, ``draft``, when the model needs far fewer
pixels: libjpeg's DCT scaling; Pillow decodes PNG, WebP, GIF and BMP only at full size), then
cut to the centre square the model's preprocessing can see (``centre_region``) and reduced by an
integer factor to at least twice the size the model needs *before* anything else: 16-bit and
float images are scaled to 8 bits, palettes expanded, transparency flattened onto white and
EXIF orientation applied on the reduced image, never on a full-size copy. No float array of the
full image is ever made.
"""

from __future__ import annotations

import io
import math
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageTooLarge, Overloaded, UnprocessableImage

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
# Pillow's storage per pixel: one byte for 1/L/P, two for 16-bit, four for everything else
# (RGB is stored as four bytes, like RGBA)
_STORED = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
# copies the reduction makes of the region the model uses, bytes per pixel (measured with
# Pillow 13: P expands to RGBA through a second copy; 16-bit goes through numpy)
_EXTRA = {"1": 1, "P": 8, "PA": 8, "RGBA": 4, "LA": 4, "I;16": 4, "I;16B": 4, "I;16L": 4}
# and when the region is not reduced (factor 1): flattening alpha makes four RGBA-sized
# copies, 16-bit scaling float32 ones, the rest one RGB copy
_UNREDUCED = {"RGBA": 16, "LA": 16, "PA": 16, "P": 16, "La": 16, "RGBa": 16}
_UNREDUCED.update({m: 8 for m in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")})
# Pillow decodes WebP through libwebp's own RGBA buffer, then copies it (twice for RGB)
_WEBP_EXTRA = 12
_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def sniff(data: bytes) -> str | None:
    """The image format named by the leading bytes, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith(b"BM") and len(data) >= 26:
        return "BMP"
    return None


def _describe_prefix(data: bytes) -> str:
    if not data:
        return "it is empty"
    head = data[:16]
    if head.lstrip().startswith((b"<!", b"<html", b"<HTML", b"<?xml", b"<svg")):
        return "it looks like HTML/XML text"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"it starts with the text {head.decode('ascii')!r}"
    return f"it starts with bytes {head[:8].hex(' ')}"


def centre_region(size: tuple[int, int], need: int | None) -> tuple[int, int, int, int]:
    """The box the model can see: its preprocessing resizes the shorter side and crops the
    centre square, so nothing outside the centre square of the shorter side's size matters
    (which bounds the work on a 500 x 80,000 panorama to 500 x 500). The whole image when the
    caller names no need."""
    width, height = size
    if not need or width == height:
        return (0, 0, width, height)
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return (left, top, left + side, top + side)


# the most a decode costs per pixel of the image (a WebP with alpha, not square: see decode_cost)
WORST_BYTES_PER_PIXEL = 21


def decode_cost(mode: str, size: tuple[int, int], fmt: str = "", need: int | None = None) -> int:
    """Bytes a decode of an image of ``mode`` and ``size`` holds at its peak, from measurements
    of Pillow 13 (within 1%, plus a byte a pixel of margin): the larger of its two phases, the
    decoded image (with WebP's own buffers) and the copy of the region the model uses
    (``centre_region``), then that region while it is reduced and brought to 8-bit RGB."""
    pixels = size[0] * size[1]
    left, top, right, bottom = centre_region(size, need)
    region = (right - left) * (bottom - top)
    stored = _STORED.get(mode, 4)
    cropped = region < pixels
    decoding = pixels * (stored + (_WEBP_EXTRA if fmt == "WEBP" else 0))
    decoding += region * stored if cropped else 0
    # WebP's decoder lets go of one of its buffers only once the image is closed
    converting = region * (stored + _EXTRA.get(mode, 0) + (4 if fmt == "WEBP" else 0))
    if reduction_factor((right - left, bottom - top), need) == 1:
        converting += region * _UNREDUCED.get(mode, 4)
    return max(decoding, converting) + pixels


class DecodeBudget:
    """Bytes of decoded pixels in flight, shared by all decodes of a process.

    ``reserve(cost)`` waits until the cost fits (a decode larger than the whole budget waits
    until it runs alone), for at most ``timeout`` seconds, then raises ``Overloaded`` (503).

    ``instance``: the ``instance.Instance`` whose workers share the instance's budget, this one
    holding its share: a decode larger than the share then also runs alone in the instance.
    """

    def __init__(self, limit_bytes: int, timeout: float = 10.0, instance=None):
        if limit_bytes < 1:
            raise ValueError("the decode budget must be positive")
        self.limit = limit_bytes
        self.timeout = timeout
        self.used = 0
        self.peak = 0
        self._running = 0
        self._cond = threading.Condition()
        self.instance = instance

    def _busy(self, cost: int) -> Overloaded:
        return Overloaded(
            "the server is decoding other large images; retry after the Retry-After delay",
            details={"decode_budget_bytes": self.limit, "image_bytes": cost},
        )

    def _fits(self, cost: int) -> bool:
        return self.used + cost <= self.limit or self._running == 0

    @contextmanager
    def reserve(self, cost: int, timeout: float | None = None) -> Iterator[None]:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._cond:
            while not self._fits(cost):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._busy(cost)
                self._cond.wait(remaining)
            self.used += cost
            self._running += 1
            self.peak = max(self.peak, self.used)
        try:
            if self.instance is None:
                yield
            else:
                with self.instance.decoding(cost > self.limit, deadline) as held:
                    if not held:
                        raise self._busy(cost)
                    yield
        finally:
            with self._cond:
                self.used -= cost
                self._running -= 1
                self._cond.notify_all()


UNLIMITED = DecodeBudget(1 << 62)


def reduction_factor(size: tuple[int, int], need: int | None) -> int:
    """The integer factor that keeps the shorter side at least twice ``need`` (so the model's
    own resampling still has twice the pixels it uses: the same result within rounding)."""
    if not need:
        return 1
    return max(1, min(size) // (2 * need))


def _box_reduce(array: np.ndarray, factor: int) -> np.ndarray:
    """Mean of ``factor`` x ``factor`` blocks of a 2-D array, as float32 (the edges that do not
    fill a block are left out, as Pillow's ``reduce`` does with its box)."""
    if factor == 1:
        return array.astype(np.float32)
    h, w = (array.shape[0] // factor) * factor, (array.shape[1] // factor) * factor
    blocks = array[:h, :w].reshape(h // factor, factor, w // factor, factor)
    return blocks.mean(axis=3, dtype=np.float32).mean(axis=1, dtype=np.float32)


def _stretch_to_8bit(values: np.ndarray) -> Image.Image:
    """Scale a small float array's range onto 0..255, as an L image."""
    low, high = float(values.min()), float(values.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    out = ((values - low) * scale).clip(0, 255).round().astype(np.uint8)
    return Image.fromarray(out)


def _reduce(image: Image.Image, factor: int) -> Image.Image:
    """``image`` reduced by ``factor`` and brought to 8-bit RGB; full-size copies only where a
    mode has no reduction of its own (see ``_EXTRA``)."""
    mode = image.mode
    if mode in _HIGH_DEPTH:
        if mode in ("I", "F"):
            small = np.asarray(image.reduce(factor) if factor > 1 else image, dtype=np.float32)
        else:
            raw = np.asarray(image)  # uint16, one full-size copy of two bytes a pixel
            image.close()
            small = _box_reduce(raw, factor)
            del raw
        return _stretch_to_8bit(small).convert("RGB")
    if mode == "1":
        image = image.convert("L")
    elif mode == "P":
        palette = getattr(image.palette, "mode", "")
        transparent = "transparency" in image.info or palette == "RGBA"
        image = image.convert("RGBA" if transparent else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    if factor > 1:
        image = image.reduce(factor)  # premultiplies alpha for RGBA and LA
    if image.mode in _ALPHA:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_image(
    data: bytes,
    *,
    max_pixels: int,
    draft: int | None = None,
    budget: DecodeBudget | None = None,
) -> Image.Image:
    """Decode ``data`` to an RGB image, or raise a 422 ``ServingError`` that says why not.

    ``draft``: the shorter side the caller needs; JPEGs may then be decoded at 1/2, 1/4 or 1/8
    scale as long as the shorter side stays at least ``draft``, and every image is reduced
    right after decoding to a shorter side of at least twice ``draft``. ``budget``: the decode
    memory shared with the other decodes in flight (none: unlimited).
    """
    fmt = sniff(data)
    if fmt is None:
        raise UnprocessableImage(
            "the data is not an image we accept (JPEG, PNG, WebP, GIF or BMP): "
            + _describe_prefix(data)
        )
    budget = budget or UNLIMITED
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = image.size
            if width < 1 or height < 1:
                raise UnprocessableImage(f"the {fmt} image has no pixels ({width}x{height})")
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"the image is {width}x{height} = {width * height:,} pixels; "
                    f"the limit is {max_pixels:,}",
                    details={"width": width, "height": height, "max_pixels": max_pixels},
                )
            if fmt == "JPEG" and draft:
                scale = draft / min(width, height)
                if scale < 1:
                    image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
            with budget.reserve(decode_cost(image.mode, image.size, fmt, draft)):
                image.load()
                orientation = image.getexif().get(0x0112)  # PNG's may follow the pixels
                box = centre_region(image.size, draft)
                if box != (0, 0, *image.size):
                    image = image.crop(box)  # a copy of the region: the full image is freed
                image = _reduce(image, reduction_factor(image.size, draft))
            if orientation in _ORIENTATION:
                image = image.transpose(_ORIENTATION[orientation])
            return image
    except (UnprocessableImage, Overloaded):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"the {fmt} image is too large to decode safely: {exc}") from None
    except MemoryError:
        raise ImageTooLarge(
            f"the {fmt} image needs more memory to decode than is available"
        ) from None
    # Pillow's parsers meet attacker-made bytes here: whatever they raise (OSError, SyntaxError,
    # struct.error, IndexError, ...) means the bytes are not a decodable image, not a bug of ours.
    except (UnidentifiedImageError, Exception) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UnprocessableImage(
            f"the data looks like {fmt} but could not be decoded: {reason}",
            code="corrupt_image",
        ) from None
