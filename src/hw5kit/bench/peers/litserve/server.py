"""LitServe 0.2 server: the ONNX file through ONNX Runtime, with LitServe's batching.

Configuration, as LitServe's documentation recommends for CPU throughput:

* LitServer (https://lightning.ai/docs/litserve/api-reference/litserver): ``accelerator="cpu"``
  and ``workers_per_device`` "for CPU, set to the number of cores available"; each worker
  runs one ONNX Runtime intra-op thread, so together they fill the cores once (ONNX Runtime's
  thread-management guide; ``peer_common.layout``). ``fast_queue=True`` (ZeroMQ) "for
  high-throughput scenarios (>100 RPS)".
* Batching (https://lightning.ai/docs/litserve/features/batching): ``max_batch_size`` and
  ``batch_timeout`` on the LitAPI; ``batch``/``unbatch`` stack and split the images. The batch
  window is 2 ms, the same our backend allows.

Requests: ``POST /predict`` with JSON ``{"url": ...}`` or the photo in the multipart field
``file``. Started as ``python server.py`` with ``PEER_PORT`` set.
"""

import os

import litserve as ls
import numpy as np
from peer_common import Classifier, batch_size, layout

WORKERS, THREADS = layout()


class ClassifierAPI(ls.LitAPI):
    def setup(self, device):
        self.model = Classifier(THREADS)

    def decode_request(self, request):
        if "url" in request:
            return self.model.preprocess(self.model.fetch(request["url"]))
        upload = request["file"]
        return self.model.preprocess(upload.file.read())

    def batch(self, inputs):
        return np.stack(inputs)

    def predict(self, x):
        return self.model.predict(x)

    def unbatch(self, output):
        return list(output)

    def encode_response(self, output):
        return output


if __name__ == "__main__":
    api = ClassifierAPI(max_batch_size=batch_size(), batch_timeout=0.002)
    server = ls.LitServer(
        api, accelerator="cpu", workers_per_device=WORKERS, fast_queue=True, timeout=120
    )
    server.run(host="127.0.0.1", port=int(os.environ["PEER_PORT"]), generate_client_file=False)
