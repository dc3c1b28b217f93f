"""Models that know nothing of HTTP: a spec, a loader, and ``Classifier.classify``.

In the spirit of KServe's and MLServer's model classes: ``load_classifier(spec)`` builds a
``Classifier`` once; ``Classifier`` turns RGB images into top-k ``Prediction`` lists. A loaded
classifier is never mutated, so any number of threads may use it at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ModelUnavailable
from ..labels import NUM_CLASSES, imagenet_labels
from .catalog import (
    COURSE_TORCHVISION_MODELS,
    DEFAULT_MODEL,
    OFFLINE_MODELS,
    ModelSpec,
    get_spec,
    known_models,
    parse_model_list,
)
from .weights import weights_path

__all__ = [
    "COURSE_TORCHVISION_MODELS",
    "DEFAULT_MODEL",
    "OFFLINE_MODELS",
    "Classifier",
    "ModelSpec",
    "Prediction",
    "get_spec",
    "known_models",
    "load_classifier",
    "parse_model_list",
    "top_k",
]

_torch_lock = threading.Lock()


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float

    def to_dict(self) -> dict:
        return {"label": self.label, "index": self.index, "probability": self.probability}


def top_k(probabilities: np.ndarray, k: int) -> list[Prediction]:
    """The ``k`` most probable classes of one probability row, most probable first."""
    labels = imagenet_labels()
    k = max(1, min(int(k), probabilities.shape[-1]))
    part = np.argpartition(-probabilities, k - 1)[:k]
    order = part[np.argsort(-probabilities[part], kind="stable")]
    return [Prediction(labels[i], int(i), round(float(probabilities[i]), 6)) for i in order]


class Classifier:
    """A loaded ImageNet classifier: preprocessing plus a torch module in eval mode."""

    def __init__(self, spec: ModelSpec, module, *, weights: Path | None, load_seconds: float):
        self.spec = spec
        self.module = module
        self.weights = weights
        self.load_seconds = load_seconds

    @property
    def name(self) -> str:
        return self.spec.name

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.spec.preprocessing(image)

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, 1000), for a preprocessed batch (N, 3, H, W)."""
        import torch

        with torch.inference_mode():
            logits = self.module(torch.from_numpy(np.ascontiguousarray(batch)))
            return torch.softmax(logits.float(), dim=1).numpy()

    def classify(self, images: Sequence[Image.Image], k: int = 5) -> list[list[Prediction]]:
        batch = np.stack([self.preprocess(image) for image in images])
        return [top_k(row, k) for row in self.predict_proba(batch)]

    def metadata(self) -> dict:
        meta = self.spec.metadata()
        meta["weights_path"] = str(self.weights) if self.weights else None
        meta["load_seconds"] = round(self.load_seconds, 3)
        return meta


def _build_module(spec: ModelSpec, path: Path):
    import torch

    if spec.family == "efficientnet_lite":
        from efficientnet_lite_pytorch import EfficientNet

        module = EfficientNet.from_name(spec.arch)
    elif spec.family == "torchvision":
        from torchvision.models import get_model_builder

        module = get_model_builder(spec.arch)(weights=None)
    else:  # pragma: no cover - the catalog only produces the families above
        raise ModelUnavailable(f"no loader for model family {spec.family!r}")
    try:
        # weights_only: a checkpoint is data, never code to run
        state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state, strict=True)
    except Exception as exc:  # torch's unpickler raises many types on a bad file
        raise ModelUnavailable(
            f"weights file {path} for model {spec.name!r} could not be loaded: "
            f"{str(exc).splitlines()[0][:300]}"
        ) from exc
    return module.eval()


def load_classifier(name_or_spec: str | ModelSpec) -> Classifier:
    """Load a model from local weights only; ``ModelUnavailable`` if they are not there."""
    spec = get_spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    start = time.perf_counter()
    path = weights_path(spec)
    with _torch_lock:  # model construction touches torch globals; forward passes do not
        module = _build_module(spec, path)
    classifier = Classifier(spec, module, weights=path, load_seconds=time.perf_counter() - start)
    probe = classifier.predict_proba(
        np.zeros((1, 3, spec.preprocessing.crop, spec.preprocessing.crop), np.float32)
    )
    if probe.shape != (1, NUM_CLASSES):
        raise ModelUnavailable(f"model {spec.name!r} gives {probe.shape[1]} classes, not 1000")
    return classifier
