"""Reading a prediction request: JSON ``{"url", "model"?, "top_k"?}`` or a multipart upload."""

from __future__ import annotations

import json
from collections.abc import Mapping

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
from . import multipart

JSON_TYPES = ("application/json",)
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
FIELDS = ("url", "model", "top_k")
MAX_JSON_BYTES = 64 * 1024  # {"url": ...} is small; the image itself goes by URL or upload


def _json_body(request: Request) -> object:
    """The JSON body, read at most ``MAX_JSON_BYTES`` (announced or streamed) and parsed with
    every failure (syntax, encoding, nesting too deep) a 4xx."""
    if (request.content_length or 0) > MAX_JSON_BYTES:
        raise PayloadTooLarge(
            f"the JSON body is {request.content_length:,} bytes; the limit is {MAX_JSON_BYTES:,} "
            "(send the image as a multipart upload in 'file', not inside JSON)",
            details={"max_bytes": MAX_JSON_BYTES},
        )
    raw = request.stream.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise PayloadTooLarge(
            f"the JSON body is larger than {MAX_JSON_BYTES:,} bytes",
            details={"max_bytes": MAX_JSON_BYTES},
        )
    if not raw.strip():
        raise MissingInput('the JSON body is empty; send {"url": "https://..."}')
    try:
        return json.loads(raw)
    except RecursionError:
        raise InvalidJSON("the JSON body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidJSON(f"the request body is not valid JSON: {str(exc)[:200]}") from None


MAX_MODEL_NAME = 100


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _top_k(value: object, *, form: bool = False) -> int:
    """JSON: an integer; form fields are text, so there digits are accepted."""
    if value is None or (form and value == ""):
        return DEFAULT_TOP_K
    if isinstance(value, bool):
        raise InvalidField(f"'top_k' must be an integer from 1 to {MAX_TOP_K}, got {_short(value)}")
    if form and isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()):  # '²' and '٣' are digits too
            raise InvalidField(
                f"'top_k' must be an integer from 1 to {MAX_TOP_K}, got {_short(text)}"
            )
        value = int(text)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise InvalidField(f"'top_k' must be an integer from 1 to {MAX_TOP_K}, got {_short(value)}")
    return value


def _model(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidField(f"'model' must be a string, got {type(value).__name__}")
    if len(value) > MAX_MODEL_NAME:
        raise InvalidField(f"'model' is longer than {MAX_MODEL_NAME} characters: {_short(value)}")
    return value.strip()


def _form(request: Request, mimetype: str) -> tuple[Mapping[str, str], bytes | None]:
    """(text fields, the bytes of the file 'file' or None) of a form request: a plain
    multipart body read in memory (``multipart``), anything else by Werkzeug's parser, with its
    limits and errors (it reads the cached body: nothing is read twice)."""
    boundary = request.mimetype_params.get("boundary", "")
    if mimetype == "multipart/form-data" and boundary:
        try:
            form = multipart.parse(request.get_data(cache=True), boundary)
        except multipart.NotSimple:
            pass
        else:
            return form.fields, form.files.get("file")
    upload = request.files.get("file")
    return request.form, (None if upload is None else upload.read())


def parse_predict(
    request: Request, max_upload_bytes: int
) -> tuple[str | None, bytes | None, str | None, int]:
    """(url, uploaded bytes, model, top_k) from the request, or a 4xx ``ServingError``."""
    mimetype = (request.mimetype or "").lower()
    if mimetype in JSON_TYPES or mimetype.endswith("+json"):
        body = _json_body(request)
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
        fields, upload = _form(request, mimetype)
        url = fields.get("url")
        if upload is not None and url:
            raise BadRequest("send either an image file or a 'url', not both")
        data = None
        if upload is not None:
            data = upload[: max_upload_bytes + 1]
            if len(data) > max_upload_bytes:
                raise PayloadTooLarge(f"the upload is larger than {max_upload_bytes:,} bytes")
            if not data:
                raise MissingInput("the uploaded file 'file' is empty")
        elif not url:
            raise MissingInput("no image: put the file in the form field 'file' or send a 'url'")
        return (
            url or None,
            data,
            _model(fields.get("model")),
            _top_k(fields.get("top_k"), form=True),
        )
    if not mimetype and not request.get_data(cache=True):
        raise MissingInput(
            "empty request: send JSON {\"url\": ...} or a multipart upload with the image in 'file'"
        )
    raise UnsupportedMediaType(
        f"Content-Type {mimetype or '(none)'} is not accepted; use application/json or "
        "multipart/form-data"
    )
