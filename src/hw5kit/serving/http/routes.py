"""Thin route handlers: parse, call the service, return JSON.

* ``common`` (every version): ``/``, ``/hello``, ``/healthz``, ``/readyz``, ``/metrics``,
  ``POST /predict``, ``GET /models``, ``GET /models/<name>``.
* ``v2``: ``PUT /model/<name>`` and ``GET /model``: the caller's choice lives in the caller's
  own signed session cookie, never in process state.
* ``v3``: ``POST /model/<name>/predict`` on a backend that serves exactly that model.
"""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request, session

from ..errors import NotReady, UnknownModelInBody
from ..service import PredictRequest
from .observability import ARRIVED_KEY
from .parsing import parse_predict

common = Blueprint("common", __name__)
v2 = Blueprint("v2", __name__)
v3 = Blueprint("v3", __name__)

SESSION_KEY = "model"


def state():
    return current_app.extensions["hw5kit"]


def _predict(model: str, url, data, top_k: int):
    """One prediction inside one of the limited in-flight slots: it waits in the admission
    queue for one (503 when the queue is full or the wait would pass its deadline)."""
    st = state()
    g.model = model  # known to exist: a bounded metrics label
    with st.limiter.slot(arrived=request.environ.get(ARRIVED_KEY)):
        answer = st.service.predict(PredictRequest(model=model, url=url, data=data, top_k=top_k))
    st.metrics.observe_prediction(answer)
    return jsonify(answer)


# ---- every version ------------------------------------------------------------------------
@common.get("/")
def index():
    st = state()
    endpoints = [
        "GET /hello",
        "GET /healthz",
        "GET /readyz",
        "GET /models",
        "GET /models/<name>",
        "POST /predict",
        "GET /metrics",
    ]
    if st.settings.version == "v2":
        endpoints += ["GET /model", "PUT /model/<name>"]
    if st.settings.version == "v3":
        endpoints += ["POST /model/<name>/predict"]
    return jsonify(
        service=f"backend_{st.settings.version}",
        models=list(st.registry.names),
        default_model=st.settings.default_model,
        ready=st.registry.ready,
        endpoints=endpoints,
    )


@common.get("/hello")
def hello():
    return "Hello!"


@common.get("/healthz")
def healthz():
    registry = state().registry
    if registry.error:
        return jsonify(status="failed", error=registry.error), 503
    return jsonify(status="ok")


@common.get("/readyz")
def readyz():
    """200 once this worker's models are loaded and, under ``gunicorn_conf``, every other
    worker's too (``instance``): whichever worker a request then reaches can serve it."""
    st = state()
    registry = st.registry
    body = registry.status()
    ready = registry.ready
    if st.instance is not None:
        loaded = st.instance.ready_workers()
        body["workers"] = {"ready": loaded, "total": st.instance.workers}
        ready = ready and loaded >= st.instance.workers
        body["ready"] = ready
    if ready:
        return jsonify(body)
    response = jsonify(body)
    response.status_code = 503
    response.headers["Retry-After"] = str(NotReady.retry_after)
    return response


@common.get("/metrics")
def metrics():
    """Prometheus text format: requests, latencies, in-flight work, model load times."""
    return state().metrics.exposition()


@common.get("/models")
def list_models():
    st = state()
    if st.settings.version == "v3" and st.settings.all_models:
        return jsonify(list(st.settings.all_models))
    return jsonify(list(st.registry.names))


@common.get("/models/<name>")
def describe_model(name: str):
    st = state()
    st.registry.check(name)
    meta = st.registry.specs[name].metadata()
    meta["loaded"] = st.registry.ready
    meta["default"] = name == st.settings.default_model
    return jsonify(meta)


@common.post("/predict")
def predict():
    st = state()
    url, data, model, top_k = parse_predict(request, st.settings.max_upload_bytes)
    if model is not None:
        st.registry.check(model, error=UnknownModelInBody)
    else:
        chosen = session.get(SESSION_KEY) if st.settings.version == "v2" else None
        model = chosen if chosen in st.registry.names else st.settings.default_model
    return _predict(model, url, data, top_k)


# ---- v2: the model choice is the caller's own -------------------------------------------------
@v2.put("/model/<name>")
def choose_model(name: str):
    session[SESSION_KEY] = state().registry.check(name)
    return jsonify(model=name, scope="session")


@v2.get("/model")
def current_model():
    st = state()
    chosen = session.get(SESSION_KEY)
    if chosen in st.registry.names:
        return jsonify(model=chosen, source="session")
    return jsonify(model=st.settings.default_model, source="default")


# ---- v3: one backend per model --------------------------------------------------------------
@v3.post("/model/<name>/predict")
def predict_named(name: str):
    st = state()
    st.registry.check(name)
    url, data, model, top_k = parse_predict(request, st.settings.max_upload_bytes)
    if model is not None and model != name:
        raise UnknownModelInBody(f"the body names model {model!r} but the path names {name!r}")
    return _predict(name, url, data, top_k)
