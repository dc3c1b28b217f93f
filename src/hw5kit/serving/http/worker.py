"""gunicorn thread workers: JSON error answers, and a front that buffers whole requests.

``JSONErrorThreadWorker``: gunicorn answers some requests before the app sees them (a malformed
request line 400, a request line or headers over the limits 414/431, an unsupported transfer
coding 501) as a small HTML page through ``gunicorn.util.write_error``; this worker replaces that
one function, in the worker process only, with one that writes the backend's JSON error shape,
``{"error": {"code", "message"}}``.

``BufferingThreadWorker`` (the backends' and the gateway's worker class) also keeps slow
clients away from the threads. gunicorn's ``gthread`` hands a connection to a thread as soon as
its first byte arrives, and the thread then blocks until the whole request is read: a client
that sends a byte a second holds a thread for as long as it likes, and a few dozen of them hold
every thread (the issue measured ``/hello`` unanswered behind 32 of them). Here the worker's
event loop reads each request itself, without blocking, into a buffer; a thread gets it only
once it is complete (``front.RequestFrame``), with the time it arrived in the environ
(``hw5.arrived``, which the admission queue counts its deadline from). Deadlines, from the
connection's first wait for a request: the headers within ``HW5_READ_TIMEOUT`` seconds (10),
the body within that plus its length at ``HW5_MIN_UPLOAD_KBPS`` (32 KiB/s); past them the client
gets 408 and the connection is closed. The request bytes of all connections together, from the
first byte until the request is answered (a request waiting in the admission queue holds its
body), are bounded (``HW5_FRONT_BUFFER_MB``, 128): past it, reading pauses until requests are
answered.
Bodies larger than ``HW5_FRONT_MAX_BODY_MB`` (the upload limit plus 1 MiB) are handed over at
once, for the app to refuse without reading them.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import selectors
import threading
import time
from collections import deque
from functools import partial

from gunicorn import util
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import ThreadWorker

from ..capacity import share
from .front import COMPLETE, HAND_OVER, RequestFrame
from .observability import ARRIVED_KEY

_CODES = {
    400: "bad_request",
    403: "forbidden",
    408: "request_timeout",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "headers_too_large",
    500: "internal",
    501: "not_implemented",
}


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    code = _CODES.get(status_int, "http_error")
    message = mesg or reason
    if status_int >= 500 and status_int != 501:
        message = "internal error; the server log has the details"
    body = json.dumps({"error": {"code": code, "message": f"{reason}: {message}"[:500]}})
    data = body.encode("utf-8")
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + data)


class JSONErrorThreadWorker(ThreadWorker):
    def init_process(self) -> None:
        util.write_error = write_json_error
        super().init_process()


def give_back_large_blocks(threshold: int = 1 << 20) -> bool:
    """glibc: serve allocations from ``threshold`` bytes up with their own mappings, returned
    to the system when freed. By default glibc raises that threshold (up to 32 MiB) after a
    large block is freed, after which image-sized buffers come from the heap, which does not
    shrink: the resident memory of a server that once decoded a large image would stay at that
    peak. Returns False where there is no glibc (nothing changes)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, threshold))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


