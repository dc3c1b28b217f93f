"""Micro-batching: at most ``parallel`` forward passes at a time, on batches of concurrent
requests.

Request threads fetch, decode and preprocess in parallel, then hand their pixels to
``MicroBatcher.run``. A thread that finds fewer than ``parallel`` forward passes running runs
the next one itself (a *leader*), on the oldest waiting request plus every other waiting
request for the same model (up to ``max_batch``); the others wait for their row. When a pass
ends and requests are still waiting, the owner of the oldest becomes the next leader. So:

* the intra-op threads of the passes running at once (``parallel`` times each engine's
  threads, sized together to the cores) are the only inference threads on the machine: they
  cannot oversubscribe it however many requests arrive at once;
* under load, requests that queued during a forward pass share the next one;
* a lone request runs its forward pass on its own thread, with no hand-over to another thread
  and back: on a busy 2-CPU machine each such wake-up costs a millisecond or more (measured:
  the forward pass of EfficientNet-Lite0 on one image took 6 ms from the request's point of
  view with a dedicated inference thread, against 3 ms of computing).

``max_wait`` is how long a batch that is not full may wait for requests that have announced
themselves (``announce``: they are being decoded and will submit in a moment), and only when
every other pass is busy (else the announced request will run its own at once). A lone request
never waits: with nothing announced, the forward pass starts at once. ``max_batch=1`` turns
batching off but keeps the bound on passes at once.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Model(Protocol):
    name: str

    def predict_proba(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass
class _Item:
    model: Model
    pixels: np.ndarray
    seq: int
    wake: threading.Event = field(default_factory=threading.Event)  # finished, or must lead
    lead: bool = False
    finished: bool = False
    result: np.ndarray | None = None
    error: BaseException | None = None


class BatcherClosed(RuntimeError):
    pass


class MicroBatcher:
    def __init__(
        self,
        *,
        max_batch: int = 8,
        max_wait: float = 0.002,
        parallel: int = 1,
        name: str = "inference",
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        if max_wait < 0:
            raise ValueError("max_wait must be zero or more")
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.parallel = parallel
        self.name = name
        self._cond = threading.Condition()
        self._queues: dict[str, deque[_Item]] = {}
        self._announced: Counter[str] = Counter()
        self._seq = itertools.count()
        # leaders collecting or running a batch; while fewer than ``parallel``, none is waiting
        self._leaders = 0
        self._closed = False
        self._sizes: Counter[int] = Counter()

    # ---- callers ------------------------------------------------------------------------
    @contextlib.contextmanager
    def announce(self, model_name: str) -> Iterator[None]:
        """Mark a request for ``model_name`` that will call ``run`` once this block ends."""
        with self._cond:
            self._announced[model_name] += 1
        try:
            yield
        finally:
            with self._cond:
                self._announced[model_name] -= 1
                if self._announced[model_name] <= 0:
                    del self._announced[model_name]
                self._cond.notify_all()

    def run(self, model: Model, pixels: np.ndarray) -> np.ndarray:
        """The probabilities for one preprocessed image (C, H, W), computed in a batch."""
        item = _Item(model, pixels, 0)
        with self._cond:
            if self._closed:
                raise BatcherClosed("the batcher is closed")
            item.seq = next(self._seq)
            self._queues.setdefault(model.name, deque()).append(item)
            lead = self._leaders < self.parallel
            if lead:
                self._leaders += 1
            else:
                self._cond.notify_all()  # a leader collecting a batch may take this one
        while True:
            if lead:
                self._lead()
            if item.finished:
                break
            item.wake.wait()
            item.wake.clear()
            lead, item.lead = item.lead, False
        if item.error is not None:
            raise item.error
        if item.result is None:  # pragma: no cover - a leader sets one or the other
            raise BatcherClosed("the forward pass ended without an answer")
        return item.result

    def stats(self) -> dict:
        """Batches run so far by size, and the mean batch size."""
        with self._cond:
            sizes = dict(sorted(self._sizes.items()))
        batches = sum(sizes.values())
        images = sum(size * count for size, count in sizes.items())
        return {
            "batches": batches,
            "images": images,
            "mean_batch": round(images / batches, 3) if batches else None,
            "sizes": sizes,
        }

    def close(self, timeout: float = 5.0) -> None:
        """Refuse new requests; wait (at most ``timeout`` s) for the queued ones to finish."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closed = True
            while self._leaders:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)

    # ---- the leader ---------------------------------------------------------------------
    def _take(self, name: str, batch: list[_Item]) -> None:
        queue = self._queues.get(name)
        while queue and len(batch) < self.max_batch:
            batch.append(queue.popleft())
        if queue is not None and not queue:
            del self._queues[name]

    def _next_batch(self) -> list[_Item]:
        """(Lock held.) The oldest waiting request and its model's others, after waiting up
        to ``max_wait`` for the announced ones of that model when every pass is taken."""
        # the model whose oldest request has waited longest goes first
        name = min(self._queues, key=lambda n: self._queues[n][0].seq)
        batch: list[_Item] = []
        self._take(name, batch)
        deadline = time.monotonic() + self.max_wait
        while (
            len(batch) < self.max_batch
            and self._announced.get(name, 0) > 0
            and self._leaders >= self.parallel
        ):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
            self._take(name, batch)
        self._sizes[len(batch)] += 1
        return batch

    def _lead(self) -> None:
        """Run one batch, answer its callers, then pass the lead to the oldest waiting
        request's thread (or end it: nothing waits)."""
        with self._cond:
            batch = self._next_batch()
        try:
            pixels = np.stack([item.pixels for item in batch])
            probabilities = batch[0].model.predict_proba(pixels)
            if len(probabilities) != len(batch):
                raise RuntimeError(
                    f"{batch[0].model.name} returned {len(probabilities)} rows "
                    f"for a batch of {len(batch)}"
                )
            for item, row in zip(batch, probabilities, strict=True):
                item.result = row
        except BaseException as exc:  # every caller of the batch gets the error, never a hang
            for item in batch:
                item.error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            with self._cond:
                for item in batch:
                    item.finished = True
                    item.wake.set()
                if self._queues:
                    name = min(self._queues, key=lambda n: self._queues[n][0].seq)
                    successor = self._queues[name][0]
                    successor.lead = True
                    successor.wake.set()
                else:
                    self._leaders -= 1
                    self._cond.notify_all()  # close() may be waiting
