"""Every error leaves as ``{"error": {"code", "message"}}`` with the status ``errors.py`` gives."""

from __future__ import annotations

import logging

from flask import Flask, g, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException

from ..errors import ServingError

log = logging.getLogger("hw5kit.serving")

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    431: "headers_too_large",
}


def error_response(status: int, code: str, message: str, *, details=None, headers=None):
    body: dict = {"code": code, "message": message}
    if details:
        body["details"] = details
    if has_request_context():
        g.error_code = code  # for the request log and the error metrics
        if g.get("request_id"):
            body["request_id"] = g.request_id
    response = jsonify({"error": body})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


# An error answered before the body was read leaves the body on the socket. gunicorn drains at
# most 64 KiB of it to keep the connection; past that it closes the connection after the answer,
# and a client that reuses it for its next request sees "connection closed without response".
# Bodies up to this size are therefore read and dropped here, so the connection stays usable.
DRAIN_LIMIT = 4 * 1024 * 1024


def drain_unread_body() -> None:
    """Read what is left of a refused body (up to DRAIN_LIMIT) so keep-alive survives.

    ``request.stream`` is bounded by Content-Length and knows what was already consumed, so
    this never waits for bytes that will not come, whatever the WSGI server (reading the raw
    ``wsgi.input`` would block under servers that do not cut it at the body's end).
    """
    length = request.content_length or 0
    if not 0 < length <= DRAIN_LIMIT:
        return
    try:
        stream = request.stream
        while stream.read(64 * 1024):
            pass
    except (OSError, ValueError, HTTPException):  # the client went away: nothing to keep
        pass


def register(app: Flask) -> None:
    @app.after_request
    def _drain(response):
        if response.status_code >= 400:
            drain_unread_body()
        return response

    @app.errorhandler(ServingError)
    def serving_error(exc: ServingError):
        if exc.status >= 500:
            log.error("%s: %s", exc.code, exc.message)
        return error_response(
            exc.status, exc.code, exc.message, details=exc.details, headers=exc.headers()
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"the request body is larger than the limit of {limit:,} bytes"
        headers = {}
        if status == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return error_response(status, code, message, headers=headers)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal", "internal error; the server log has the details")
