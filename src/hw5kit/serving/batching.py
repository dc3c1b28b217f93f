"""Micro-batching: one thread runs every forward pass, on batches of concurrent requests.

Request threads fetch, decode and preprocess in parallel, then hand their pixels to
``MicroBatcher.run`` and wait. A single inference thread takes the oldest waiting request,
adds every other waiting request for the same model (up to ``max_batch``), runs one forward
pass and hands each caller its row. Two things follow:

* the intra-op threads of one forward pass are the only inference threads on the machine, so
  sizing them to the cores cannot oversubscribe it however many requests arrive at once;
* under load, requests that queued during a forward pass share the next one.

``max_wait`` is how long a batch that is not full may wait for requests that have announced
themselves (``announce``: they are being decoded and will submit in a moment). A lone request
never waits: with nothing announced, the forward pass starts at once. ``max_batch=1`` turns
batching off but keeps the single inference thread.
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
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class BatcherClosed(RuntimeError):
    pass


class MicroBatcher:
    def __init__(self, *, max_batch: int = 8, max_wait: float = 0.002, name: str = "inference"):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_wait < 0:
            raise ValueError("max_wait must be zero or more")
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.name = name
        self._cond = threading.Condition()
        self._queues: dict[str, deque[_Item]] = {}
        self._announced: Counter[str] = Counter()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
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
                raise BatcherClosed("the inference thread has stopped")
            self._ensure_thread()
            item.seq = next(self._seq)
            self._queues.setdefault(model.name, deque()).append(item)
            self._cond.notify_all()
        item.done.wait()
        if item.error is not None:
            raise item.error
        if item.result is None:  # the inference thread was interrupted
            raise BatcherClosed("the inference thread stopped before answering")
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
        """Finish what is queued, then stop the inference thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # ---- the inference thread -----------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def _take(self, name: str, batch: list[_Item]) -> None:
        queue = self._queues.get(name)
        while queue and len(batch) < self.max_batch:
            batch.append(queue.popleft())
        if queue is not None and not queue:
            del self._queues[name]

    def _next_batch(self) -> list[_Item] | None:
        with self._cond:
            while not self._queues:
                if self._closed:
                    return None
                self._cond.wait()
            # the model whose oldest request has waited longest goes first
            name = min(self._queues, key=lambda n: self._queues[n][0].seq)
            batch: list[_Item] = []
            self._take(name, batch)
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch and self._announced.get(name, 0) > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                self._take(name, batch)
            self._sizes[len(batch)] += 1
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
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
            except Exception as exc:  # every waiting caller gets the error, never a hang
                for item in batch:
                    item.error = exc
            finally:
                for item in batch:
                    item.done.set()