class HeldUnreader(SocketUnreader):
    """gunicorn's socket reader, reading the request the front hands over without recopying it.

    gunicorn's ``Unreader`` keeps what it holds in one ``BytesIO`` and, on every ``read(size)``,
    copies everything it still holds into a new one. Given a whole 300 kB upload at once and
    read 64 kB at a time (as Werkzeug reads a form), it copies the rest again on each read,
    and its header parser copies whatever one ``read()`` returned several times: 0.6 ms of CPU
    per 300 kB upload, with the GIL held, measured here. This one holds a queue of pieces: a
    read copies what it returns, never what is left, and a ``read()`` without a size returns
    at most a socket read's worth. Same bytes in the same order.
    """

    def __init__(self, sock, max_chunk: int = 8192):
        self._parts: deque[memoryview] = deque()
        super().__init__(sock, max_chunk)

    @classmethod
    def install(cls, parser) -> SocketUnreader:
        """The parser's unreader, replaced by one of these if it is gunicorn's socket one."""
        current = parser.unreader
        if type(current) is SocketUnreader:
            held = cls(current.sock, current.mxchunk)
            held.unread(current.take_buffered())
            parser.unreader = current = held
        return current

    # gunicorn's worker asks ``unreader.buf.getvalue()`` whether bytes of a next request are
    # held; the base class's constructor assigns ``buf``
    @property
    def buf(self) -> io.BytesIO:
        return io.BytesIO(b"".join(self._parts))

    @buf.setter
    def buf(self, value: io.BytesIO) -> None:
        data = value.getvalue()
        self._parts = deque([memoryview(data)] if data else [])

    def unread(self, data) -> None:
        if data:
            self._parts.appendleft(memoryview(bytes(data)))

    def take_buffered(self) -> bytes:
        if len(self._parts) == 1:
            return self._pop(len(self._parts[0]))
        data = b"".join(self._parts)
        self._parts.clear()
        return data

    def _pop(self, size: int) -> bytes:
        """At most ``size`` bytes from the first piece."""
        part = self._parts[0]
        if len(part) > size:
            self._parts[0] = part[size:]
            return part[:size].tobytes()
        self._parts.popleft()
        whole = part.obj
        return whole if isinstance(whole, bytes) and len(whole) == len(part) else part.tobytes()

    def read(self, size=None, read_ahead=None):
        if size is not None and not isinstance(size, int):
            raise TypeError("size parameter must be an int or long.")
        if size is None or size < 0:  # the next piece: at most a socket read's worth, so that
            # the parser looking for the end of the headers never copies a whole upload around
            return (
                self._pop(max(self.mxchunk, read_ahead or 0))
                if self._parts
                else self.chunk(read_ahead)
            )
        pieces: list[bytes] = []
        got = 0
        while got < size and self._parts:
            pieces.append(self._pop(size - got))
            got += len(pieces[-1])
        while got < size:
            piece = self.chunk(max(size, read_ahead or 0) - got)
            if not piece:
                break
            if got + len(piece) > size:  # keep the surplus for the next read
                self._parts.append(memoryview(piece)[size - got :])
                piece = piece[: size - got]
            pieces.append(piece)
            got += len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)  # b"" when size is 0


class _Reading:
    """A connection whose next request is being buffered. ``counted``: the bytes this request
    counts against the front's limit (those received, or its whole announced length once it is
    reserved); ``reserved``: its body may be read whatever the others hold."""

    __slots__ = ("continued", "counted", "deadline", "frame", "paused", "reserved", "started")

    def __init__(self, frame: RequestFrame, started: float, deadline: float):
        self.frame = frame
        self.started = started
        self.deadline = deadline
        self.continued = False
        self.paused = False
        self.counted = 0
        self.reserved = False


