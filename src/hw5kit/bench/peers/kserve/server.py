"""KServe 0.21 ModelServer (standalone, no Kubernetes): the ONNX file through ONNX Runtime.

Configuration, as KServe's documentation recommends:

* Custom model server (https://kserve.github.io/website/0.8/modelserving/v1beta1/custom/custom_model):
  a ``kserve.Model`` subclass with ``load`` and ``predict``, started by ``ModelServer().start``;
  the v1 protocol, ``POST /v1/models/<name>:predict`` with ``{"instances": [...]}``; an image
  travels as ``{"image": {"b64": ...}}`` (KServe's image-classifier examples), a URL as
  ``{"url": ...}``.
* ModelServer (https://kserve.github.io/website/0.12/python_runtime_api/docs/api/): ``workers``
  uvicorn processes for multi-processing, one per core for a CPU-bound model (a synchronous
  ``predict`` runs on its process's event loop), each with one ONNX Runtime intra-op thread
  (ONNX Runtime's thread-management guide; ``peer_common.layout``). KServe's request batching
  is the Kubernetes agent's (a sidecar), not the ModelServer's: there is none standalone.

Started as ``python server.py`` with ``PEER_PORT`` set (REST only: gRPC off).
"""

import base64

import kserve
import numpy as np
from peer_common import Classifier, layout

WORKERS, THREADS = layout()


class PeerModel(kserve.Model):
    def __init__(self, name: str):
        super().__init__(name)
        self.model = None
        self.load()

    def load(self) -> bool:
        self.model = Classifier(THREADS)
        self.ready = True
        return self.ready

    # ModelServer starts its worker processes with multiprocessing's spawn and pickles the
    # registered models into them: an ONNX Runtime session cannot travel, so each worker
    # process opens its own on arrival.
    def __getstate__(self):
        state = dict(self.__dict__)
        state["model"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.load()

    def _image(self, instance: dict) -> bytes:
        if "url" in instance:
            return self.model.fetch(instance["url"])
        return base64.b64decode(instance["image"]["b64"])

    def predict(self, payload, headers=None):
        images = [self.model.preprocess(self._image(i)) for i in payload["instances"]]
        return {"predictions": self.model.predict(np.stack(images))}


if __name__ == "__main__":
    import os

    server = kserve.ModelServer(
        http_port=int(os.environ["PEER_PORT"]), workers=WORKERS, enable_grpc=False
    )
    server.start([PeerModel(os.environ["PEER_MODEL"])])
