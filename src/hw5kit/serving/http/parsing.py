"""Reading a prediction request: JSON ``{"url", "model"?, "top_k"?}`` or a multipart upload."""

from __future__ import annotations

from flask import Request

from ..errors import (
    BadRequest,
    InvalidField,
    InvalidJSON,
    MissingInput,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from ..service import DEFAULT_TOP_K, MAX_TOP_K

JSON_TYPES = ("application/json",)
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
FIELDS = ("url", "model", "top_k")


def _top_k(value: object, *, form: bool = False) -> int:
    """JSON: an integer; form fields are text, so there digits are accepted."""
    if value is None or (form and value == ""):
        return DEFAULT_TOP_K
    if isinstance(value, bool):
        raise InvalidField(f"'top_k' must be an integer from 1 to {MAX_TOP_K}, got {value!r}")
    if form and isinstance(value, str):
        text = value.strip()
        if not text.isdigit():
            raise InvalidField(f"'top_k' must be an integer from 1 to {MAX_TOP_K}, got {text!r}")
        value = int(text)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise InvalidField(f"'top_k' must be an integer from 1 to {MAX_TOP_K}, got {value!r}")
    return value


def _model(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidField(f"'model' must be a string, got {type(value).__name__}")
    return value.strip()


def parse_predict(
    request: Request, max_upload_bytes: int
) -> tuple[str | None, bytes | None, str | None, int]:
    """(url, uploaded bytes, model, top_k) from the request, or a 4xx ``ServingError``."""
    mimetype = (request.mimetype or "").lower()
    if mimetype in JSON_TYPES or mimetype.endswith("+json"):
        raw = request.get_data(cache=True)
        if not raw.strip():
            raise MissingInput('the JSON body is empty; send {"url": "https://..."}')
        body = request.get_json(silent=True)
        if body is None:
            raise InvalidJSON("the request body is not valid JSON")
        if not isinstance(body, dict):
            raise InvalidJSON(f"the JSON body must be an object, got {type(body).__name__}")
        url = body.get("url")
        if url is None:
            raise MissingInput(
                '\'url\' is missing: send {"url": "https://..."} or upload the image as '
                "multipart form data in the field 'file'",
                details={"accepted_fields": list(FIELDS)},
            )
        return url, None, _model(body.get("model")), _top_k(body.get("top_k"))
    if mimetype in FORM_TYPES:
        upload = request.files.get("file")
        url = request.form.get("url")
        if upload is not None and url:
            raise BadRequest("send either an image file or a 'url', not both")
        data = None
        if upload is not None:
            data = upload.read(max_upload_bytes + 1)
            if len(data) > max_upload_bytes:
                raise PayloadTooLarge(f"the upload is larger than {max_upload_bytes:,} bytes")
            if not data:
                raise MissingInput("the uploaded file 'file' is empty")
        elif not url:
            raise MissingInput("no image: put the file in the form field 'file' or send a 'url'")
        return (
            url or None,
            data,
            _model(request.form.get("model")),
            _top_k(request.form.get("top_k"), form=True),
        )
    if not mimetype and not request.get_data(cache=True):
        raise MissingInput(
            "empty request: send JSON {\"url\": ...} or a multipart upload with the image in 'file'"
        )
    raise UnsupportedMediaType(
        f"Content-Type {mimetype or '(none)'} is not accepted; use application/json or "
        "multipart/form-data"
    )
