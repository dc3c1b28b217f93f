"""Reading the gateway's OpenAPI 2.0 document into a routing table."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import yaml

METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
TRANSLATIONS = ("APPEND_PATH_TO_ADDRESS", "CONSTANT_ADDRESS")
DEFAULT_DEADLINE = 15.0  # Google's default when x-google-backend gives none
# the committed document's backend addresses, filled in by deploy (pipeline.context.placeholder)
PLACEHOLDER_MARK = "DEPLOY-FILLS-IN-THE-CLOUD-RUN-URL"


class SpecError(ValueError):
    """The document cannot drive the gateway: the message says where and why."""


@dataclass(frozen=True)
class ApiKey:
    name: str  # the query parameter or header carrying the key
    location: str  # query | header


@dataclass(frozen=True)
class Route:
    method: str  # upper case
    path: str  # the document's path, e.g. /model/efficientnet_lite0/predict
    pattern: re.Pattern
    address: str
    translation: str
    deadline: float
    operation_id: str
    keys: tuple[tuple[ApiKey, ...], ...] = ()  # alternatives; empty: no key needed

    @staticmethod
    def safe_param(value: str) -> bool:
        """A path parameter that stays one segment once encoded: not empty, not ``.`` or ``..``
        (which a URL library resolves, leaving the route's prefix)."""
        return value not in ("", ".", "..")

    def upstream(self, params: dict[str, str], query: str) -> str:
        """The backend URL for a request that matched with ``params`` (Google's two path
        translations). The path is rebuilt from the document's template, each parameter
        percent-encoded as one segment (``/``, ``?``, ``#`` and ``%`` included), so that it
        stays inside the route's prefix; ``CONSTANT_ADDRESS`` passes them as query parameters.
        """
        if self.translation == "APPEND_PATH_TO_ADDRESS":
            path = _TEMPLATE.sub(lambda m: quote(params[m.group(1)], safe=""), self.path)
            url = self.address.rstrip("/") + path
        else:
            url = self.address
            extra = urlencode(list(params.items()))
            query = "&".join(q for q in (query, extra) if q)
        return f"{url}?{query}" if query else url


_TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class GatewaySpec:
    title: str
    routes: list[Route] = field(default_factory=list)

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
        """(route, path parameters, allowed methods of the path when the method is wrong)."""
        allowed = []
        for route in self.routes:
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route, m.groupdict(), []
            allowed.append(route.method)
        return None, {}, allowed


def _pattern(path: str) -> re.Pattern:
    parts = re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\})", path)
    regex = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(regex)


def _backend(where: str, raw: Any) -> tuple[str, str, float]:
    if not isinstance(raw, dict) or not raw.get("address"):
        raise SpecError(f"{where}: x-google-backend needs an address")
    address = str(raw["address"])
    if PLACEHOLDER_MARK in address or "${" in address or "{{" in address:
        raise SpecError(
            f"{where}: x-google-backend address {address!r} is still a placeholder: render the "
            "document with the backends' URLs (nox -s deploy does)"
        )
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(f"{where}: x-google-backend address {address!r} is not an http(s) URL")
    translation = str(raw.get("path_translation") or "APPEND_PATH_TO_ADDRESS")
    if translation not in TRANSLATIONS:
        raise SpecError(
            f"{where}: path_translation must be one of {', '.join(TRANSLATIONS)}, "
            f"got {translation!r}"
        )
    deadline = raw.get("deadline", DEFAULT_DEADLINE)
    if isinstance(deadline, bool) or not isinstance(deadline, int | float):
        raise SpecError(f"{where}: deadline must be a number of seconds, got {deadline!r}")
    if deadline <= 0:  # Google: zero or negative means the default
        deadline = DEFAULT_DEADLINE
    return address, translation, float(deadline)


def _keys(where: str, requirements: Any, definitions: dict) -> tuple[tuple[ApiKey, ...], ...]:
    if not requirements:
        return ()
    out = []
    for requirement in requirements:
        if not isinstance(requirement, dict):
            raise SpecError(f"{where}: a security requirement is a mapping, got {requirement!r}")
        keys = []
        for name in requirement:
            definition = definitions.get(name)
            if not isinstance(definition, dict):
                raise SpecError(f"{where}: security names {name!r}, not in securityDefinitions")
            if definition.get("type") != "apiKey":
                raise SpecError(
                    f"securityDefinitions.{name}: only type apiKey is supported by the local "
                    f"gateway, got {definition.get('type')!r}"
                )
            if definition.get("in") not in ("query", "header"):
                raise SpecError(f"securityDefinitions.{name}.in: expected query or header")
            keys.append(ApiKey(str(definition["name"]), str(definition["in"])))
        if not keys:  # {} among the alternatives: no key needed
            return ()
        out.append(tuple(keys))
    return tuple(out)


def parse_spec(doc: Any, source: str = "document") -> GatewaySpec:
    if not isinstance(doc, dict) or str(doc.get("swagger")) != "2.0":
        raise SpecError(f"{source}: not an OpenAPI 2.0 document (swagger: '2.0')")
    paths = doc.get("paths")
    if not isinstance(paths, dict) or not paths:
        raise SpecError(f"{source}: no paths")
    definitions = doc.get("securityDefinitions") or {}
    top_backend = doc.get("x-google-backend")
    top_security = doc.get("security")
    spec = GatewaySpec(title=str((doc.get("info") or {}).get("title") or "gateway"))
    for path, item in paths.items():
        if not isinstance(item, dict):
            raise SpecError(f"{source}: paths.{path} is not a mapping")
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            where = f"{source}: paths.{path}.{method}"
            backend = op.get("x-google-backend", item.get("x-google-backend", top_backend))
            if backend is None:
                raise SpecError(f"{where}: no x-google-backend (on the operation or the document)")
            address, translation, deadline = _backend(where, backend)
            security = op.get("security", top_security)
            spec.routes.append(
                Route(
                    method=method.upper(),
                    path=path,
                    pattern=_pattern(path),
                    address=address,
                    translation=translation,
                    deadline=deadline,
                    operation_id=str(op.get("operationId") or f"{method} {path}"),
                    keys=_keys(where, security, definitions),
                )
            )
    return spec


def load_spec(path: Path) -> GatewaySpec:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({exc})") from None
    return parse_spec(doc, str(path))
