"""backend_v3: one model per service (``MODEL_NAME``), behind the v3 API gateway.

``POST /model/<MODEL_NAME>/predict`` classifies (any other name: 404); ``GET /models`` lists every
model the gateway serves (``MODELS``, given by configuration), so any backend can answer it.
``/predict``, ``/hello``, ``/healthz``, ``/readyz`` and ``/metrics`` are the shared ones.
Serve it with ``gunicorn --chdir apps/backend_v3 app:app``.
"""

from hw5kit.serving.http import create_app

app = create_app(version="v3")
