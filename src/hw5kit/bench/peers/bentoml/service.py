"""BentoML 1.4 service: the ONNX file through ONNX Runtime, with BentoML's adaptive batching.

Configuration, as BentoML's documentation recommends for CPU throughput:

* Workers (https://docs.bentoml.com/en/latest/build-with-bentoml/parallelize-requests.html):
  "workers" processes each run the service; for CPU-bound models one per core ("cpu_count"),
  each with one ONNX Runtime intra-op thread so that together they fill the cores once
  (ONNX Runtime's thread-management guide; ``peer_common.layout``).
* Adaptive batching (https://docs.bentoml.com/en/latest/guides/adaptive-batching.html):
  ``batchable=True`` with ``max_batch_size``; the dispatcher adapts the batch window to the
  traffic (``max_latency_ms`` is the deadline past which it sheds load with a 503; kept at its
  default so that a queue never turns into errors).
* A batchable API takes one list argument: uploads post the photo in the multipart field
  ``images`` to ``/classify``, URLs post ``{"urls": [...]}`` to ``/classify_url``; each answers
  a list (one answer per input).

Started as ``bentoml serve service:Classifier --host 127.0.0.1 --port PORT`` from this folder.
"""

from pathlib import Path

import bentoml
import numpy as np
from peer_common import Classifier as OnnxClassifier
from peer_common import batch_size, layout

WORKERS, THREADS = layout()


@bentoml.service(workers=WORKERS, traffic={"timeout": 120})
class Classifier:
    def __init__(self) -> None:
        self.model = OnnxClassifier(THREADS)

    @bentoml.api(batchable=True, max_batch_size=batch_size())
    def classify(self, images: list[Path]) -> list[dict]:
        batch = np.stack([self.model.preprocess(Path(p).read_bytes()) for p in images])
        return self.model.predict(batch)

    @bentoml.api(batchable=True, max_batch_size=batch_size())
    def classify_url(self, urls: list[str]) -> list[dict]:
        batch = np.stack([self.model.preprocess(self.model.fetch(u)) for u in urls])
        return self.model.predict(batch)
