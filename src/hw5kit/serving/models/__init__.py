"""Models that know nothing of HTTP: a spec, a loader, and ``Classifier.classify``.

In the spirit of KServe's and MLServer's model classes: ``load_classifier(spec)`` builds a
``Classifier`` once; ``Classifier`` turns RGB images into top-k ``Prediction`` lists. A loaded
classifier is never mutated, so any number of threads may use it at once. Which engine runs the
network (OpenVINO, ONNX Runtime or torch) is decided in ``runtime.py``.
"""

from __future__ import annotations

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
    INT8_MODELS,
    OFFLINE_MODELS,
    ModelSpec,
    get_spec,
    known_models,
    parse_model_list,
)
from .runtime import PRECISIONS, RUNTIMES, build_engine, usable_cpus
from .weights import weights_path

__all__ = [
    "COURSE_TORCHVISION_MODELS",
    "DEFAULT_MODEL",
    "INT8_MODELS",
    "OFFLINE_MODELS",
    "PRECISIONS",
    "RUNTIMES",
    "Classifier",
    "ModelSpec",
    "Prediction",
    "get_spec",
    "known_models",
    "load_classifier",
    "parse_model_list",
    "top_k",
]


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
    """A loaded ImageNet classifier: its preprocessing plus an inference engine.

    The engine (``runtime.OnnxEngine`` or ``runtime.TorchEngine``) maps a preprocessed batch
    (N, 3, H, W) to class probabilities (N, 1000); it is never mutated after loading.
    """

    def __init__(self, spec: ModelSpec, engine, *, weights: Path | None, load_seconds: float):
        self.spec = spec
        self.engine = engine
        self.weights = weights
        self.load_seconds = load_seconds

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def runtime(self) -> str:
        return self.engine.kind

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.spec.preprocessing(image)

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, 1000), for a preprocessed batch (N, 3, H, W)."""
        return self.engine(batch)

    def classify(self, images: Sequence[Image.Image], k: int = 5) -> list[list[Prediction]]:
        batch = np.stack([self.preprocess(image) for image in images])
        return [top_k(row, k) for row in self.predict_proba(batch)]

    def metadata(self) -> dict:
        meta = self.spec.metadata()
        meta["weights_path"] = str(self.weights) if self.weights else None
        meta["load_seconds"] = round(self.load_seconds, 3)
        meta["inference"] = self.engine.describe()
        return meta


def load_classifier(
    name_or_spec: str | ModelSpec,
    *,
    runtime: str = "auto",
    threads: int | None = None,
    precision: str = "auto",
    streams: int = 1,
) -> Classifier:
    """Load a model from local files only; ``ModelUnavailable`` if they are not there.

    ``runtime``: ``auto`` (OpenVINO in bfloat16 where the CPU has it natively, else ONNX
    Runtime when installed and its export agrees, else torch), ``openvino``, ``onnx`` or
    ``torch``. ``threads``: intra-op threads of one forward pass (default: the CPUs this
    process may use). ``streams``: forward passes the engine runs at once (OpenVINO compiles
    that many streams; ONNX Runtime and torch take concurrent calls as they are).
    ``precision``: ``auto``, ``bf16`` or ``fp32`` (OpenVINO's; ``fp32`` makes ``auto`` pick
    ONNX Runtime).
    """
    spec = get_spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    start = time.perf_counter()
    path = weights_path(spec)
    engine = build_engine(
        spec,
        path,
        runtime=runtime,
        threads=threads or usable_cpus(),
        precision=precision,
        streams=streams,
    )
    classifier = Classifier(spec, engine, weights=path, load_seconds=time.perf_counter() - start)
    probe = classifier.predict_proba(
        np.zeros((1, 3, spec.preprocessing.crop, spec.preprocessing.crop), np.float32)
    )
    if probe.shape != (1, NUM_CLASSES):
        raise ModelUnavailable(f"model {spec.name!r} gives {probe.shape[1]} classes, not 1000")
    return classifier
