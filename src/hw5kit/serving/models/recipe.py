"""The int8 recipe and its calibration set: the settings ONNX Runtime quantizes with
(``RECIPE``), the photos it calibrates on (``CALIBRATION_PHOTOS``, shipped in ``calibration/``),
and ``recipe_id()``, the digest of both that names every int8 artefact.

Standard library only: the model catalog describes an int8 model (its recipe, the artefact's
name) without importing the quantizer and what it needs (numpy, PIL, onnx). The quantizer itself
is ``quantization.py``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

CALIBRATION_DIR = Path(__file__).with_name("calibration")


@dataclass(frozen=True)
class CalibrationPhoto:
    file: str  # in CALIBRATION_DIR
    photo: str  # the hw5kit.photos name it is a copy of
    licence: str
    credit: str


# Only photos whose package states a licence that allows redistribution (the Middlebury
# motorcycle and matplotlib's Grace Hopper photo state none; they stay out, and so serve as
# held-out photos in the quantization report).
CALIBRATION_PHOTOS = (
    CalibrationPhoto("chelsea.jpg", "chelsea.png", "CC0", "Stefan van der Walt (scikit-image)"),
    CalibrationPhoto("coffee.jpg", "coffee.png", "CC0", "Rachel Michetti (scikit-image)"),
    CalibrationPhoto("camera.jpg", "camera.png", "CC0", "Lav Varshney (scikit-image)"),
    CalibrationPhoto("rocket.jpg", "rocket.jpg", "public domain", "SpaceX (scikit-image)"),
    CalibrationPhoto("astronaut.jpg", "astronaut.png", "public domain", "NASA (scikit-image)"),
    CalibrationPhoto("china.jpg", "china.jpg", "CC BY 2.0", "danielbuechele (scikit-learn)"),
    CalibrationPhoto("flower.jpg", "flower.jpg", "CC BY 2.0", "vultilion (scikit-learn)"),
)


@dataclass(frozen=True)
class Recipe:
    """The quantization settings; ``RECIPE`` is what the served int8 models use."""

    quant_format: str = "QDQ"  # or "QOperator"
    per_channel: bool = True  # weights: one scale per output channel
    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    reduce_range: bool = False  # 7-bit weights: only useful on CPUs without VNNI
    calibrate_method: str = "MinMax"
    augmentations_per_photo: int = 8
    seed: int = 20240610
    keep_float: tuple[str, ...] = ("Softmax",)  # op types left in float32
    # op types computed in int8 whose output stays float32: the classifier's logits, which
    # quantized would take only 256 values (tied probabilities, a top-1 decided by the tie order)
    float_outputs: tuple[str, ...] = ("Gemm",)

    def describe(self) -> dict:
        channel = "per output channel" if self.per_channel else "per tensor"
        bits = "7-bit range" if self.reduce_range else "full 8-bit range"
        return {
            "tool": "ONNX Runtime static quantization (onnxruntime.quantization.quantize_static)",
            "format": self.quant_format,
            "weights": f"{self.weight_type} symmetric, {channel}, {bits}",
            "activations": f"{self.activation_type} asymmetric, per tensor, "
            f"ranges calibrated with {self.calibrate_method}",
            "kept_in_float32": list(self.keep_float),
            "int8_with_float32_output": list(self.float_outputs),
            "calibration": {
                "images": len(CALIBRATION_PHOTOS) * (1 + self.augmentations_per_photo),
                "photos": [f"{p.file} ({p.licence}, {p.credit})" for p in CALIBRATION_PHOTOS],
                "augmentations": f"{self.augmentations_per_photo} per photo besides the photo "
                "itself: random crop (30-100% of the area, aspect 3:4 to 4:3), horizontal flip "
                f"(p=0.5), brightness, contrast and saturation x0.7-1.3; seed {self.seed}",
                "source": "photos shipped in hw5kit (serving/models/calibration), never downloaded",
            },
        }


RECIPE = Recipe()


def calibration_file(photo: CalibrationPhoto) -> Path:
    return CALIBRATION_DIR / photo.file


@cache
def calibration_digest() -> str:
    h = hashlib.sha256()
    for photo in CALIBRATION_PHOTOS:
        path = calibration_file(photo)
        h.update(photo.file.encode())
        try:
            h.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            h.update(b"missing")
    return h.hexdigest()


def recipe_id(recipe: Recipe = RECIPE) -> str:
    """A short digest of the settings and the calibration files: part of the artefact name."""
    text = json.dumps(asdict(recipe), sort_keys=True) + calibration_digest()
    return "q" + hashlib.sha256(text.encode()).hexdigest()[:10]
