"""How much work one backend instance takes at once, from its CPU count (standard library only).

The serving settings use it for the running process; the pipeline uses it for the Cloud Run
instance it deploys (``--concurrency``), so Cloud Run queues what the instance would refuse.
"""

from __future__ import annotations

THREADS_PER_CPU = 8


def http_threads(cpus: int, threads: int | None = None) -> int:
    """gunicorn threads per worker: ``threads`` when set, else 8 per CPU."""
    return max(1, threads if threads is not None else THREADS_PER_CPU * cpus)


def max_inflight(threads: int) -> int:
    """Predictions in progress at once by default: half the threads, so spare threads answer
    503s, health checks and metrics at once."""
    return max(1, threads // 2)
