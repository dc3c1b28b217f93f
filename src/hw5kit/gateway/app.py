"""The gateway's WSGI application: match, check the key, forward, stream back."""

from __future__ import annotations

import http.cookiejar
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from urllib.parse import parse_qs, parse_qsl, urlencode

import requests

from ..serving.http.observability import REQUEST_ID_HEADER, request_id_from
from .spec import GatewaySpec, Route

log = logging.getLogger("hw5kit.gateway")

CHUNK = 64 * 1024
CONNECT_TIMEOUT = 3.0  # at most; never more than the route's deadline
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
        "host",
        "content-length",
    }
)
# set by the gateway itself from what it saw, never taken from the caller
OWN_HEADERS = frozenset({"x-forwarded-for", "x-request-id"})


class _NoCookies(http.cookiejar.CookieJar):
    """A cookie jar that keeps nothing: a backend's ``Set-Cookie`` goes back to the caller who
    caused it and is never replayed for the next caller the gateway thread serves."""

    def set_cookie(self, cookie) -> None:
        return None

    def set_cookie_if_ok(self, cookie, request) -> None:
        return None

    def extract_cookies(self, response, request) -> None:
        return None


def connection_tokens(value: str | None) -> set[str]:
    """The header names a ``Connection`` header lists: hop-by-hop too (RFC 9110 7.6.1)."""
    return {t.strip().lower() for t in (value or "").split(",") if t.strip()}


REASONS = {
    200: "OK",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}


class _Body:
    """``wsgi.input`` as a sized file for requests: it sends Content-Length, not chunks."""

    def __init__(self, stream, length: int):
        self.stream = stream
        self.left = length
        self.length = length

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.stream.read(size)
        self.left -= len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk


