"""What a script run in the sandbox is bounded by (``Limits``), what it gives back
(``RunResult``), and the error when no sandbox can run it (``SandboxUnavailable``): the types the
sandbox, its gcloud relay, the runner and the command line share."""

from __future__ import annotations

import signal
from dataclasses import dataclass


class SandboxUnavailable(RuntimeError):
    """No way to run untrusted scripts safely here; the message says what to install."""


@dataclass(frozen=True)
class Limits:
    timeout: float = 30.0  # wall-clock seconds per script
    cpu_seconds: int = 30  # per process
    processes: int = 64  # at once, for the sandbox's user (in addition to what it runs now)
    file_size: int = 32 * 2**20  # largest file a script may write
    address_space: int = 2 * 2**30  # per process
    open_files: int = 256
    output: int = 2 * 2**20  # stdout + stderr; past it the script is killed
    output_kept: int = 32 * 2**10  # head and tail kept for the report
    workspace: int = 128 * 2**20  # bytes written into the workspace
    workspace_files: int = 20000
    tmpfs: int = 64 * 2**20  # the private /tmp and /dev/shm (bwrap)
    gcloud_calls: int = 60  # per script
    gcloud_timeout: float = 20.0  # wall-clock seconds per gcloud call (in the grader)
    gcloud_memory: int = 512 * 2**20  # address space a gcloud call may use (in the grader)


@dataclass
class RunResult:
    command: list[str]
    exit_code: int | None
    stdout: str
    stderr: str
    duration: float
    killed: str = ""  # why the grader stopped it ("" when it ended by itself)
    output_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.killed

    def describe(self) -> str:
        if self.killed:
            return f"stopped by the grader: {self.killed}"
        if self.exit_code is None:
            return "did not run"
        if self.exit_code < 0:
            return f"killed by signal {signal.Signals(-self.exit_code).name}"
        if self.exit_code > 128 and self.exit_code - 128 in _SIGNALS:
            return f"exit status {self.exit_code} ({_SIGNALS[self.exit_code - 128]})"
        return f"exit status {self.exit_code}"

    def tail(self, lines: int = 12) -> str:
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return "\n".join(text[-lines:])


_SIGNALS = {s.value: s.name for s in signal.Signals}
