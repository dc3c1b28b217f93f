"""The backend contract seen from a frontend: list models, describe one, classify an image.

Two route styles share one client:

* :class:`ServingClient`, a v1/v2 backend: ``POST /predict`` with the model in the body;
* :class:`GatewayClient`, the v3 API gateway: ``POST /model/<name>/predict``.

The frontend serves many people from one process, so the client keeps **no cookies**: the
backend's ``PUT /model/<name>`` session is never used, and every request names its model in the
body (the caller's choice lives in that caller's Streamlit session). Every failure is one of the
:class:`FrontendError` subclasses below, which :mod:`.messages` turns into words.
"""

from __future__ import annotations

import http.cookiejar
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import requests

CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 60.0
DEFAULT_TOP_K = 5


# ---- errors --------------------------------------------------------------------------------
class FrontendError(Exception):
    """Anything that stops a request from giving an answer."""


class InvalidImageURL(FrontendError):
    """The text typed is not an http(s) URL; ``reason`` is ``empty``, ``scheme`` or ``invalid``."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"not an image URL ({reason}): {url!r}")
        self.url = url
        self.reason = reason


class BackendUnreachable(FrontendError):
    def __init__(self, base_url: str, reason: str = ""):
        super().__init__(f"cannot connect to {base_url}: {reason}")
        self.base_url = base_url


class BackendTimeout(FrontendError):
    def __init__(self, base_url: str, seconds: float):
        super().__init__(f"{base_url} did not answer within {seconds:g} s")
        self.base_url = base_url
        self.seconds = seconds


class BadResponse(FrontendError):
    """The answer is not the contract's JSON (a proxy's error page, a wrong SERVING_URL...)."""

    def __init__(self, base_url: str, status: int, snippet: str = ""):
        super().__init__(f"unexpected answer from {base_url} (HTTP {status}): {snippet[:200]!r}")
        self.base_url = base_url
        self.status = status
        self.snippet = snippet


class ApiError(FrontendError):
    """The backend answered ``{"error": {"code", "message"}}`` with a 4xx or 5xx status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        details: dict | None = None,
    ):
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.details = details or {}


# ---- values --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Upload:
    """An image file the user gave: its name, bytes and MIME type."""

    name: str
    data: bytes
    mime: str = "application/octet-stream"


@dataclass(frozen=True)
class Guess:
    label: str
    index: int
    probability: float


