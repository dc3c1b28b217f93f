"""CPU time and resident memory of a process tree, read from /proc (Linux)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    return text.rsplit(")", 1)[1].split()


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from every thread's ``children`` list."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue
        found.extend(int(p) for p in text.split())
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and all of its descendants that are still alive."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        if _stat_fields(current) is None:
            continue
        pids.append(current)
        todo.extend(children(current))
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads), 0 if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[21]) * PAGE if fields else 0


@dataclass(frozen=True)
class TreeSample:
    cpu: dict[int, float]
    rss: int
    processes: int

    def cpu_since(self, earlier: TreeSample) -> float:
        """CPU seconds spent between two samples by the processes alive at either."""
        return sum(
            self.cpu.get(pid, earlier.cpu.get(pid, 0.0)) - earlier.cpu.get(pid, 0.0)
            for pid in set(self.cpu) | set(earlier.cpu)
        )


def sample(pid: int) -> TreeSample:
    pids = tree(pid)
    return TreeSample(
        cpu={p: cpu_seconds(p) for p in pids},
        rss=sum(rss_bytes(p) for p in pids),
        processes=len(pids),
    )


def pause(pid: int) -> list[int]:
    """Stop (SIGSTOP) ``pid`` and every process under it; the pids stopped, for ``resume``.

    The bench pauses the subjects whose turn it is not: one that spends CPU while idle (LitServe's
    inference workers poll their queues: about a quarter of a core, measured) would otherwise
    take it from the subject being measured. Each subject is then measured as if it ran alone.
    """
    stopped = []
    for p in reversed(tree(pid)):  # descendants first, the root (a supervisor) last
        try:
            os.kill(p, signal.SIGSTOP)
            stopped.append(p)
        except OSError:
            pass
    return stopped


def resume(pids: list[int], root: int, settle: float = 0.05) -> None:
    """Continue what ``pause`` stopped: the children, then (after ``settle`` s, in which a
    gunicorn worker writes its heartbeat) ``root``, so that a supervisor that resumes never
    finds its workers' heartbeats from before the pause and kills them."""
    for p in pids:
        if p != root:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGCONT)
    time.sleep(settle)
    with contextlib.suppress(OSError):
        os.kill(root, signal.SIGCONT)


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def load_samples(meta: dict) -> list[float]:
    """The 1-minute load averages a run recorded: before, during (when sampled) and after."""
    values = [meta["load_average_before"], *meta.get("load_averages_during", [])]
    if "load_average_after" in meta:
        values.append(meta["load_average_after"])
    return [v if isinstance(v, int | float) else v[0] for v in values]


def peak_load(meta: dict) -> float:
    return max(load_samples(meta))
