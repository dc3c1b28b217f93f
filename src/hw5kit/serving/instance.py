"""What the gunicorn workers of one instance share: readiness and the decode memory bound.

``gunicorn_conf`` (in the master, before the workers fork) creates a private directory
(mode 0700) and names it in ``HW5_INSTANCE_DIR``; it removes it when the master exits.

* Readiness: a worker writes ``ready.<pid>`` once its models are loaded; the master's
  ``child_exit`` hook removes the file of a worker that exits. ``/readyz`` answers 200 only when
  ``HW5_WORKERS`` live workers have written theirs, so that a load started at ready never meets a
  worker still loading.
* Decode memory: each worker's ``DecodeBudget`` holds its share of the instance's budget, and a
  decode larger than that share (which a budget lets run alone in its process) must also run
  alone in the instance: it takes ``decode.lock`` exclusively, every other decode takes it shared.
  A waiting exclusive decode holds ``decode.gate`` so that new shared decodes queue behind it
  rather than starve it. The instance's peak is then what one process with the whole budget had.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator, Mapping

from ..procs import pid_alive

ENV = "HW5_INSTANCE_DIR"
# prometheus_client's multiprocess mode: set by the gunicorn master before any worker imports the
# library, which reads it once, at import (observability.Metrics sums the workers' files)
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_POLL = 0.005  # seconds between attempts at a busy lock


class Instance:
    def __init__(self, directory: str, workers: int):
        self.directory = directory
        self.workers = max(1, workers)

    @classmethod
    def from_env(cls, workers: int, environ: Mapping[str, str] | None = None) -> Instance | None:
        env = os.environ if environ is None else environ
        directory = env.get(ENV, "").strip()
        return cls(directory, workers) if directory and os.path.isdir(directory) else None

    # ---- readiness ---------------------------------------------------------------------------
    def mark_ready(self, pid: int | None = None) -> None:
        pid = os.getpid() if pid is None else pid
        path = os.path.join(self.directory, f"ready.{pid}")
        with open(path + ".tmp", "w") as handle:
            handle.write(str(pid))
        os.replace(path + ".tmp", path)

    def forget(self, pid: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.directory, f"ready.{pid}"))

    def ready_workers(self) -> int:
        try:
            names = os.listdir(self.directory)
        except OSError:
            return 0
        pids = [name.removeprefix("ready.") for name in names if name.startswith("ready.")]
        return sum(1 for pid in pids if pid.isdigit() and pid_alive(int(pid)))

    def all_ready(self) -> bool:
        return self.ready_workers() >= self.workers

    # ---- decode memory -----------------------------------------------------------------------
    @contextlib.contextmanager
    def decoding(self, alone: bool, deadline: float) -> Iterator[bool]:
        """Hold the instance's decode lock, exclusively when ``alone``; yields False (holding
        nothing) when ``deadline`` (time.monotonic()) passes first."""
        lock = os.open(os.path.join(self.directory, "decode.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        gate = os.open(os.path.join(self.directory, "decode.gate"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if alone:
                got = _lock(gate, fcntl.LOCK_EX, deadline) and _lock(lock, fcntl.LOCK_EX, deadline)
            else:
                got = _lock(gate, fcntl.LOCK_SH, deadline)
                if got:
                    fcntl.flock(gate, fcntl.LOCK_UN)
                    got = _lock(lock, fcntl.LOCK_SH, deadline)
            yield got
        finally:
            os.close(lock)  # closing the descriptors drops their locks
            os.close(gate)


def _lock(fd: int, kind: int, deadline: float) -> bool:
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)
