"""A WSGI app with no model, for tests of the gunicorn front (``BufferingThreadWorker``): it
answers at once with what it received, and when the request had fully arrived."""

import json
import time


def app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    started = time.monotonic()
    body = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read()
    read_seconds = time.monotonic() - started
    out = json.dumps(
        {
            "path": environ.get("PATH_INFO"),
            "bytes": len(body),
            "read_seconds": read_seconds,
            "arrived": environ.get("hw5.arrived") is not None,
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))]
    )
    return [out]
