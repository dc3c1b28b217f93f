"""Framing an HTTP/1.x request from the bytes received so far: is it all here yet?

The buffering worker (``worker.BufferingThreadWorker``) reads every request in its event loop,
without a thread, and hands it to a thread only once ``RequestFrame`` says it is complete (or
malformed, or too large to buffer: gunicorn's own parser then answers the error). This module
knows nothing of sockets; it only reads bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

NEED_MORE, COMPLETE, HAND_OVER = "need_more", "complete", "hand_over"


@dataclass
class RequestFrame:
    """Incremental framing of one request: ``feed`` the bytes as they arrive."""

    max_head: int  # bytes of request line + headers; past it, hand over (431/414/400)
    max_body: int  # bytes of body buffered; past it, hand over (the app answers 413)
    buf: bytearray = None  # type: ignore[assignment]
    head_end: int = -1  # offset of the body, once the headers are complete
    length: int | None = None  # Content-Length
    chunked: bool = False
    expects_continue: bool = False
    http11: bool = True
    _scan: int = 0  # chunked: where the next chunk-size line starts
    _done: int = -1  # end of the request, once complete

    def __post_init__(self) -> None:
        if self.buf is None:
            self.buf = bytearray()

    @property
    def body_expected(self) -> int:
        """Body bytes announced (Content-Length) or received so far (chunked)."""
        if self.head_end < 0:
            return 0
        if self.length is not None:
            return self.length
        return len(self.buf) - self.head_end

    @property
    def head_complete(self) -> bool:
        return self.head_end >= 0

    def feed(self, data: bytes = b"") -> str:
        self.buf += data
        if self.head_end < 0:
            state = self._head()
            if state != COMPLETE:
                return state
        if self.chunked:
            return self._chunks()
        if (self.length or 0) > self.max_body:
            return HAND_OVER
        return COMPLETE if len(self.buf) - self.head_end >= (self.length or 0) else NEED_MORE

    def _head(self) -> str:
        # a request may be preceded by empty lines (RFC 9112 section 2.2)
        start = 0
        while self.buf.startswith(b"\r\n", start) or self.buf.startswith(b"\n", start):
            start += 2 if self.buf.startswith(b"\r\n", start) else 1
        ends = [
            i for i in (self.buf.find(b"\r\n\r\n", start), self.buf.find(b"\n\n", start)) if i >= 0
        ]
        if not ends:
            return HAND_OVER if len(self.buf) > self.max_head else NEED_MORE
        end = min(ends)
        self.head_end = end + (4 if self.buf.startswith(b"\r\n\r\n", end) else 2)
        if self.head_end > self.max_head:
            return HAND_OVER
        lines = bytes(self.buf[start:end]).replace(b"\r\n", b"\n").split(b"\n")
        self.http11 = lines[0].rstrip().endswith(b"HTTP/1.1")
        lengths = set()
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                return HAND_OVER  # malformed: the parser says so
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                lengths.add(value)
            elif name == b"transfer-encoding":
                self.chunked = self.chunked or b"chunked" in value
            elif name == b"expect" and value == b"100-continue":
                self.expects_continue = self.http11
        if self.chunked and lengths:
            return HAND_OVER  # both: the parser refuses the request (smuggling)
        if len(lengths) > 1:
            return HAND_OVER
        if lengths:
            raw = lengths.pop()
            if not raw.isdigit():
                return HAND_OVER
            self.length = int(raw)
        self._scan = self.head_end
        return COMPLETE

    def _chunks(self) -> str:
        buf = self.buf
        while True:
            if self._scan - self.head_end > self.max_body:
                return HAND_OVER
            eol = buf.find(b"\r\n", self._scan)
            if eol < 0:
                return HAND_OVER if len(buf) - self._scan > 1024 else NEED_MORE
            size_text = bytes(buf[self._scan : eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                return HAND_OVER
            if size < 0:
                return HAND_OVER
            if size == 0:
                # trailers, then an empty line
                pos = eol + 2
                while True:
                    nxt = buf.find(b"\r\n", pos)
                    if nxt < 0:
                        return HAND_OVER if len(buf) - pos > self.max_head else NEED_MORE
                    if nxt == pos:
                        self._done = nxt + 2
                        return COMPLETE
                    pos = nxt + 2
            if len(buf) < eol + 2 + size + 2:
                if eol + 2 + size - self.head_end > self.max_body:
                    return HAND_OVER
                return NEED_MORE
            self._scan = eol + 2 + size + 2