class GatewayApp:
    """Routes requests by ``spec`` (see the package docstring)."""

    def __init__(
        self,
        spec: GatewaySpec,
        *,
        api_keys: Iterable[str] = (),
        max_body_bytes: int = 32 * 1024 * 1024,
    ):
        self.spec = spec
        self.api_keys = frozenset(k for k in api_keys if k)
        self.max_body_bytes = max_body_bytes
        self._local = threading.local()
        self.serves_health = spec.match("GET", "/healthz")[0] is None

    # -- helpers -------------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # never through a proxy from the environment
            session.cookies = _NoCookies()  # one thread serves many callers: no shared jar
            self._local.session = session
        return session

    @staticmethod
    def _error(start_response, status: int, code: str, message: str, request_id: str, extra=()):
        body = json.dumps(
            {"error": {"code": code, "message": message, "request_id": request_id}}
        ).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            (REQUEST_ID_HEADER, request_id),
            *extra,
        ]
        start_response(f"{status} {REASONS.get(status, 'Error')}", headers)
        return [body]

    def _key_problem(self, route: Route, environ) -> tuple[int, str, str] | None:
        if not route.keys:
            return None
        query = parse_qs(environ.get("QUERY_STRING", ""))
        offered = []
        for alternative in route.keys:
            for key in alternative:
                if key.location == "query":
                    offered += query.get(key.name, [])
                else:
                    header = "HTTP_" + key.name.upper().replace("-", "_")
                    if environ.get(header):
                        offered.append(environ[header])
        if not offered:
            names = " or ".join(
                f"the query parameter {k.name}" if k.location == "query" else f"the {k.name} header"
                for alt in route.keys
                for k in alt
            )
            return 401, "unauthenticated", f"this method needs an API key ({names})"
        if not any(k in self.api_keys for k in offered):
            return 403, "permission_denied", "the API key is not valid for this API"
        return None

    def _key_names(self, route: Route) -> tuple[set[str], set[str]]:
        """(query parameters, header names) that carry an API key for ``route``: the key is
        checked here and goes no further."""
        query = {k.name for alt in route.keys for k in alt if k.location == "query"}
        headers = {k.name.lower() for alt in route.keys for k in alt if k.location == "header"}
        return query, headers

    def _forward_headers(self, environ, request_id: str, route: Route) -> dict[str, str]:
        """The caller's end-to-end headers: without hop-by-hop ones, those its ``Connection``
        header names, the API key's, and the ones the gateway sets itself; then
        ``X-Forwarded-For`` with the caller's address appended (what the caller sent there is
        passed on as it came, and never used by the gateway) and the request id."""
        _, key_headers = self._key_names(route)
        dropped = HOP_BY_HOP | connection_tokens(environ.get("HTTP_CONNECTION")) | key_headers
        headers = {}
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                name = key[5:].replace("_", "-").title()
                if name.lower() not in dropped and name.lower() not in OWN_HEADERS:
                    headers[name] = value
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        headers[REQUEST_ID_HEADER] = request_id
        client = environ.get("REMOTE_ADDR", "")
        previous = environ.get("HTTP_X_FORWARDED_FOR", "").strip()
        headers["X-Forwarded-For"] = f"{previous}, {client}" if previous else client
        return headers

    def _forward_query(self, environ, route: Route) -> str:
        """The caller's query string without the API key parameter."""
        query = environ.get("QUERY_STRING", "")
        key_params, _ = self._key_names(route)
        if not query or not key_params:
            return query
        pairs = parse_qsl(query, keep_blank_values=True)
        return urlencode([(k, v) for k, v in pairs if k not in key_params])

    # -- WSGI ----------------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "/") or "/"
        if path == "/healthz" and method == "GET" and self.serves_health:
            body = json.dumps({"status": "ok", "routes": len(self.spec.routes)}).encode()
            start_response(
                "200 OK", [("Content-Type", "application/json"), (REQUEST_ID_HEADER, request_id)]
            )
            return [body]
        route, params, allowed = self.spec.match(method, path)
        if route is not None and not all(Route.safe_param(v) for v in params.values()):
            route, allowed = None, []  # "." or ".." would leave the route's prefix upstream
        if route is None:
            if allowed:
                return self._error(
                    start_response,
                    405,
                    "method_not_allowed",
                    f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}",
                    request_id,
                    [("Allow", ", ".join(allowed))],
                )
            return self._error(
                start_response,
                404,
                "not_found",
                f"no route for {method} {path} in the gateway's API",
                request_id,
            )
        problem = self._key_problem(route, environ)
        if problem:
            return self._error(start_response, *problem, request_id)
        raw_length = environ.get("CONTENT_LENGTH") or ""
        if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked" and not raw_length:
            return self._error(
                start_response, 411, "length_required", "send a Content-Length", request_id
            )
        length = int(raw_length) if raw_length.isdigit() else 0
        if length > self.max_body_bytes:
            return self._error(
                start_response,
                413,
                "too_large",
                f"the request body is larger than the limit of {self.max_body_bytes:,} bytes",
                request_id,
            )
        return self._forward(environ, start_response, route, params, length, request_id)

    def _forward(self, environ, start_response, route: Route, params, length, request_id):
        url = route.upstream(params, self._forward_query(environ, route))
        started = time.monotonic()
        deadline = route.deadline
        body = _Body(environ["wsgi.input"], length) if length else None
        try:
            upstream = self._session().request(
                environ["REQUEST_METHOD"],
                url,
                data=body,
                headers=self._forward_headers(environ, request_id, route),
                stream=True,
                allow_redirects=False,
                timeout=(min(CONNECT_TIMEOUT, deadline), deadline),
            )
        except requests.exceptions.ConnectTimeout:
            if time.monotonic() - started >= deadline:
                return self._timeout(start_response, route, request_id)
            return self._bad_gateway(
                start_response, route, "the backend did not accept", request_id
            )
        except requests.exceptions.Timeout:
            return self._timeout(start_response, route, request_id)
        except requests.exceptions.ConnectionError as exc:
            reason = "the backend refused the connection or is unreachable"
            log.warning("%s %s -> %s: %s", environ["REQUEST_METHOD"], url, reason, exc)
            return self._bad_gateway(start_response, route, reason, request_id)
        except requests.exceptions.RequestException as exc:
            return self._bad_gateway(start_response, route, type(exc).__name__, request_id)
        dropped = HOP_BY_HOP | connection_tokens(upstream.raw.headers.get("Connection"))
        headers = [(k, v) for k, v in upstream.raw.headers.items() if k.lower() not in dropped]
        if upstream.headers.get("Content-Length"):
            headers.append(("Content-Length", upstream.headers["Content-Length"]))
        if not any(k.lower() == REQUEST_ID_HEADER.lower() for k, _ in headers):
            headers.append((REQUEST_ID_HEADER, request_id))
        start_response(f"{upstream.status_code} {upstream.reason or ''}".strip(), headers)
        return self._stream(upstream, started, deadline, url)

    @staticmethod
    def _stream(upstream, started: float, deadline: float, url: str) -> Iterator[bytes]:
        try:
            for chunk in upstream.raw.stream(CHUNK, decode_content=False):
                if time.monotonic() - started > deadline:
                    log.warning("%s: body still streaming past the %.1f s deadline", url, deadline)
                    return
                yield chunk
        except (requests.exceptions.RequestException, OSError) as exc:
            log.warning("%s: body cut off (%s)", url, exc)
        finally:
            upstream.close()

    def _timeout(self, start_response, route: Route, request_id: str):
        return self._error(
            start_response,
            504,
            "deadline_exceeded",
            f"the backend of {route.operation_id} did not answer within its "
            f"{route.deadline:g} s deadline",
            request_id,
        )

    def _bad_gateway(self, start_response, route: Route, reason: str, request_id: str):
        return self._error(
            start_response,
            502,
            "bad_gateway",
            f"the backend of {route.operation_id} is not available: {reason}",
            request_id,
        )