@dataclass(frozen=True)
class Prediction:
    model: str
    guesses: tuple[Guess, ...]
    source: str  # "url" or "upload"
    timing_ms: dict[str, float]
    image: dict[str, Any]
    roundtrip_ms: float  # measured here: network + queue + the backend's own total

    @property
    def top(self) -> Guess:
        return self.guesses[0]

    @classmethod
    def from_json(cls, body: Any, roundtrip_ms: float, base_url: str) -> Prediction:
        try:
            guesses = tuple(
                Guess(str(p["label"]), int(p["index"]), float(p["probability"]))
                for p in body["predictions"]
            )
            if not guesses:
                raise ValueError("no predictions")
            timing = {k: float(v) for k, v in (body.get("timing_ms") or {}).items()}
            return cls(
                model=str(body["model"]),
                guesses=guesses,
                source=str(body.get("source", "")),
                timing_ms=timing,
                image=dict(body.get("image") or {}),
                roundtrip_ms=roundtrip_ms,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadResponse(base_url, 200, f"{type(exc).__name__}: {exc}") from exc


def check_image_url(text: str) -> str:
    """The URL stripped of surrounding blanks, or :class:`InvalidImageURL` saying why not."""
    url = text.strip()
    if not url:
        raise InvalidImageURL(text, "empty")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        raise InvalidImageURL(url, "invalid") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidImageURL(url, "scheme")
    if not parts.hostname or any(c.isspace() for c in url):
        raise InvalidImageURL(url, "invalid")
    return url


def _no_cookie_session() -> requests.Session:
    session = requests.Session()
    # one session serves every visitor of the page: it must never carry anybody's cookie
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session


# ---- clients -------------------------------------------------------------------------------
class ServingClient:
    """A v1/v2 backend (``SERVING_URL``): ``POST /predict`` names the model in its body."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.session = session or _no_cookie_session()

    # the only difference between the route styles
    def predict_path(self, model: str | None) -> str:
        return "/predict"

    def predict_body(self, model: str | None) -> dict[str, str]:
        return {"model": model} if model else {}

    # -- public ---------------------------------------------------------------------------
    def list_models(self) -> list[str]:
        body = self._json("GET", "/models")
        if not isinstance(body, list) or not body or not all(isinstance(m, str) for m in body):
            raise BadResponse(self.base_url, 200, f"GET /models gave {str(body)[:200]}")
        return body

    def model_info(self, name: str) -> dict[str, Any]:
        body = self._json("GET", f"/models/{urllib.parse.quote(name, safe='')}")
        if not isinstance(body, dict):
            raise BadResponse(self.base_url, 200, f"GET /models/{name} gave {str(body)[:200]}")
        return body

    def predict(
        self, image: str | Upload, *, model: str | None = None, top_k: int = DEFAULT_TOP_K
    ) -> Prediction:
        """Classify an image URL (checked first) or an uploaded file with ``model``."""
        path = self.predict_path(model)
        extra = self.predict_body(model)
        if isinstance(image, Upload):
            kwargs: dict[str, Any] = {
                "files": {"file": (image.name, image.data, image.mime)},
                "data": {**extra, "top_k": str(top_k)},
            }
        else:
            kwargs = {"json": {"url": check_image_url(image), **extra, "top_k": top_k}}
        start = time.perf_counter()
        body = self._json("POST", path, **kwargs)
        roundtrip = (time.perf_counter() - start) * 1000
        return Prediction.from_json(body, round(roundtrip, 1), self.base_url)

    # -- HTTP -----------------------------------------------------------------------------
    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self.base_url + path
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.exceptions.ConnectTimeout:
            raise BackendUnreachable(self.base_url, "connection timed out") from None
        except requests.exceptions.Timeout:
            raise BackendTimeout(self.base_url, self.timeout[1]) from None
        except requests.exceptions.ConnectionError as exc:
            raise BackendUnreachable(self.base_url, type(exc).__name__) from None
        except requests.exceptions.RequestException as exc:
            raise BackendUnreachable(self.base_url, f"{type(exc).__name__}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            raise BadResponse(self.base_url, response.status_code, response.text[:500]) from None
        if response.ok:
            return body
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict) or "code" not in error:
            raise BadResponse(self.base_url, response.status_code, response.text[:500])
        retry = response.headers.get("Retry-After", "")
        raise ApiError(
            response.status_code,
            str(error["code"]),
            str(error.get("message", "")),
            retry_after=int(retry) if retry.isdigit() else None,
            details=error.get("details") if isinstance(error.get("details"), dict) else None,
        )


class GatewayClient(ServingClient):
    """The v3 API gateway (``API_GATEWAY``): ``POST /model/<name>/predict``, one model each.

    ``api_key`` (the frontend's ``API_GATEWAY_KEY``) goes in the ``x-api-key`` header of every
    request when the gateway requires a key."""

    def __init__(self, base_url: str, *, api_key: str | None = None, **kwargs: Any):
        super().__init__(base_url, **kwargs)
        if api_key:
            self.session.headers["x-api-key"] = api_key

    def predict_path(self, model: str | None) -> str:
        if not model:
            raise ValueError("the gateway needs a model name for every prediction")
        return f"/model/{urllib.parse.quote(model, safe='')}/predict"

    def predict_body(self, model: str | None) -> dict[str, str]:
        return {}  # the path names the model


def make_client(base_url: str, *, gateway: bool, api_key: str | None = None) -> ServingClient:
    if gateway:
        return GatewayClient(base_url, api_key=api_key)
    return ServingClient(base_url)
