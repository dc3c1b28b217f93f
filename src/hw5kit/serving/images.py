"""Turning untrusted bytes into an RGB image, or a clear 4xx error.

The format is sniffed from the bytes themselves (never the file name or Content-Type) and only
JPEG, PNG, WebP, GIF (first frame) and BMP are decoded. The pixel count is checked from the
header before any pixel is decoded, so a small file claiming 100k x 100k pixels costs nothing.
EXIF orientation is applied; transparency is flattened onto white; 16-bit and float images are
scaled to 8 bits. JPEGs can be decoded at a reduced scale (``draft``) when the model needs far
fewer pixels than the photo has, which is most of the decoding cost saved.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageTooLarge, UnprocessableImage

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")


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


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        array = ((array - low) * scale).clip(0, 255).astype(np.uint8)
        return Image.fromarray(array, "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(data: bytes, *, max_pixels: int, draft: int | None = None) -> Image.Image:
    """Decode ``data`` to an RGB image, or raise a 422 ``ServingError`` that says why not.

    ``draft``: the shorter side the caller needs; JPEGs may then be decoded at 1/2, 1/4 or 1/8
    scale as long as the shorter side stays at least ``draft``.
    """
    fmt = sniff(data)
    if fmt is None:
        raise UnprocessableImage(
            "the data is not an image we accept (JPEG, PNG, WebP, GIF or BMP): "
            + _describe_prefix(data)
        )
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
            image.load()
            image = ImageOps.exif_transpose(image) or image
            return _to_rgb(image)
    except UnprocessableImage:
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
