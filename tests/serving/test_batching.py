"""The micro-batcher: right rows to the right callers, batches formed, no waiting when alone."""

import contextlib
import threading
import time

import numpy as np
import pytest

from hw5kit.serving.batching import BatcherClosed, MicroBatcher


class FakeModel:
    """Row i of the answer is (model id, the image's first pixel): a caller can check it got
    its own row from its own model. Records each batch size, the threads that ran passes and
    the most passes running at once; can be slow or fail."""

    def __init__(self, name: str, ident: float, delay: float = 0.0, fail: bool = False):
        self.name = name
        self.ident = ident
        self.delay = delay
        self.fail = fail
        self.batches: list[int] = []
        self.threads: set[int] = set()
        self.running = 0
        self.most_at_once = 0
        self.lock = threading.Lock()

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.batches.append(len(batch))
            self.threads.add(threading.get_ident())
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(self.delay)
            if self.fail:
                raise ValueError("model exploded")
            return np.stack([np.array([self.ident, img.flat[0]]) for img in batch])
        finally:
            with self.lock:
                self.running -= 1


def pixels(value: float) -> np.ndarray:
    return np.full((3, 4, 4), value, np.float32)


@pytest.fixture
def batcher():
    b = MicroBatcher(max_batch=8, max_wait=0.002)
    yield b
    b.close()


def run_concurrently(fn, n: int) -> list:
    results: list = [None] * n
    start = threading.Barrier(n)

    def worker(i: int) -> None:
        start.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_each_caller_gets_its_own_row_and_batches_form(batcher):
    model = FakeModel("m", 7.0, delay=0.05)
    results = run_concurrently(lambda i: batcher.run(model, pixels(i)), 24)
    assert [tuple(r) for r in results] == [(7.0, float(i)) for i in range(24)]
    assert sum(model.batches) == 24
    assert max(model.batches) > 1, model.batches  # requests queued during a pass share the next
    assert max(model.batches) <= 8
    stats = batcher.stats()
    assert stats["images"] == 24 and stats["batches"] == len(model.batches)


def test_models_are_never_mixed_in_a_batch(batcher):
    a, b = FakeModel("a", 1.0, delay=0.02), FakeModel("b", 2.0, delay=0.02)
    results = run_concurrently(lambda i: batcher.run(a if i % 2 else b, pixels(i)), 20)
    for i, row in enumerate(results):
        assert tuple(row) == ((1.0 if i % 2 else 2.0), float(i))
    assert sum(a.batches) == 10 and sum(b.batches) == 10


def test_a_lone_request_does_not_wait_for_max_wait():
    batcher = MicroBatcher(max_batch=8, max_wait=2.0)
    model = FakeModel("m", 1.0)
    try:
        start = time.perf_counter()
        assert tuple(batcher.run(model, pixels(3))) == (1.0, 3.0)
        assert time.perf_counter() - start < 0.5
    finally:
        batcher.close()


def test_a_pass_waits_for_announced_requests_up_to_max_wait():
    batcher = MicroBatcher(max_batch=8, max_wait=1.0)
    model = FakeModel("m", 1.0)
    announced = threading.Event()

    def late_caller():
        with batcher.announce("m"):
            announced.set()
            time.sleep(0.15)  # "decoding"
        return batcher.run(model, pixels(2))

    try:
        thread_result: list = []
        t = threading.Thread(target=lambda: thread_result.append(late_caller()))
        t.start()
        announced.wait(5)
        first = batcher.run(model, pixels(1))
        t.join(5)
        assert tuple(first) == (1.0, 1.0) and tuple(thread_result[0]) == (1.0, 2.0)
        assert model.batches == [2]  # the first request waited for the announced one
    finally:
        batcher.close()


@contextlib.contextmanager
def announced_and_stuck(batcher: MicroBatcher, name: str = "m"):
    """A request that announced itself for ``name`` and hangs decoding until the block ends."""
    announced, release = threading.Event(), threading.Event()

    def stuck():
        with batcher.announce(name):
            announced.set()
            release.wait(5)

    t = threading.Thread(target=stuck)
    t.start()
    announced.wait(5)
    try:
        yield
    finally:
        release.set()
        t.join(5)


