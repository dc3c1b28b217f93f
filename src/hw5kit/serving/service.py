"""One prediction, from a URL or uploaded bytes to a JSON-ready answer. No HTTP here."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .batching import MicroBatcher
from .fetch import Fetcher
from .images import DecodeBudget, decode_image
from .instance import Instance
from .models import Classifier, top_k
from .registry import ModelRegistry
from .settings import ServingSettings

DEFAULT_TOP_K = 5
MAX_TOP_K = 20


@dataclass(frozen=True)
class PredictRequest:
    model: str
    url: str | None = None
    data: bytes | None = None
    top_k: int = DEFAULT_TOP_K

    @property
    def source(self) -> str:
        return "url" if self.url is not None else "upload"


class PredictionService:
    def __init__(
        self,
        settings: ServingSettings,
        registry: ModelRegistry,
        fetcher: Fetcher | None = None,
        instance: Instance | None = None,
    ):
        self.settings = settings
        self.registry = registry
        self.fetcher = fetcher or Fetcher(settings.fetch)
        self.decode_budget = DecodeBudget(
            settings.decode_budget_bytes,
            timeout=max(1.0, settings.queue_timeout),
            instance=instance,
        )
        self.batcher = MicroBatcher(
            max_batch=settings.batch_max,
            max_wait=settings.batch_wait_ms / 1000,
            parallel=settings.streams,
        )

    def infer(self, model: Classifier, pixels: np.ndarray) -> np.ndarray:
        """Probabilities for one preprocessed image, computed in a micro-batch with the
        images of concurrent requests (``batching``: at most ``streams`` passes at once)."""
        return self.batcher.run(model, pixels)

    def predict(self, req: PredictRequest) -> dict:
        start = time.perf_counter()
        model = self.registry.get(req.model)  # unknown model or not ready: fail before fetching
        fetched_url = None
        if req.url is not None:
            fetched = self.fetcher.fetch(req.url)
            data = fetched.data
            fetched_url = fetched.url
        else:
            data = req.data or b""
        t_fetch = time.perf_counter()
        with self.batcher.announce(model.name):  # a forward pass may wait a moment for us
            image = decode_image(
                data,
                max_pixels=self.settings.max_pixels,
                draft=model.spec.preprocessing.draft_size(),
                budget=self.decode_budget,
            )
            width, height = image.size
            pixels = model.preprocess(image)
        t_pre = time.perf_counter()
        probabilities = self.infer(model, pixels)
        t_inf = time.perf_counter()
        predictions = top_k(probabilities, req.top_k)
        answer = {
            "model": model.name,
            "category": predictions[0].label,
            "predictions": [p.to_dict() for p in predictions],
            "top_k": len(predictions),
            "source": req.source,
            "image": {"bytes": len(data), "decoded_width": width, "decoded_height": height},
            "timing_ms": {
                "fetch": round((t_fetch - start) * 1000, 2),
                "preprocess": round((t_pre - t_fetch) * 1000, 2),
                "inference": round((t_inf - t_pre) * 1000, 2),
                "total": round((time.perf_counter() - start) * 1000, 2),
            },
        }
        if fetched_url is not None:
            answer["url"] = fetched_url
        return answer
