"""gunicorn settings for the backends, suited to Cloud Run.

Used as ``gunicorn -c python:hw5kit.serving.gunicorn_conf app:app`` (the images' command) and by
``apps/<service>/gunicorn.conf.py``.

* Worker processes: one per CPU as long as the instance's memory holds a copy of the models
  in each (``capacity.worker_count``; ``HW5_WORKERS`` overrides), because HTTP handling and
  photo decoding hold the GIL and one process keeps only ~1.2 of 2 cores busy. The count is put
  in ``HW5_WORKERS`` here, in the master, so every worker knows its share.
  Threads serve requests concurrently. ``hw5kit.serving.capacity`` sizes the instance from the
  CPUs: ``HW5_MAX_INFLIGHT`` predictions in progress (4 per CPU), ``HW5_QUEUE_LENGTH`` more
  waiting for a slot (32 per CPU, each at most ``HW5_QUEUE_TIMEOUT`` s), and a thread for each
  of those plus 4 spare per CPU (``HW5_THREADS``) for health checks, metrics and 503s; each
  worker gets its share of those, of the decode memory and of the front buffer.
* ``HW5_INSTANCE_DIR``: a private directory made here for the workers' readiness files and the
  instance-wide decode lock (``hw5kit.serving.instance``), removed when the master exits.
* The worker class ``hw5kit.serving.http.worker.BufferingThreadWorker`` reads each request
  whole in its event loop before a thread sees it: slow clients hold a socket and a buffer,
  never a thread (deadlines ``HW5_READ_TIMEOUT``, ``HW5_MIN_UPLOAD_KBPS``; 408 past them).
* Cloud Run sends SIGTERM and kills the container 10 s later: ``graceful_timeout`` (8 s) lets
  the requests in flight finish inside that window; new connections are no longer accepted.
* ``timeout`` is the worker heartbeat (a worker stuck for that long is restarted), far above
  any request's own bound (URL fetches stop at ``HW5_FETCH_TOTAL_TIMEOUT``).
* Logs are JSON lines for Cloud Logging (``HW5_LOG_FORMAT=text`` for a terminal), level
  ``HW5_LOG_LEVEL``; requests are logged by the app with ``httpRequest``, so gunicorn's access
  log is off. Errors gunicorn answers itself (a malformed request line, headers too large) are
  JSON too, through the same worker class.

Environment: ``PORT``/``SERVING_PORT`` (bind), ``HW5_BIND_HOST`` (default 0.0.0.0, as a
container needs), ``HW5_WORKERS`` (see ``capacity``), ``HW5_THREADS``, ``HW5_LOG_LEVEL``,
``HW5_LOG_FORMAT``.
"""

import logging
import os
import shutil
import tempfile

from hw5kit.serving.instance import ENV as INSTANCE_ENV
from hw5kit.serving.instance import METRICS_ENV, Instance
from hw5kit.serving.settings import default_instance_workers, http_threads, serving_port

bind = [f"{os.environ.get('HW5_BIND_HOST', '0.0.0.0')}:{serving_port()}"]  # noqa: S104
worker_class = "hw5kit.serving.http.worker.BufferingThreadWorker"
if not os.environ.get("HW5_WORKERS", "").strip():
    os.environ["HW5_WORKERS"] = str(default_instance_workers())
workers = int(os.environ["HW5_WORKERS"])
threads = http_threads()
os.environ[INSTANCE_ENV] = tempfile.mkdtemp(prefix="hw5-instance-")  # mode 0700
_instance = Instance(os.environ[INSTANCE_ENV], workers)
if workers > 1:
    # the workers' metrics in files there, summed at each scrape (observability.Metrics):
    # without it /metrics would answer with the counters of whichever worker took the scrape.
    # Always this instance's own folder: one inherited from elsewhere may be gone or shared.
    os.environ[METRICS_ENV] = os.path.join(_instance.directory, "metrics")
    os.mkdir(os.environ[METRICS_ENV], 0o700)
else:
    os.environ.pop(METRICS_ENV, None)  # one process: its own counters are the instance's

# only now: this imports prometheus_client (through the http package), which reads METRICS_ENV
# once, at import, and the workers inherit it
from hw5kit.serving.http.logs import log_format, logging_config  # noqa: E402


def child_exit(server, worker):
    """A worker that exited (crash, timeout, restart) is no longer ready."""
    _instance.forget(worker.pid)
    if os.environ.get(METRICS_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # its live gauges no longer count


def on_exit(server):
    shutil.rmtree(_instance.directory, ignore_errors=True)


# connections a worker holds at once (idle keep-alive and still-arriving ones included); past
# it, the listen queue. A connection still arriving costs a socket and its buffer, not a thread.
worker_connections = max(1000, 4 * threads)
backlog = 512
timeout = 60
graceful_timeout = 8
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = os.environ.get("HW5_LOG_LEVEL", "info")
logconfig_dict = logging_config(loglevel, log_format())
logging.captureWarnings(True)  # library warnings become log entries too, not stray stderr text
# the request line and header limits gunicorn enforces (answered 414 / 431 / 400, as JSON)
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# The v2 session cookie is signed with SECRET_KEY. Without one, pick it here, in the master, so
# every worker shares it (a per-worker key would drop sessions between workers).
if not os.environ.get("SECRET_KEY"):
    import secrets

    os.environ["SECRET_KEY"] = secrets.token_hex(32)
