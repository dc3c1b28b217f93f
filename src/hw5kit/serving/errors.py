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
