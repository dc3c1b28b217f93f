"""The catalog of bad inputs: what a stranger may send a backend, and the answer each gets.

One list, ``CATALOG``, feeds three things: the live tests (each case sent to a real gunicorn
backend, answered by its documented 4xx JSON error, the server still serving after it), the load
session (``hw5kit.loadtest`` mixes these cases with good requests) and the documentation's
tables (``python -m hw5kit.testkit.badinputs docs`` writes them into
``docs/maintainer/errors.md``; a test checks they match).

Cases that need a misbehaving remote server (redirect loops, slow or huge answers, HTML instead
of an image) send their URLs to ``hostile.HostileServer``, a loopback HTTP server whose routes
misbehave on purpose (``{remote}`` in a case). The backend must then allow loopback fetches
(``HW5_ALLOW_LOOPBACK=1``, as the local target and the tests set) and run with ``BACKEND_ENV``:
small limits so that "too large" and "too slow" cost little. Blocked destinations are refused
before any connection, so those cases send nothing off the machine.
"""

from __future__ import annotations

import argparse
import functools
import io
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import markdown
from ..markdown import replace_block, rewrite_pages
from ..paths import DOCS
from ..serving.errors import ERROR_CODES

# The limits the catalog's backend runs with (documented in the docs' table).
BACKEND_ENV = {
    "HW5_MAX_UPLOAD_MB": "2",
    "HW5_MAX_DOWNLOAD_MB": "2",
    "HW5_FETCH_CONNECT_TIMEOUT": "1",
    "HW5_FETCH_READ_TIMEOUT": "1",
    "HW5_FETCH_TOTAL_TIMEOUT": "2",
}
SLOW_SECONDS = 3.0  # longer than HW5_FETCH_TOTAL_TIMEOUT above