def test_max_wait_bounds_the_wait_for_an_announced_request_that_never_comes():
    batcher = MicroBatcher(max_batch=8, max_wait=0.05)
    model = FakeModel("m", 1.0)
    try:
        with announced_and_stuck(batcher):
            start = time.perf_counter()
            batcher.run(model, pixels(1))
            assert 0.03 < time.perf_counter() - start < 1.0
    finally:
        batcher.close()


def test_max_batch_one_disables_batching():
    batcher = MicroBatcher(max_batch=1, max_wait=0.01)
    model = FakeModel("m", 1.0, delay=0.01)
    try:
        run_concurrently(lambda i: batcher.run(model, pixels(i)), 8)
        assert model.batches == [1] * 8
    finally:
        batcher.close()


def test_an_error_reaches_every_caller_of_the_batch_and_the_thread_survives(batcher):
    bad = FakeModel("bad", 1.0, delay=0.02, fail=True)
    errors = run_concurrently(lambda i: _error_of(lambda: batcher.run(bad, pixels(i))), 6)
    assert all(isinstance(e, ValueError) and "exploded" in str(e) for e in errors)
    good = FakeModel("good", 5.0)
    assert tuple(batcher.run(good, pixels(9))) == (5.0, 9.0)


def _error_of(fn):
    try:
        fn()
    except Exception as exc:
        return exc
    return None


def test_close_finishes_queued_work_then_refuses(batcher):
    model = FakeModel("m", 1.0, delay=0.01)
    assert tuple(batcher.run(model, pixels(1))) == (1.0, 1.0)
    batcher.close()
    with pytest.raises(BatcherClosed):
        batcher.run(model, pixels(2))


@pytest.mark.parametrize("kwargs", [{"max_batch": 0}, {"max_wait": -1}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        MicroBatcher(**kwargs)


def test_a_request_that_fails_while_announced_releases_its_announcement():
    batcher = MicroBatcher(max_batch=8, max_wait=2.0)
    model = FakeModel("m", 1.0)
    try:
        with pytest.raises(ValueError), batcher.announce("m"):
            raise ValueError("not an image")  # e.g. a 422 while decoding
        start = time.perf_counter()
        batcher.run(model, pixels(1))  # nobody is announced any more: no 2 s wait
        assert time.perf_counter() - start < 0.5
    finally:
        batcher.close()


def test_a_lone_request_runs_its_forward_pass_on_its_own_thread():
    """No hand-over to another thread and back (each costs a wake-up on a busy machine)."""
    batcher = MicroBatcher(max_batch=8, max_wait=0.002)
    model = FakeModel("m", 1.0)
    try:
        assert tuple(batcher.run(model, pixels(4))) == (1.0, 4.0)
        assert model.threads == {threading.get_ident()}
    finally:
        batcher.close()


@pytest.mark.parametrize("parallel", [1, 2, 3])
def test_at_most_parallel_passes_run_at_once_and_every_caller_gets_its_row(parallel):
    batcher = MicroBatcher(max_batch=4, max_wait=0.002, parallel=parallel)
    model = FakeModel("m", 3.0, delay=0.05)
    try:
        results = run_concurrently(lambda i: batcher.run(model, pixels(i)), 16)
        assert [tuple(r) for r in results] == [(3.0, float(i)) for i in range(16)]
        assert model.most_at_once == parallel, model.batches
        assert sum(model.batches) == 16 and max(model.batches) <= 4
    finally:
        batcher.close()


def test_with_a_free_pass_a_batch_does_not_wait_for_announced_requests():
    """An announced request will run its own pass on the free one: waiting only adds latency."""
    batcher = MicroBatcher(max_batch=8, max_wait=2.0, parallel=2)
    model = FakeModel("m", 1.0)
    try:
        with announced_and_stuck(batcher):
            start = time.perf_counter()
            batcher.run(model, pixels(1))
            assert time.perf_counter() - start < 1.0
    finally:
        batcher.close()


def test_parallel_below_one_is_refused():
    with pytest.raises(ValueError):
        MicroBatcher(parallel=0)
