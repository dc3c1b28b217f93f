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

Those are the figures of the instance. It runs ``workers`` gunicorn processes (``worker_count``):
one per CPU, so that request handling (HTTP, photo decoding, both under the GIL) of one process
overlaps the forward pass of the other, but only as many as the instance's memory holds
(``WORKER_MIB`` per worker of the model, after what the workers share), so
resnet50 on a 2 GiB Cloud Run instance keeps one worker. ``HW5_WORKERS`` overrides the count.
Each worker gets its share (``per_worker``) of the in-progress limit, and the serving settings
split the decode memory budget and the front buffer the same way, so that the instance's totals
stay those above whatever the worker count; the queue is the instance's in each worker (see
``per_worker``), the instance's total being bounded by Cloud Run's ``--concurrency``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

SLOTS_PER_CPU = 4
QUEUE_PER_CPU = 32
SPARE_THREADS_PER_CPU = 4
QUEUE_TIMEOUT = 10.0  # seconds a request may wait for a slot, from its arrival

# Resident memory of one worker process with the model loaded and serving (OpenVINO bf16,
# measured on the reference machine: RSS under load at c16, rounded up; two lite0 workers held
# about 250 MiB each, one resnet50 worker about 900 MiB). A model not listed counts as
# UNKNOWN_WORKER_MIB: a larger torchvision model keeps one
# worker unless the memory is plainly there.
WORKER_MIB = {
    "efficientnet_lite0": 300,
    "efficientnet_lite1": 330,
    "efficientnet_lite2": 360,
    "efficientnet_lite0_int8": 300,
    "efficientnet_lite1_int8": 330,
    "efficientnet_lite2_int8": 360,
    "resnet50": 1000,
}
UNKNOWN_WORKER_MIB = 1500
MIB = 1024 * 1024
MASTER_BYTES = 64 * MIB  # the gunicorn master (it imports the settings, never a model)


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


def per_worker(total: Capacity, workers: int) -> Capacity:
    """One worker's share of ``total`` (an instance's capacity): the in-progress limit divided
    (at least 1 each), threads for its requests plus its share of the spare ones.

    The queue is not divided: the kernel hands connections to whichever worker accepts first,
    and a client that keeps its connections (the gateway, a load balancer) may put most of its
    requests on one worker (measured: with the queue divided, 92 of 192 requests at
    concurrency 64 through the gateway got 503). So each worker may hold the whole instance's
    ``admitted`` alone (its slots plus the rest as queue): no worker refuses what Cloud Run's
    ``--concurrency`` (``total.admitted``, the bound on the instance's total) lets through."""
    workers = max(1, workers)
    if workers == 1:
        return total
    inflight = max(1, total.inflight // workers)
    queue = max(0, total.admitted - inflight)
    spare = max(1, (total.threads - total.inflight - total.queue) // workers)
    return replace(total, inflight=inflight, queue=queue, threads=inflight + queue + spare)


def share(total: int, workers: int) -> int:
    """A byte budget split between ``workers`` processes (at least 1 byte each)."""
    return max(1, total // max(1, workers))


def _cgroup_limit_files(root: str) -> list[str]:
    """The memory-limit files of this process's cgroup and of its ancestors (the effective
    limit is the smallest of them): v2 ``memory.max`` under ``/sys/fs/cgroup`` (or its
    ``unified`` mount beside v1 controllers), v1 ``memory.limit_in_bytes`` under
    ``/sys/fs/cgroup/memory``, as ``/proc/self/cgroup`` names the paths; the roots last."""
    wanted: list[tuple[str, str, str]] = []  # (mount, own path, file)
    try:
        with open(os.path.join(root, "proc/self/cgroup")) as handle:
            for line in handle:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) != 3:
                    continue
                _, controllers, path = parts
                if controllers == "":
                    for mount in ("sys/fs/cgroup", "sys/fs/cgroup/unified"):
                        wanted.append((mount, path, "memory.max"))
                elif "memory" in controllers.split(","):
                    wanted.append(("sys/fs/cgroup/memory", path, "memory.limit_in_bytes"))
    except OSError:
        pass
    wanted += [("sys/fs/cgroup", "/", "memory.max"),
               ("sys/fs/cgroup/memory", "/", "memory.limit_in_bytes")]  # fmt: skip
    files: list[str] = []
    for mount, path, name in wanted:
        parts = [p for p in path.split("/") if p and p not in (".", "..")]
        for depth in range(len(parts), -1, -1):
            files.append(os.path.join(root, mount, *parts[:depth], name))
    return list(dict.fromkeys(files))


def memory_limit_bytes(root: str = "/") -> int | None:
    """The memory this container may use: the cgroup limit of this process (v2 ``memory.max``,
    v1 ``memory.limit_in_bytes``, its own cgroup's or an ancestor's) or the machine's
    ``MemTotal`` (what a Cloud Run instance shows as its memory), the smallest of those known;
    None when none is."""
    found: list[int] = []
    for name in _cgroup_limit_files(root):
        try:
            with open(name) as handle:
                raw = handle.read().strip()
        except OSError:
            continue
        if raw.isdigit() and 0 < int(raw) < 1 << 60:  # "max" or a huge figure: no limit
            found.append(int(raw))
    try:
        with open(os.path.join(root, "proc/meminfo")) as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    return min(found) if found else None


def worker_count(
    cpus: int, models: list[str] | tuple[str, ...], memory: int | None, reserved: int
) -> int:
    """Worker processes for an instance: one per CPU, as many as fit in ``memory`` once
    ``reserved`` bytes (the decode budget and front buffer, shared by all workers) are set
    aside, each worker holding ``models`` (``WORKER_MIB``); at least one."""
    cpus = max(1, cpus)
    if memory is None:
        return 1
    each = sum(WORKER_MIB.get(name, UNKNOWN_WORKER_MIB) for name in models) * MIB
    return max(1, min(cpus, (memory - reserved) // max(1, each)))