class BufferingThreadWorker(JSONErrorThreadWorker):
    """A thread gets a request only once all of it has arrived (see the module docstring).

    Memory: a request's bytes count from arrival until its answer. Headers are read while the
    total is under the limit; a body of known length is read only once its whole length is
    reserved (so a request that started its body can always finish it: the ones waiting for
    room cannot block each other), or alone when it is larger than the limit.
    """

    RECV = 256 * 1024  # at most this much per readable event, so one client cannot hog the loop

    def init_process(self) -> None:
        self.read_timeout = _env_number("HW5_READ_TIMEOUT", 10.0)
        self.min_rate = _env_number("HW5_MIN_UPLOAD_KBPS", 32.0) * 1024
        # the instance's front buffer, split between its workers (``capacity.share``)
        workers = max(1, int(_env_number("HW5_WORKERS", 1.0)))
        self.buffer_limit = share(
            int(_env_number("HW5_FRONT_BUFFER_MB", 128.0) * 1024 * 1024), workers
        )
        upload = _env_number("HW5_MAX_UPLOAD_MB", 20.0)
        self.max_body = int(_env_number("HW5_FRONT_MAX_BODY_MB", upload + 1) * 1024 * 1024)
        self.max_head = (
            self.cfg.limit_request_line
            + self.cfg.limit_request_fields * (self.cfg.limit_request_field_size + 2)
            + 4
        )
        self.reading: dict = {}  # conn -> _Reading
        self.buffered = 0  # bytes counted by every request from arrival to answer
        self.holding = 0  # requests whose body is reserved, or handed on and not yet answered
        self.paused: deque = deque()
        self._local = threading.local()
        give_back_large_blocks()
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app, local = self.wsgi, self._local

        def stamped(environ, start_response):
            arrived = getattr(local, "arrived", None)
            if arrived is not None:
                environ[ARRIVED_KEY] = arrived
            return app(environ, start_response)

        self.wsgi = stamped

    # ---- the event loop: buffering -----------------------------------------------------------
    def enqueue_req(self, conn) -> None:
        if getattr(conn, "hw5_ready", False):
            conn.hw5_ready = False
            super().enqueue_req(conn)
        else:
            self._start_reading(conn)

    def _start_reading(self, conn) -> None:
        leftover = b""
        if conn.parser is not None:  # bytes of a pipelined request already read
            leftover = conn.parser.unreader.take_buffered()
        now = time.monotonic()
        state = _Reading(RequestFrame(self.max_head, self.max_body), now, now + self.read_timeout)
        self.reading[conn] = state
        conn.sock.setblocking(False)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
        if leftover:
            self._received(conn, state, leftover)

    def _may_read(self, state: _Reading) -> bool:
        return state.reserved or self.buffered < self.buffer_limit

    def _on_readable(self, conn, _sock) -> None:
        state = self.reading.get(conn)
        if state is None:
            return
        if not self._may_read(state):
            self._pause(conn, state)
            return
        try:
            data = conn.sock.recv(self.RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away (or closed its side) before a whole request
            self._drop(conn)
            return
        self._received(conn, state, data)

    def _count(self, state: _Reading) -> None:
        """Count what ``state`` holds beyond what it counted already."""
        held = max(len(state.frame.buf), state.counted)
        self.buffered += held - state.counted
        state.counted = held

    def _reserve(self, state: _Reading) -> bool:
        """Reserve the whole request (its announced length) if it fits, or if no other request
        holds a body (a request larger than the limit goes alone; headers still arriving never
        stop it, or a large upload could wait on them while they wait on it)."""
        frame = state.frame
        if frame.length is None:  # chunked: counted as it comes
            return False
        whole = frame.head_end + frame.length
        extra = max(0, whole - state.counted)
        if self.buffered + extra <= self.buffer_limit or self.holding == 0:
            self.buffered += extra
            state.counted += extra
            state.reserved = True
            self.holding += 1
        return state.reserved

    def _received(self, conn, state: _Reading, data: bytes) -> None:
        frame = state.frame
        had_head = frame.head_complete
        outcome = frame.feed(data)
        self._count(state)
        if outcome in (COMPLETE, HAND_OVER):
            self._hand_over(conn, state)
            return
        if frame.head_complete and not had_head:
            # the body gets its own time, from its announced length
            state.deadline = (
                time.monotonic() + self.read_timeout + frame.body_expected / self.min_rate
            )
            if not self._reserve(state) and frame.length is not None:
                self._pause(conn, state)  # no room for its body yet: read it later
                return
            self._continue(conn, state)
        elif frame.chunked and frame.head_complete:
            state.deadline = max(
                state.deadline,
                state.started + self.read_timeout + frame.body_expected / self.min_rate,
            )

    def _continue(self, conn, state: _Reading) -> None:
        """Ask for the body now, when the client waits for "100 Continue" before sending it."""
        if state.frame.expects_continue and not state.continued:
            state.continued = True
            with contextlib.suppress(OSError):
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _unregister(self, conn) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def _forget(self, conn, *, keep_bytes: bool = False) -> _Reading | None:
        """Stop reading ``conn``; its bytes stay counted when ``keep_bytes`` (handed on: they
        are released when its request has been answered, ``finish_request``)."""
        state = self.reading.pop(conn, None)
        if state is not None:
            if not keep_bytes:
                self.buffered -= state.counted
                self.holding -= 1 if state.reserved else 0
            if state.paused:
                state.paused = False
                with contextlib.suppress(ValueError):
                    self.paused.remove(conn)
            else:
                self._unregister(conn)
            self._resume()
        return state

    def _hand_over(self, conn, state: _Reading) -> None:
        self._forget(conn, keep_bytes=True)
        if not state.reserved:
            self.holding += 1  # it holds its bytes until answered, like a reserved one
        conn.hw5_held = state.counted
        conn.hw5_prebuffer = bytes(state.frame.buf)
        conn.hw5_arrived = time.monotonic()
        conn.hw5_continued = state.continued
        conn.hw5_ready = True
        self.enqueue_req(conn)

    def _drop(self, conn, answer: bytes | None = None) -> None:
        self._forget(conn)
        if answer:
            with contextlib.suppress(OSError):
                conn.sock.send(answer)
        self.nr_conns -= 1
        conn.close()

    def _pause(self, conn, state: _Reading) -> None:
        if state.paused:
            return
        self._unregister(conn)
        state.paused = True
        self.paused.append(conn)

    def _resume(self) -> None:
        """Read again, first come first served, what now fits."""
        while self.paused:
            conn = self.paused[0]
            state = self.reading.get(conn)
            if state is None:
                self.paused.popleft()
                continue
            waiting_body = state.frame.head_complete and state.frame.length is not None
            if waiting_body and not state.reserved and not self._reserve(state):
                return
            if not waiting_body and not self._may_read(state):
                return
            self.paused.popleft()
            state.paused = False
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
            if waiting_body:
                self._continue(conn, state)

    def finish_request(self, conn, fs) -> None:
        """The request was answered (main thread): its bytes no longer count."""
        if getattr(conn, "hw5_held", None) is not None:
            self.buffered -= conn.hw5_held
            self.holding -= 1
            conn.hw5_held = None
        super().finish_request(conn, fs)
        self._resume()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for conn, state in list(self.reading.items()):
            if now >= state.deadline:
                self._drop(conn, _timeout_answer(state))
            elif not self.alive and not state.frame.buf:
                self._drop(conn)  # stopping: a connection that sent nothing yet is closed

    # ---- in the thread -----------------------------------------------------------------------
    def handle(self, conn):
        data = getattr(conn, "hw5_prebuffer", None)
        conn.hw5_prebuffer = None
        conn.data_ready = True  # never wait for data in a thread: it is all here
        self._local.arrived = getattr(conn, "hw5_arrived", None)
        if data is not None:
            try:
                conn.sock.setblocking(True)
                conn.init()
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF):
                    self.log.exception("Socket error preparing a buffered request.")
                return False
            HeldUnreader.install(conn.parser).unread(data)
        try:
            return super().handle(conn)
        finally:
            self._local.arrived = None

    def handle_request(self, req, conn):
        if getattr(conn, "hw5_continued", False):
            req._expected_100_continue = False  # the front already sent "100 Continue"
            conn.hw5_continued = False
        return super().handle_request(req, conn)


def _timeout_answer(state: _Reading) -> bytes:
    if not state.frame.buf.strip():
        return b""  # nothing sent: just close, as an idle keep-alive connection is closed
    if state.frame.head_complete:
        what = "the request body did not arrive in time"
    else:
        what = "the request headers did not arrive in time"
    body = json.dumps({"error": {"code": "request_timeout", "message": f"Request Timeout: {what}"}})
    data = body.encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode("latin-1") + data


__all__ = ["BufferingThreadWorker", "JSONErrorThreadWorker"]
