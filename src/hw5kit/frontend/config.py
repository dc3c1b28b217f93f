"""What a frontend reads from its environment, checked once per page run.

* ``SERVING_URL`` (v1, v2): base URL of the backend, ``http(s)://host[:port][/path]``;
* ``API_GATEWAY`` (v3): base URL of the API gateway, same form;
* ``UI_LANG``: ``fr`` (the default) or ``en``; a locale such as ``en_US.UTF-8`` counts as ``en``.

Without a URL variable the frontend uses ``http://127.0.0.1:8000`` (the local default) and says
so on the page.

A bad value never crashes the page: it becomes a :class:`Problem` (an i18n key and its
parameters) that the page shows, naming the variable and what it expects.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from .i18n import DEFAULT_LANG, LANGS

DEFAULT_BASE_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class VersionSpec:
    """What one frontend version offers and where it finds its backend."""

    name: str
    url_var: str
    pick_model: bool  # a model picker filled from GET /models
    compare: bool  # the "compare every model" view
    gateway: bool  # POST /model/<name>/predict (v3) instead of POST /predict with a body model


VERSIONS: dict[str, VersionSpec] = {
    "v1": VersionSpec("v1", "SERVING_URL", pick_model=False, compare=False, gateway=False),
    "v2": VersionSpec("v2", "SERVING_URL", pick_model=True, compare=True, gateway=False),
    "v3": VersionSpec("v3", "API_GATEWAY", pick_model=True, compare=True, gateway=True),
}


@dataclass(frozen=True)
class Problem:
    """A configuration problem to show: ``key`` is an i18n key, ``params`` its placeholders."""

    key: str
    params: dict[str, str] = field(default_factory=dict)
    fatal: bool = False


@dataclass(frozen=True)
class FrontendConfig:
    version: VersionSpec
    base_url: str | None  # None when the variable is unusable (see problems)
    lang: str
    url_is_default: bool = False
    problems: tuple[Problem, ...] = ()

    @classmethod
    def from_env(cls, version: str, environ: Mapping[str, str] | None = None) -> FrontendConfig:
        env = os.environ if environ is None else environ
        if version not in VERSIONS:
            raise ValueError(
                f"unknown frontend version {version!r}; expected one of {list(VERSIONS)}"
            )
        spec = VERSIONS[version]
        problems: list[Problem] = []

        lang, lang_problem = parse_lang(env.get("UI_LANG", ""))
        if lang_problem:
            problems.append(lang_problem)

        raw = env.get(spec.url_var, "").strip()
        base_url: str | None
        if not raw:
            base_url, is_default = DEFAULT_BASE_URL, True
        else:
            is_default = False
            base_url, url_problem = parse_base_url(raw, spec.url_var)
            if url_problem:
                problems.append(url_problem)
        return cls(spec, base_url, lang, is_default, tuple(problems))


def parse_lang(value: str) -> tuple[str, Problem | None]:
    """``fr``/``en`` from ``UI_LANG``; a locale such as ``en_US.UTF-8`` counts as its language."""
    text = value.strip()
    if not text:
        return DEFAULT_LANG, None
    code = text.replace("-", "_").split("_", 1)[0].split(".", 1)[0].lower()
    if code in LANGS:
        return code, None
    return DEFAULT_LANG, Problem(
        "config_bad_lang", {"value": text, "choices": ", ".join(LANGS), "default": DEFAULT_LANG}
    )


def parse_base_url(value: str, var: str) -> tuple[str | None, Problem | None]:
    """A base URL without its trailing slash, or a fatal problem saying what is expected."""
    bad = Problem("config_bad_url", {"var": var, "value": value}, fatal=True)
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        return None, bad
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None, bad
    if parts.query or parts.fragment or any(c.isspace() for c in value):
        return None, bad
    return value.rstrip("/"), None
