"""A loopback HTTP server whose routes are Python functions, for fetch and error tests."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator

from hw5kit.photos import server_class
from hw5kit.testkit.hostile import send

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


def redirect(location: str, status: int = 302) -> Handler:
    return lambda h: send(h, status, headers={"Location": location})


def body(data: bytes, content_type: str = "application/octet-stream") -> Handler:
    return lambda h: send(h, 200, data, {"Content-Type": content_type})


@contextlib.contextmanager
def serve(routes: dict[str, Handler], host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``routes`` (path -> handler); unknown paths answer 404. Yields the base URL."""
    seen: list[tuple[str, dict]] = []

    class RequestHandler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            seen.append((self.path, dict(self.headers)))
            handler = routes.get(self.path.split("?", 1)[0])
            if handler is None:
                send(self, 404, b"not found")
            else:
                # the client may give up first, as the timeout tests intend
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    handler(self)

        def log_message(self, format, *args):
            pass

    server = server_class(host)((host, 0), RequestHandler)
    server.daemon_threads = True
    server.seen = seen
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        shown = f"[{host}]" if ":" in host else host
        base = f"http://{shown}:{server.server_address[1]}"
        serve.last_seen = seen
        yield base
    finally:
        server.shutdown()
        server.server_close()
