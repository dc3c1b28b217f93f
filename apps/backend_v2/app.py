"""backend_v2: several models (``MODELS``); each caller picks one for itself.

``PUT /model/<name>`` keeps the choice in the caller's own session cookie and ``POST /predict``
takes an optional ``model``; nothing one caller does changes another caller's model.
Serve it with ``gunicorn --chdir apps/backend_v2 app:app``.
"""

from hw5kit.serving.http import create_app

app = create_app(version="v2")
