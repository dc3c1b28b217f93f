"""Every error the serving layer can answer, with its HTTP status and stable code.

Nothing else in the package decides a status code: model, image and fetch code raise these
exceptions, and the Flask error handlers turn them into ``{"error": {"code", "message"}}``.
Anything the caller sent that we cannot use is a 4xx; a 5xx means the service itself is not
able to answer (not ready, overloaded) or a bug.
"""

from __future__ import annotations

from typing import ClassVar


class ServingError(Exception):
    """Base class: an error with an HTTP status, a stable code and a human message."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, details: dict | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code is not None:
            self.code = code  # instance override of the class default

    def headers(self) -> dict[str, str]:
        return {}

    def to_dict(self) -> dict:
        body: dict = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


# ---- 4xx: the request ---------------------------------------------------------------------
class BadRequest(ServingError):
    """Malformed request: bad JSON, missing or ill-typed field, invalid URL."""

    status = 400
    code = "bad_request"


class InvalidJSON(BadRequest):
    code = "invalid_json"


class MissingInput(BadRequest):
    code = "missing_input"


class InvalidField(BadRequest):
    code = "invalid_field"


class InvalidURL(BadRequest):
    code = "invalid_url"


class UnsupportedScheme(BadRequest):
    code = "unsupported_scheme"


class UnknownModelInBody(BadRequest):
    code = "unknown_model"


class BlockedDestination(ServingError):
    """The URL leads to an address this service refuses to contact (SSRF protection)."""

    status = 403
    code = "blocked_destination"


class NotFound(ServingError):
    status = 404
    code = "not_found"


class UnknownModel(NotFound):
    code = "unknown_model"


class MethodNotAllowed(ServingError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(ServingError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(ServingError):
    status = 415
    code = "unsupported_media_type"


class UnprocessableImage(ServingError):
    """The bytes arrived but are not an image we can classify."""

    status = 422
    code = "not_an_image"


class ImageTooLarge(UnprocessableImage):
    code = "image_too_large"


class FetchFailed(ServingError):
    """The URL was acceptable but fetching it did not give us an image."""

    status = 422
    code = "fetch_failed"


class RemoteStatus(FetchFailed):
    code = "remote_status"


class FetchTimeout(FetchFailed):
    code = "fetch_timeout"


class TooManyRedirects(FetchFailed):
    code = "too_many_redirects"


# ---- 5xx: the service -----------------------------------------------------------------------
class RetryableUnavailable(ServingError):
    status = 503
    code = "unavailable"
    retry_after: ClassVar[int] = 1

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NotReady(RetryableUnavailable):
    code = "not_ready"
    retry_after = 2


class Overloaded(RetryableUnavailable):
    code = "overloaded"
    retry_after = 1


class ModelUnavailable(ServingError):
    """A configured model cannot be loaded (weights missing or corrupt): a start-up error."""

    status = 500
    code = "model_unavailable"


# ---- the reference: every code a backend answers, for the docs and the tests ------------------
# (status, when it happens, what the caller can do). Codes set per instance (``code=...``) are
# listed too; tests/serving/hardening checks that every code raised in the package is here.
ERROR_CODES: dict[str, tuple[tuple[int, ...], str]] = {
    "bad_request": (
        (400,),
        "the request is malformed (e.g. both a file and a url); fix the request",
    ),
    "invalid_json": ((400,), "the body is not a JSON object (syntax, encoding, nesting too deep)"),
    "missing_input": ((400,), 'no image: send JSON `{"url"}` or a multipart upload in `file`'),
    "invalid_field": ((400,), "`top_k` is not an integer 1-20, or `model` is not a short string"),
    "invalid_url": ((400,), "`url` is not an absolute http(s) URL without credentials or controls"),
    "unsupported_scheme": ((400,), "`url` is not http or https (file:, ftp:, data:, ...)"),
    "unknown_model": (
        (400, 404),
        "the body names a model this backend does not serve (404 when in the path); "
        "`details.available` lists them",
    ),
    "blocked_destination": (
        (403,),
        "the URL (or a redirect) leads to a loopback, private, link-local (metadata server) "
        "or otherwise non-public address; use a public image URL",
    ),
    "forbidden": ((403,), "refused by the HTTP server before the app"),
    "not_found": ((404,), "no such route"),
    "method_not_allowed": (
        (405,),
        "wrong method for the route; the `Allow` header lists the right ones",
    ),
    "too_large": (
        (413,),
        "the upload, the JSON body or the image at the URL is over its size limit",
    ),
    "uri_too_long": ((414,), "the request line is longer than 8190 bytes"),
    "unsupported_media_type": ((415,), "send `application/json` or `multipart/form-data`"),
    "request_timeout": (
        (408,),
        "the request's headers (10 s) or body (at 32 KiB/s) did not arrive in time; the "
        "connection is closed",
    ),
    "expectation_failed": ((417,), "an `Expect` header the server does not support"),
    "headers_too_large": ((431,), "a header is longer than 8190 bytes, or there are over 100"),
    "not_an_image": (
        (422,),
        "the bytes are not JPEG, PNG, WebP, GIF or BMP (sniffed from the content, not the name)",
    ),
    "corrupt_image": ((422,), "the bytes start like an accepted image but do not decode"),
    "image_too_large": ((422,), "the image has more pixels than `HW5_MAX_PIXELS`"),
    "fetch_failed": ((422,), "the URL did not give an image (e.g. a redirect without Location)"),
    "remote_status": ((422,), "the URL answered an HTTP error; `details.remote_status` has it"),
    "fetch_timeout": ((422,), "the URL was too slow (DNS, connect, read or total time limit)"),
    "too_many_redirects": ((422,), "more than 5 redirects"),
    "bad_redirect": ((422,), "a redirect pointed to a URL that is not fetched (other scheme, ...)"),
    "dns_failure": ((422,), "the URL's host name does not resolve"),
    "connection_failed": (
        (422,),
        "the URL's server refused the connection, cut the download short or sent broken HTTP",
    ),
    "tls_error": ((422,), "the HTTPS certificate is invalid for the host, or the handshake failed"),
    "unsupported_encoding": (
        (422,),
        "the server compressed the body (Content-Encoding); only unencoded images are fetched",
    ),
    "unavailable": ((503,), "the service cannot answer right now; retry after `Retry-After`"),
    "http_error": ((400,), "another HTTP-level error; the message says which"),
    "not_ready": ((503,), "models are still loading; retry after `Retry-After` seconds"),
    "overloaded": (
        (503,),
        "the admission queue is full, or the wait for a prediction slot (or for decode memory) "
        "would pass its 10 s deadline; retry after `Retry-After` seconds",
    ),
    "not_implemented": ((501,), "a transfer coding the HTTP server does not support"),
    "internal": ((500,), "a bug; the log line with the response's request id has the details"),
    "model_unavailable": ((500,), "a configured model cannot be loaded (a start-up error)"),
}
