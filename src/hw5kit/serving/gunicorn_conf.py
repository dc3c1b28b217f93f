"""gunicorn settings for the backends, suited to Cloud Run.

Used as ``gunicorn -c python:hw5kit.serving.gunicorn_conf app:app`` (the images' command) and by
``apps/<service>/gunicorn.conf.py``. One worker process holds the models once; threads serve
requests concurrently (model forward passes release the GIL). Cloud Run sends SIGTERM and kills
the container 10 s later, so the graceful timeout stays inside that window.

Environment: ``PORT``/``SERVING_PORT`` (bind), ``HW5_WORKERS`` (default 1), ``HW5_THREADS``
(default 4 per CPU), ``HW5_BIND_HOST`` (default 0.0.0.0, as a container needs).
"""

import os

from hw5kit.serving.settings import cpu_count, serving_port

bind = [f"{os.environ.get('HW5_BIND_HOST', '0.0.0.0')}:{serving_port()}"]  # noqa: S104
worker_class = "gthread"
workers = int(os.environ.get("HW5_WORKERS", "1"))
threads = int(os.environ.get("HW5_THREADS", str(4 * cpu_count())))
timeout = 60
graceful_timeout = 8
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("HW5_LOG_LEVEL", "info")

# The v2 session cookie is signed with SECRET_KEY. Without one, pick it here, in the master, so
# every worker shares it (a per-worker key would drop sessions between workers).
if not os.environ.get("SECRET_KEY"):
    import secrets

    os.environ["SECRET_KEY"] = secrets.token_hex(32)
