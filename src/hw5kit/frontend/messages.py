"""Any failure turned into a message a person can act on: what happened, what to do.

The backend's own ``message`` is kept (``detail``): it says precisely what was wrong with the
input ("the URL answered HTTP 404"...), while ``text`` and ``hint`` are in the page's language.
Nothing here ever shows a traceback.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .client import (
    ApiError,
    BackendTimeout,
    BackendUnreachable,
    BadResponse,
    InvalidImageURL,
)
from .i18n import Translator

# backend error code -> (message key, hint key); see hw5kit.serving.errors for the codes
_API_CODES: dict[str, tuple[str, str | None]] = {
    "missing_input": ("err_bad_address", "hint_url"),
    "invalid_url": ("err_bad_address", "hint_url"),
    "unsupported_scheme": ("err_bad_address", "hint_url"),
    "blocked_destination": ("err_blocked", "hint_blocked"),
    "remote_status": ("err_remote_status", "hint_check_url"),
    "fetch_timeout": ("err_fetch_timeout", "hint_check_url"),
    "fetch_failed": ("err_fetch_failed", "hint_check_url"),
    "too_many_redirects": ("err_fetch_failed", "hint_check_url"),
    "not_an_image": ("err_not_image", "hint_formats"),
    "unsupported_media_type": ("err_not_image", "hint_formats"),
    "image_too_large": ("err_image_too_large", "hint_smaller"),
    "too_large": ("err_too_large", "hint_smaller"),
    "unknown_model": ("err_unknown_model", "hint_pick_model"),
}
_RETRY_CODES = {"not_ready": "err_not_ready", "overloaded": "err_overloaded"}
_BUSY_STATUSES = {429, 503}
_GATEWAY_STATUSES = {500, 502, 504}


@dataclass(frozen=True)
class UserMessage:
    text: str
    hint: str | None = None
    detail: str | None = None  # the service's own words, shown as they came
    level: str = "error"  # "error" or "warning" (try again soon)


def describe(exc: BaseException, tr: Translator, *, url_var: str = "SERVING_URL") -> UserMessage:
    if isinstance(exc, InvalidImageURL):
        key = {"empty": "err_url_empty", "scheme": "err_url_scheme"}.get(exc.reason)
        return UserMessage(tr(key or "err_url_invalid", url=exc.url), tr("hint_url"))
    if isinstance(exc, BackendUnreachable):
        return UserMessage(
            tr("err_unreachable", url=exc.base_url), tr("hint_unreachable", var=url_var)
        )
    if isinstance(exc, BackendTimeout):
        return UserMessage(
            tr("err_timeout", seconds=tr.number(exc.seconds)), tr("hint_timeout"), level="warning"
        )
    if isinstance(exc, BadResponse) and exc.status in _BUSY_STATUSES:
        # a front end's own page (Cloud Run, a gateway, a proxy): busy or scaling, not misrouted
        return UserMessage(tr("err_overloaded"), tr("hint_retry_in", seconds=2), level="warning")
    if isinstance(exc, BadResponse) and exc.status in _GATEWAY_STATUSES:
        return UserMessage(tr("err_server", status=exc.status), tr("hint_later"))
    if isinstance(exc, BadResponse):
        return UserMessage(
            tr("err_bad_response", status=exc.status),
            tr("hint_bad_response", var=url_var, url=exc.base_url),
        )
    if isinstance(exc, ApiError):
        return _api(exc, tr)
    return unexpected(tr)


def _api(exc: ApiError, tr: Translator) -> UserMessage:
    detail = tr("server_said", message=exc.message) if exc.message else None
    if exc.code in _RETRY_CODES or exc.status == 503:
        seconds = exc.retry_after or 2
        key = _RETRY_CODES.get(exc.code, "err_overloaded")
        return UserMessage(tr(key), tr("hint_retry_in", seconds=seconds), detail, "warning")
    if exc.code in _API_CODES:
        text, hint = _API_CODES[exc.code]
        return UserMessage(tr(text), tr(hint) if hint else None, detail)
    if 400 <= exc.status < 500:
        return UserMessage(tr("err_client", status=exc.status), None, detail)
    return UserMessage(tr("err_server", status=exc.status), tr("hint_later"), detail)


def unexpected(tr: Translator) -> UserMessage:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return UserMessage(tr("err_unexpected"), tr("hint_unexpected", time=now))
