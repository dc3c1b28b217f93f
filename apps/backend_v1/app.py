"""backend_v1: classifies images with one model, ``MODEL_NAME`` (default efficientnet_lite0).

Serve it with ``gunicorn --chdir apps/backend_v1 app:app`` (the WSGI object is ``app``).
"""

from hw5kit.serving.http import create_app

app = create_app(version="v1")
