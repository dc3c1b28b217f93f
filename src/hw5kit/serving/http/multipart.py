"""A prediction's multipart/form-data body, read where it already lies: in memory.

The buffering front (``worker.py``) hands each request over whole, so the body is one
``bytes``. Werkzeug's form parser walks it in 64 kB pieces with regular expressions and copies
each piece into the part's file: 0.5 ms of CPU for a 60 kB photo, 1.9 ms for a 630 kB PNG, all
with the GIL held, measured here (``tests/serving/test_multipart.py`` prints the figures). Here
the parts are found with ``bytes.find`` over the whole body (tens of microseconds) and sliced
once.

Only the plain form every client sends is read here (browsers, ``requests``, curl, the
frontends): the body opens with the first delimiter, every line ends with CRLF, each part has
a ``Content-Disposition: form-data`` with a name and at most a ``Content-Type`` beside it,
text fields are UTF-8 within Werkzeug's size limit, and there are at most ``MAX_PARTS`` parts.
Anything else raises ``NotSimple`` and the caller gives the body to Werkzeug, so every odd or
hostile body meets the parser, limits and errors it always met (the data is cached, so it is
not read twice). Where both read a body, they give the same fields (tested, including randomly
damaged bodies).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from werkzeug.http import parse_options_header

MAX_PARTS = 16  # a prediction has at most file, url, model, top_k; more goes to Werkzeug
MAX_FIELD_BYTES = 500_000  # Flask's MAX_FORM_MEMORY_SIZE default: a longer text field too
_ALLOWED_HEADERS = frozenset({"content-disposition", "content-type"})


class NotSimple(ValueError):
    """The body is not the plain form this module reads: Werkzeug's parser decides."""


@dataclass
class Form:
    """The first text field and the first file of each name (what ``MultiDict.get`` gives)."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


def _headers(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in raw.split(b"\r\n"):
        if b"\r" in line or b"\n" in line:  # Werkzeug ends a line at a lone CR or LF too
            raise NotSimple("a part header with a lone CR or LF")
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise NotSimple("a part header is not 'Name: value'")
        try:
            key = name.decode("ascii").lower()
            text = value.decode("utf-8").strip(" \t")
        except UnicodeDecodeError:
            raise NotSimple("a part header is not UTF-8") from None
        if key not in _ALLOWED_HEADERS or key in out:
            raise NotSimple(f"part header {key!r}")
        out[key] = text
    return out


def parse(body: bytes, boundary: str) -> Form:
    """The fields and files of ``body``, a multipart/form-data body with ``boundary``."""
    if not boundary or len(boundary) > 200:
        raise NotSimple("no usable boundary")
    try:
        mark = boundary.encode("ascii")
    except UnicodeEncodeError:
        raise NotSimple("a boundary that is not ASCII") from None
    opening = b"--" + mark + b"\r\n"
    if not body.startswith(opening):
        raise NotSimple("the body does not open with the first delimiter")
    dash = b"--" + mark
    delimiter = b"\r\n" + dash
    form = Form()
    pos = len(opening)
    for _ in range(MAX_PARTS):
        head_end = body.find(b"\r\n\r\n", pos)
        if head_end < 0:
            raise NotSimple("a part without the blank line that ends its headers")
        headers = _headers(body[pos:head_end])
        start = head_end + 4
        # the next "--boundary" must be the delimiter, CRLF before it: Werkzeug also takes one
        # after a lone CR or LF, so any other is left to it
        found = body.find(dash, start)
        end = found - 2
        if found < 0 or end < start or body[end:found] != b"\r\n":
            raise NotSimple("a part not ended by CRLF and the delimiter")
        kind, params = parse_options_header(headers.get("content-disposition", ""))
        name = params.get("name")
        if kind != "form-data" or not name:
            raise NotSimple("a part that is not a named form-data field")
        if "filename" in params:
            form.files.setdefault(name, body[start:end])
        else:
            if end - start > MAX_FIELD_BYTES:
                raise NotSimple("a text field over the form memory limit")
            try:
                text = body[start:end].decode("utf-8")
            except UnicodeDecodeError:
                raise NotSimple("a text field that is not UTF-8") from None
            form.fields.setdefault(name, text)
        after = end + len(delimiter)
        tail = body[after : after + 2]
        if tail == b"--":  # the close delimiter; what follows is the epilogue, ignored
            return form
        if tail != b"\r\n":
            raise NotSimple("a delimiter followed by neither CRLF nor '--'")
        pos = after + 2
    raise NotSimple(f"more than {MAX_PARTS} parts")
