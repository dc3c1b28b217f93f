"""Per-model image preprocessing: resize the shorter side, centre-crop, normalise.

Each model carries its own ``Preprocessing``: EfficientNet-Lite was trained on inputs scaled as
``(x - 127) / 128`` at 224/240/260 pixels, the torchvision models on the ImageNet mean/std at the
sizes their weights declare. Getting this wrong does not crash; it silently lowers accuracy,
which is why the tests classify labelled photos with every model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to ``resize``, centre-crop ``crop``, then ``(x - mean) / std``.

    ``mean`` and ``std`` are on the 0..255 pixel scale.
    """

    crop: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}")
        if not 0 < self.crop <= self.resize:
            raise ValueError("need 0 < crop <= resize")

    def describe(self) -> dict:
        return {
            "input_size": self.crop,
            "resize_shorter_side": self.resize,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }

    def draft_size(self) -> int:
        """The smallest shorter side worth decoding: JPEG draft mode may go down to this."""
        return self.resize

    def __call__(self, image: Image.Image) -> np.ndarray:
        """A float32 array of shape (3, crop, crop) from an RGB image.

        Only the part of the photo that survives the centre crop is resampled (``box``), which
        gives the same pixels as resizing the whole photo and then cropping, for less work.
        """
        if image.mode != "RGB":
            image = image.convert("RGB")
        width, height = image.size
        scale = self.resize / min(width, height)
        new_w = max(self.crop, round(width * scale))
        new_h = max(self.crop, round(height * scale))
        left = (new_w - self.crop) // 2
        top = (new_h - self.crop) // 2
        if (new_w, new_h) == (width, height):
            image = image.crop((left, top, left + self.crop, top + self.crop))
        else:
            sx, sy = width / new_w, height / new_h
            box = (left * sx, top * sy, (left + self.crop) * sx, (top + self.crop) * sy)
            image = image.resize((self.crop, self.crop), _RESAMPLE[self.interpolation], box=box)
        pixels = np.asarray(image).transpose(2, 0, 1).astype(np.float32, order="C")
        pixels -= self._mean
        pixels *= self._inv_std
        return pixels

    @property
    def _mean(self) -> np.ndarray:
        return np.asarray(self.mean, np.float32).reshape(3, 1, 1)

    @property
    def _inv_std(self) -> np.ndarray:
        return (1 / np.asarray(self.std, np.float32)).reshape(3, 1, 1)


def efficientnet_lite(size: int) -> Preprocessing:
    """TF EfficientNet-Lite eval preprocessing: crop ``size/(size+32)`` of the shorter side."""
    return Preprocessing(
        crop=size,
        resize=size + 32,
        mean=(127.0, 127.0, 127.0),
        std=(128.0, 128.0, 128.0),
        interpolation="bicubic",
    )


def imagenet(crop: int = 224, resize: int = 256, interpolation: str = "bilinear") -> Preprocessing:
    """torchvision's ImageClassification transform (ImageNet mean and std)."""
    return Preprocessing(
        crop=crop,
        resize=resize,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation=interpolation,
    )
