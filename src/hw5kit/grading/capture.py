"""A running script's output: each pipe read to the end on a thread of its own, its head and
tail kept for the report, its total counted (the sandbox stops a script past its output limit).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable


class Capture:
    """Reads a pipe to the end, keeping its head and tail; reports the total byte count."""

    def __init__(self, stream, keep: int, on_bytes: Callable[[int], None]):
        self.stream = stream
        self.keep = keep
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.on_bytes = on_bytes
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            while True:
                chunk = self.stream.read1(65536) if hasattr(self.stream, "read1") else b""
                if not chunk:
                    break
                self.total += len(chunk)
                room = self.keep - len(self.head)
                if room > 0:
                    self.head += chunk[:room]
                    chunk = chunk[room:]
                if chunk:
                    self.tail = (self.tail + chunk)[-self.keep :]
                self.on_bytes(len(chunk))

    def text(self) -> str:
        out = bytes(self.head)
        if self.tail:
            skipped = self.total - len(self.head) - len(self.tail)
            if skipped > 0:
                out += f"\n[... {skipped} bytes of output left out ...]\n".encode()
            out += bytes(self.tail)
        return out.decode("utf-8", errors="replace")