# ---- payloads, made on demand -------------------------------------------------------------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def pixel_bomb_png() -> bytes:
    """A 67-byte PNG whose header claims 100000 x 100000 pixels."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _encoded(fmt: str, size: tuple[int, int] = (64, 48), **kw) -> bytes:
    from PIL import Image

    image = Image.new("RGB", size, (200, 120, 40))
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


@functools.cache
def tiff_image() -> bytes:
    return _encoded("TIFF")


@functools.cache
def truncated_jpeg() -> bytes:
    data = _encoded("JPEG", (256, 256))
    return data[: len(data) // 4]


@functools.cache
def small_png() -> bytes:
    return _encoded("PNG")


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
HTML = b"<!DOCTYPE html><html><body><img src=cat.jpg></body></html>"


# ---- the cases -------------------------------------------------------------------------------
Payload = bytes | Callable[[], bytes]


@dataclass(frozen=True)
class Case:
    """One bad input and the answer it must get. Strings in ``json`` and ``form`` may hold
    ``{remote}`` (the hostile server's base URL) and ``{closed}`` (a port nothing listens on)."""

    name: str
    sends: str  # what is sent, for the docs' table
    status: int
    code: str
    method: str = "POST"
    path: str = "/predict"
    json: Any = None
    body: Payload | None = None
    content_type: str | None = None
    upload: Payload | None = None  # multipart field 'file'
    form: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    v2_only: bool = False
    in_load_mix: bool = True  # cheap enough to repeat in the load session

    def request(self, base: str, remote: str = "", closed: int = 9) -> dict:
        """Keyword arguments for ``requests.request``."""

        def fill(value):
            if isinstance(value, str):
                return value.replace("{remote}", remote).replace("{closed}", str(closed))
            if isinstance(value, dict):
                return {k: fill(v) for k, v in value.items()}
            if isinstance(value, list):
                return [fill(v) for v in value]
            return value

        kwargs: dict = {"method": self.method, "url": base + fill(self.path)}
        headers = dict(self.headers)
        if self.json is not None:
            kwargs["json"] = fill(self.json)
        if self.body is not None:
            kwargs["data"] = self.body() if callable(self.body) else self.body
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        if self.upload is not None:
            data = self.upload() if callable(self.upload) else self.upload
            kwargs["files"] = {"file": ("image.jpg", data)}
        if self.form:
            kwargs["data"] = fill(self.form)
            if self.upload is None:  # still multipart, as a form upload would be
                kwargs["files"] = {"_": ("", b"")}
        kwargs["headers"] = headers
        return kwargs


def _u(url: str, **extra) -> dict:
    return {"url": url, **extra}


GOOD_URL = "{remote}/photos/coffee.png"
JSON = "application/json"

CATALOG: tuple[Case, ...] = (
    # -- the request itself ----------------------------------------------------------------
    Case("empty_body", "POST with no body and no Content-Type", 400, "missing_input"),
    Case("json_empty_object", "JSON `{}`", 400, "missing_input", json={}),
    Case("json_url_null", 'JSON `{"url": null}`', 400, "missing_input", json={"url": None}),
    Case("json_empty_body", "Content-Type JSON, empty body", 400, "missing_input",
         body=b"", content_type=JSON),
    Case("json_syntax", "`{not json`", 400, "invalid_json", body=b"{not json", content_type=JSON),
    Case("json_array", "JSON `[]`", 400, "invalid_json", json=[]),
    Case("json_string", 'JSON `"https://..."` (a string, not an object)', 400, "invalid_json",
         json="https://example.com/cat.jpg"),
    Case("json_deep_nesting", "JSON nested 50,000 levels deep", 400, "invalid_json",
         body=b"[" * 50_000, content_type=JSON),
    Case("json_bad_utf8", "JSON with invalid UTF-8 bytes", 400, "invalid_json",
         body=b'{"url": "\xff\xfe"}', content_type=JSON),
    Case("json_too_large", "a 100 kB JSON body", 413, "too_large",
         body=b'{"url": "' + b"a" * 100_000 + b'"}', content_type=JSON),
    Case("plain_text", "`text/plain` body", 415, "unsupported_media_type",
         body=b"https://example.com/cat.jpg", content_type="text/plain"),
    Case("form_without_image", "multipart form with neither `file` nor `url`", 400,
         "missing_input", form={"top_k": "3"}),
    Case("form_empty_file", "multipart `file` of 0 bytes", 400, "missing_input", upload=b""),
    Case("form_file_and_url", "multipart with both `file` and `url`", 400, "bad_request",
         upload=small_png, form={"url": GOOD_URL}),
    # -- fields ----------------------------------------------------------------------------
    Case("top_k_zero", "`top_k` 0", 400, "invalid_field", json=_u(GOOD_URL, top_k=0)),
    Case("top_k_too_big", "`top_k` 21", 400, "invalid_field", json=_u(GOOD_URL, top_k=21)),
    Case("top_k_text", '`top_k` "5" in JSON', 400, "invalid_field", json=_u(GOOD_URL, top_k="5")),
    Case("top_k_bool", "`top_k` true", 400, "invalid_field", json=_u(GOOD_URL, top_k=True)),
    Case("top_k_form_text", "form `top_k` = `five`", 400, "invalid_field",
         upload=small_png, form={"top_k": "five"}),
    Case("top_k_form_superscript", "form `top_k` = `²` (a Unicode digit, not a number)", 400,
         "invalid_field", upload=small_png, form={"top_k": "²"}),
    Case("model_not_text", "`model` 5", 400, "invalid_field", json=_u(GOOD_URL, model=5)),
    Case("model_too_long", "`model` of 1,000 characters", 400, "invalid_field",
         json=_u(GOOD_URL, model="m" * 1000)),
    Case("model_unknown", '`model` "resnet9000"', 400, "unknown_model",
         json=_u(GOOD_URL, model="resnet9000")),
    # -- the URL's form ----------------------------------------------------------------------
    Case("url_number", "`url` 12", 400, "invalid_url", json={"url": 12}),
    Case("url_list", '`url` ["https://..."]', 400, "invalid_url", json={"url": [GOOD_URL]}),
    Case("url_empty", '`url` ""', 400, "invalid_url", json={"url": ""}),
    Case("url_no_scheme", "`example.com/cat.jpg`", 400, "invalid_url",
         json={"url": "example.com/cat.jpg"}),
    Case("url_relative", "`/cat.jpg`", 400, "invalid_url", json={"url": "/cat.jpg"}),
    Case("url_file", "`file:///etc/passwd`", 400, "unsupported_scheme",
         json={"url": "file:///etc/passwd"}),
    Case("url_ftp", "`ftp://` URL", 400, "unsupported_scheme",
         json={"url": "ftp://example.com/cat.jpg"}),
    Case("url_data", "`data:image/png;base64,...`", 400, "unsupported_scheme",
         json={"url": "data:image/png;base64,iVBORw0KGgo="}),
    Case("url_credentials", "`http://user:pw@host/`", 400, "invalid_url",
         json={"url": "http://user:pw@example.com/cat.jpg"}),
    Case("url_header_injection", "URL with CR LF and a header after it", 400, "invalid_url",
         json={"url": "http://example.com/a.jpg\r\nX-Injected: 1"}),
    Case("url_backslash", "`http://127.0.0.1\\@example.com/`", 400, "invalid_url",
         json={"url": "http://127.0.0.1\\@example.com/"}),
    Case("url_zone_id", "IPv6 with a zone id `[fe80::1%25eth0]`", 400, "invalid_url",
         json={"url": "http://[fe80::1%25eth0]/a.jpg"}),
    Case("url_bad_port", "port 99999", 400, "invalid_url",
         json={"url": "http://example.com:99999/a.jpg"}),
    Case("url_too_long", "a 5,000-character URL", 400, "invalid_url",
         json={"url": "https://example.com/" + "a" * 5000}),
    # -- destinations refused before any connection ------------------------------------------------
    Case("metadata_server", "`http://169.254.169.254/computeMetadata/v1/`", 403,
         "blocked_destination", json={"url": "http://169.254.169.254/computeMetadata/v1/"}),
    Case("metadata_ipv4_mapped", "`http://[::ffff:169.254.169.254]/`", 403,
         "blocked_destination", json={"url": "http://[::ffff:169.254.169.254]/"}),
    Case("metadata_decimal", "`http://2852039166/` (169.254.169.254 as one number)", 403,
         "blocked_destination", json={"url": "http://2852039166/computeMetadata/v1/"}),
    Case("metadata_ipv6", "`http://[fd00:ec2::254]/` (a cloud metadata address on IPv6)", 403,
         "blocked_destination", json={"url": "http://[fd00:ec2::254]/latest/meta-data/"}),
    Case("private_network", "`http://10.0.0.1/`", 403, "blocked_destination",
         json={"url": "http://10.0.0.1/a.jpg"}),
    Case("unspecified_address", "`http://0.0.0.0/`", 403, "blocked_destination",
         json={"url": "http://0.0.0.0:8000/"}),
    Case("redirect_to_metadata", "a URL that redirects to the metadata server", 403,
         "blocked_destination", json={"url": "{remote}/to-metadata"}),
    # -- remote servers that do not give an image ------------------------------------------------
    Case("remote_404", "a URL answering 404", 422, "remote_status",
         json={"url": "{remote}/status/404"}),
    Case("remote_500", "a URL answering 500", 422, "remote_status",
         json={"url": "{remote}/status/500"}),
    Case("remote_html", "a URL serving HTML labelled `image/jpeg`", 422, "not_an_image",
         json={"url": "{remote}/page.html"}),
    Case("redirect_loop", "a URL that redirects to itself", 422, "too_many_redirects",
         json={"url": "{remote}/loop"}),
    Case("redirect_to_file", "a URL that redirects to `file:///etc/passwd`", 422, "bad_redirect",
         json={"url": "{remote}/to-file"}),
    Case("remote_slow", f"a URL that answers after {SLOW_SECONDS:g} s", 422, "fetch_timeout",
         json={"url": "{remote}/slow"}, in_load_mix=False),
    Case("remote_huge", "a URL announcing 3 MiB", 413, "too_large", json={"url": "{remote}/huge"}),
    Case("remote_gzip", "a URL sending a gzip-encoded body", 422, "unsupported_encoding",
         json={"url": "{remote}/gzip"}),
    Case("remote_truncated", "a URL whose body stops before its Content-Length", 422,
         "connection_failed", json={"url": "{remote}/truncated"}),
    Case("remote_not_http", "a URL whose server does not speak HTTP", 422, "connection_failed",
         json={"url": "{remote}/garbage"}),
    Case("remote_refused", "a URL on a port nothing listens on", 422, "connection_failed",
         json={"url": "http://127.0.0.1:{closed}/a.jpg"}),
    # -- uploaded bytes that are not a usable image ------------------------------------------------
    Case("upload_pdf", "a PDF uploaded as `image.jpg`", 422, "not_an_image", upload=PDF),
    Case("upload_svg", "an SVG", 422, "not_an_image", upload=SVG),
    Case("upload_tiff", "a TIFF (not an accepted format)", 422, "not_an_image", upload=tiff_image),
    Case("upload_truncated_jpeg", "the first quarter of a JPEG", 422, "corrupt_image",
         upload=truncated_jpeg),
    Case("upload_pixel_bomb", "a 67-byte PNG claiming 100000 x 100000 pixels", 422,
         "image_too_large", upload=pixel_bomb_png),
    Case("upload_too_large", "a 3 MB upload (limit 2 MB)", 413, "too_large",
         upload=b"\xff\xd8\xff" + b"\0" * 3_000_000, in_load_mix=False),
    # -- routes and HTTP ---------------------------------------------------------------------
    Case("unknown_route", "`GET /nope`", 404, "not_found", method="GET", path="/nope"),
    Case("wrong_method", "`GET /predict`", 405, "method_not_allowed", method="GET"),
    Case("unknown_model_path", "`GET /models/resnet9000`", 404, "unknown_model", method="GET",
         path="/models/resnet9000"),
    Case("choose_unknown_model", "`PUT /model/resnet9000` (v2)", 404, "unknown_model",
         method="PUT", path="/model/resnet9000", v2_only=True),
    Case("request_line_too_long", "a 9,000-byte request path", 414, "uri_too_long",
         method="GET", path="/" + "a" * 9000),
    Case("header_too_large", "a 10 kB header", 431, "headers_too_large", method="GET",
         path="/hello", headers={"X-Big": "b" * 10_000}),
)  # fmt: skip


def cases(version: str = "v2") -> tuple[Case, ...]:
    """The cases a backend of ``version`` answers (v2 has the model-choice routes)."""
    return tuple(c for c in CATALOG if version == "v2" or not c.v2_only)


# ---- the documentation's tables (docs/maintainer/errors.md) ------------------------------
PAGES = (DOCS / "maintainer" / "errors.md",)
COMMAND = "python -m hw5kit.testkit.badinputs docs"
BEGIN = f"<!-- BEGIN generated by `{COMMAND}`: {{}} -->"
END = "<!-- END generated: {} -->"


def codes_table() -> str:
    return markdown.table(
        ["code", "status", "meaning, and what to do"],
        [
            [f"`{code}`", " / ".join(map(str, statuses)), meaning]
            for code, (statuses, meaning) in ERROR_CODES.items()
        ],
    )


def catalog_table() -> str:
    return markdown.table(
        ["#", "case", "what is sent", "status", "code"],
        [
            [i, f"`{case.name}`", case.sends, case.status, f"`{case.code}`"]
            for i, case in enumerate(CATALOG, 1)
        ],
    )


TABLES = {"error codes": codes_table, "bad-input catalog": catalog_table}


def render_page(text: str) -> str:
    """``text`` with each generated table replaced by its current content."""
    for name, make in TABLES.items():
        text = replace_block(text, BEGIN.format(name), END.format(name), make())
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw5kit.testkit.badinputs",
        description="The bad-input catalog: list it, or write/check the docs' error tables.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    docs = sub.add_parser(
        "docs", aliases=["readme"], help="rewrite the error tables of docs/maintainer/errors.md"
    )
    docs.add_argument("--check", action="store_true", help="fail if a page is stale")
    docs.add_argument(
        "--path", type=Path, action="append", help="a page (repeatable; default: the errors page)"
    )
    sub.add_parser("list", help="print the catalog")
    args = parser.parse_args(argv)
    if args.command == "list":
        for case in CATALOG:
            print(f"{case.status} {case.code:24} {case.name:26} {case.sends}")
        return 0
    return rewrite_pages(args.path or PAGES, render_page, check=args.check, command=COMMAND)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
