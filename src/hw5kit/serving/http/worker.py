"""A gunicorn thread worker whose own error answers are JSON like the app's.

gunicorn answers some requests before the app sees them: a malformed request line (400), a
request line or headers over the limits (414, 431), an unsupported transfer coding (501). It
writes those as a small HTML page through ``gunicorn.util.write_error``; this worker replaces
that one function, in the worker process only, with one that writes the backend's JSON error
shape, ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import json

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

_CODES = {
    400: "bad_request",
    403: "forbidden",
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
