"""A hostile loopback HTTP server: the remote end of the bad-input catalog's URL cases.

``HostileServer`` listens on 127.0.0.1 and answers ``HOSTILE_ROUTES``, each misbehaving on
purpose (404 and 500, HTML sent as an image, redirect loops and redirects to the metadata server
or a file, an answer slower than the catalog backend's fetch deadline, a size it never sends, a
gzip bomb, a truncated body, a non-HTTP banner), plus ``/photos/<name>`` (the labelled photos of
``hw5kit.photos``) for the good requests of the load session. ``closed_port`` is a port nothing
listens on.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import threading
from collections.abc import Callable

from .badinputs import HTML, SLOW_SECONDS, small_png


def send(h, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
    """Answer ``h`` with ``status``, ``body`` and ``headers`` (Content-Length added)."""
    h.send_response(status)
    headers = dict(headers or {})
    headers.setdefault("Content-Length", str(len(body)))
    for key, value in headers.items():
        h.send_header(key, value)
    h.end_headers()
    if body:
        h.wfile.write(body)


def _truncated(h) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "100000")
    h.send_header("Connection", "close")
    h.end_headers()
    h.wfile.write(small_png()[:50])
    h.close_connection = True


def _huge(h) -> None:  # announces 3 MiB (over BACKEND_ENV's 2 MB) and sends none of it
    h.send_response(200)
    h.send_header("Content-Length", str(3 * 1024 * 1024))
    h.send_header("Connection", "close")
    h.end_headers()
    h.close_connection = True


def _slow(h) -> None:
    h.server.stopping.wait(SLOW_SECONDS)
    send(h, 200, small_png(), {"Content-Type": "image/png"})


def _garbage(h) -> None:
    h.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    h.close_connection = True


def _photo(h) -> None:
    from hw5kit.photos import photo

    name = h.path.split("?", 1)[0].rsplit("/", 1)[-1]
    try:
        data = photo(name).path.read_bytes()
    except (KeyError, FileNotFoundError, ValueError):
        send(h, 404, b"no such photo")
        return
    send(h, 200, data, {"Content-Type": "application/octet-stream"})


HOSTILE_ROUTES: dict[str, Callable] = {
    "/status/404": lambda h: send(h, 404, b"not found"),
    "/status/500": lambda h: send(h, 500, b"oops"),
    "/page.html": lambda h: send(h, 200, HTML, {"Content-Type": "image/jpeg"}),
    "/loop": lambda h: send(h, 302, headers={"Location": "/loop"}),
    "/to-metadata": lambda h: send(
        h, 302, headers={"Location": "http://169.254.169.254/computeMetadata/v1/"}
    ),
    "/to-file": lambda h: send(h, 302, headers={"Location": "file:///etc/passwd"}),
    "/slow": _slow,
    "/huge": _huge,
    "/gzip": lambda h: send(h, 200, gzip.compress(b"\0" * 2_000_000), {"Content-Encoding": "gzip"}),
    "/truncated": _truncated,
    "/garbage": _garbage,
}


class HostileServer:
    """A loopback HTTP server: ``HOSTILE_ROUTES`` plus ``/photos/<name>`` (the labelled photos
    of ``hw5kit.photos``, for good requests). ``closed_port`` is a port nothing listens on."""

    def __init__(self) -> None:
        from hw5kit.photos import server_class
        from hw5kit.procs import free_port

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.server.requests += 1
                path = self.path.split("?", 1)[0]
                handler = _photo if path.startswith("/photos/") else HOSTILE_ROUTES.get(path)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    if handler is None:
                        send(self, 404, b"not found")
                    else:
                        handler(self)

            def log_message(self, format, *args):
                pass

        self.server = server_class("127.0.0.1")(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.stopping = threading.Event()
        self.server.requests = 0
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.closed_port = free_port()
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests(self) -> int:
        return self.server.requests

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()
