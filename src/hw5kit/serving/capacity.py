"""How much work one backend instance takes at once, from its CPU count (standard library only).

The serving settings use it for the running process; the pipeline uses it for the Cloud Run
instance it deploys (``--concurrency`` = what the instance admits without a 503), so the
numbers Cloud Run sends and the numbers the instance accepts are the same ones.

Per CPU, by default:

* 4 predictions in progress (fetch, decode, inference: ``HW5_MAX_INFLIGHT``);
* 32 more waiting in the admission queue for a slot (``HW5_QUEUE_LENGTH``), each at most
  ``HW5_QUEUE_TIMEOUT`` seconds (10) from its arrival; past either, 503 + ``Retry-After``;
* gunicorn threads for all of those, plus 4 spare ones for ``/hello``, probes, metrics and
  quick errors (``HW5_THREADS``): a waiting request holds a thread, so the threads are sized
  to the queue, never the reverse.

On the 2 CPUs of the reference deployment: 8 in progress, 64 queued, 72 admitted (Cloud Run's
``--concurrency``), 80 threads.
"""

from __future__ import annotations

from dataclasses import dataclass

SLOTS_PER_CPU = 4
QUEUE_PER_CPU = 32
SPARE_THREADS_PER_CPU = 4
QUEUE_TIMEOUT = 10.0  # seconds a request may wait for a slot, from its arrival


@dataclass(frozen=True)
class Capacity:
    cpus: int
    inflight: int  # predictions in progress at once
    queue: int  # predictions waiting for a slot
    threads: int  # gunicorn threads per worker
    queue_timeout: float = QUEUE_TIMEOUT

    @property
    def admitted(self) -> int:
        """Predictions one instance takes at once without a 503: Cloud Run's concurrency."""
        return self.inflight + self.queue


def plan(
    cpus: int,
    *,
    threads: int | None = None,
    inflight: int | None = None,
    queue: int | None = None,
    queue_timeout: float | None = None,
) -> Capacity:
    """The defaults above, with any value given kept as it is.

    When ``threads`` is given but not the others, the in-flight limit and the queue shrink to
    fit it (at most half the threads in progress, one thread in eight spare), so that a waiting
    request never lacks a thread.
    """
    cpus = max(1, cpus)
    if threads is None:
        inflight = inflight if inflight is not None else SLOTS_PER_CPU * cpus
        queue = queue if queue is not None else QUEUE_PER_CPU * cpus
        threads = inflight + queue + SPARE_THREADS_PER_CPU * cpus
    else:
        threads = max(1, threads)
        spare = max(1, threads // 8)
        if inflight is None:
            inflight = max(1, min(SLOTS_PER_CPU * cpus, threads // 2))
        if queue is None:
            queue = max(0, min(QUEUE_PER_CPU * cpus, threads - inflight - spare))
    return Capacity(
        cpus=cpus,
        inflight=max(1, inflight),
        queue=max(0, queue),
        threads=threads,
        queue_timeout=QUEUE_TIMEOUT if queue_timeout is None else queue_timeout,
    )


def _whole(raw: str | None) -> int | None:
    raw = (raw or "").strip()
    return int(raw) if raw.isdigit() and int(raw) >= 0 else None


def from_env(cpus: int, env) -> Capacity:
    """``plan`` with ``HW5_THREADS``, ``HW5_MAX_INFLIGHT`` and ``HW5_QUEUE_LENGTH`` from
    ``env`` when they are whole numbers (the serving settings validate them first and say
    what is wrong; the pipeline reads a service's ``env`` block with this)."""
    threads = _whole(env.get("HW5_THREADS"))
    inflight = _whole(env.get("HW5_MAX_INFLIGHT"))
    return plan(
        cpus,
        threads=threads or None,
        inflight=inflight or None,
        queue=_whole(env.get("HW5_QUEUE_LENGTH")),
    )
