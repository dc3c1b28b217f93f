"""TorchServe handler: the ONNX file through ONNX Runtime, batched (custom service, module level
entry point: https://pytorch.org/serve/custom_service.html).

TorchServe hands ``handle`` a list of requests (its batch, ``batchSize`` in model-config.yaml):
each a dict holding the JSON body (``{"url": ...}``) under ``body``, or the multipart field
``data`` (``curl -F data=@photo.jpg``, the documented upload) as bytes.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_common import Classifier

_classifier = None


def _image_bytes(row: dict) -> bytes:
    body = row.get("body")
    if isinstance(body, dict) and "url" in body:
        return Classifier.fetch(body["url"])
    data = row.get("data") or row.get("file") or body
    if isinstance(data, bytearray | bytes):
        return bytes(data)
    raise ValueError("expected a JSON body {'url': ...} or an image in the form field 'data'")


def handle(data, context):
    global _classifier
    if _classifier is None:
        _classifier = Classifier()
    if data is None:
        return None
    batch = np.stack([_classifier.preprocess(_image_bytes(row)) for row in data])
    return _classifier.predict(batch)
