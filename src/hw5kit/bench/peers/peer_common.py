"""The classifier code every peer's handler shares: what a user of that framework writes.

Runs inside a peer's own environment (numpy, Pillow, ONNX Runtime; never hw5kit), imported by
each framework's handler from the same folder. It does what the frameworks' image-classifier
examples do, with the model's own preprocessing: fetch the URL (``urllib``) or take the uploaded
bytes, ``PIL.Image.open``, RGB, resize the shorter side, centre-crop, normalise, one ONNX
Runtime session on the same ONNX file our backend serves (softmax included), top-1 label.

Configured by the bench through the environment (``PEER_*``):

* ``PEER_ONNX``: the ONNX file (our baked export, input ``pixels``, output ``probabilities``);
* ``PEER_MODEL``: the model name; ``PEER_LABELS``: the 1000 ImageNet labels, one a line;
* ``PEER_PREPROCESSING``: JSON ``{"resize", "crop", "mean", "std", "interpolation"}``;
* ``PEER_WORKERS`` / ``PEER_THREADS``: the worker processes and the intra-op threads of each,
  chosen by the peer's own configuration from its documentation (``layout``);
* ``PEER_BATCH``: the largest batch where the framework batches.
"""

from __future__ import annotations

import io
import json
import os
import urllib.request

import numpy as np
import onnxruntime as ort
from PIL import Image

RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def cpus() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def layout(workers_per_core: float = 1.0) -> tuple[int, int]:
    """(worker processes, intra-op threads each) so that together they fill the cores once:
    ``PEER_WORKERS`` / ``PEER_THREADS`` when the bench sets them, else ``workers_per_core``
    workers per core with ``cores // workers`` threads each."""
    workers = int(os.environ.get("PEER_WORKERS") or max(1, round(cpus() * workers_per_core)))
    threads = int(os.environ.get("PEER_THREADS") or max(1, cpus() // workers))
    return workers, threads


def batch_size(default: int = 8) -> int:
    return int(os.environ.get("PEER_BATCH") or default)


class Classifier:
    """One ONNX Runtime session and the model's preprocessing."""

    def __init__(self, threads: int | None = None):
        self.name = os.environ["PEER_MODEL"]
        pp = json.loads(os.environ["PEER_PREPROCESSING"])
        self.resize, self.crop = int(pp["resize"]), int(pp["crop"])
        self.mean = np.asarray(pp["mean"], np.float32).reshape(3, 1, 1)
        self.std = np.asarray(pp["std"], np.float32).reshape(3, 1, 1)
        self.resample = RESAMPLE[pp.get("interpolation", "bilinear")]
        with open(os.environ["PEER_LABELS"], encoding="utf-8") as fh:
            self.labels = [line.strip() for line in fh if line.strip()]
        options = ort.SessionOptions()
        # ONNX Runtime, "Thread management"
        # (https://onnxruntime.ai/docs/performance/tune-performance/threading.html): the default
        # is one intra-op thread per core in every session; several worker processes on the
        # same cores must split them, so threads x workers = the cores
        options.intra_op_num_threads = threads or layout()[1]
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            os.environ["PEER_ONNX"], sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name

    @staticmethod
    def fetch(url: str, timeout: float = 10.0) -> bytes:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return response.read()

    def preprocess(self, data: bytes) -> np.ndarray:
        return self.preprocess_image(Image.open(io.BytesIO(data)))

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        """(3, crop, crop) float32: resize the shorter side, centre-crop, normalise."""
        image = image.convert("RGB")
        width, height = image.size
        scale = self.resize / min(width, height)
        size = (max(self.crop, round(width * scale)), max(self.crop, round(height * scale)))
        image = image.resize(size, self.resample)
        left, top = (size[0] - self.crop) // 2, (size[1] - self.crop) // 2
        image = image.crop((left, top, left + self.crop, top + self.crop))
        pixels = np.asarray(image, np.float32).transpose(2, 0, 1)
        return (pixels - self.mean) / self.std

    def predict(self, batch: np.ndarray) -> list[dict]:
        """Top-1 per row of a (N, 3, crop, crop) batch."""
        probabilities = self.session.run(None, {self.input: np.ascontiguousarray(batch)})[0]
        best = probabilities.argmax(axis=1)
        return [
            {"model": self.name, "category": self.labels[i], "probability": float(row[i])}
            for i, row in zip(best, probabilities, strict=True)
        ]

    def classify(self, data: bytes) -> dict:
        return self.predict(self.preprocess(data)[None])[0]
