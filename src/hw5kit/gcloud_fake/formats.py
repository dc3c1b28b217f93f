"""The part of gcloud's ``--format`` language the fake supports: ``json``, ``yaml`` and
``value(KEY, ...)`` with dotted keys and ``[N]`` indexes (``value(status.url)``,
``value(spec.template.spec.containers[0].image)``). Anything else is refused with a message,
never silently printed in some other shape."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

VALUE_RE = re.compile(r"^value\((?P<keys>.*)\)$", re.S)
KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\[\d+\])*(\.[A-Za-z_][A-Za-z0-9_-]*(\[\d+\])*)*$")
SUPPORTED = "json, yaml, value(KEY[,KEY...])"


class FormatError(ValueError):
    pass


def parse(spec: str | None) -> tuple[str, list[str]]:
    """("default"|"json"|"yaml"|"value", keys)."""
    if spec is None or spec == "":
        return "default", []
    spec = spec.strip()
    if spec in ("json", "yaml"):
        return spec, []
    match = VALUE_RE.match(spec)
    if match:
        keys = [k.strip().strip("'\"") for k in match.group("keys").split(",") if k.strip()]
        if not keys or not all(KEY_RE.match(k) for k in keys):
            raise FormatError(f"invalid keys in --format={spec!r}")
        return "value", keys
    raise FormatError(f"the fake gcloud supports --format={SUPPORTED}; got {spec!r}")


def lookup(resource: Any, key: str) -> Any:
    current = resource
    for part in key.split("."):
        name, *indexes = re.split(r"\[", part)
        if isinstance(current, dict):
            current = current.get(name)
        else:
            return None
        for raw in indexes:
            index = int(raw.rstrip("]"))
            if isinstance(current, list) and -len(current) <= index < len(current):
                current = current[index]
            else:
                return None
    return current


def _value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        return ";".join(_value_text(v) for v in value)
    if isinstance(value, dict):
        return ";".join(f"{k}={_value_text(v)}" for k, v in value.items())
    return str(value)


def render(resources: list[Any], spec: tuple[str, list[str]], *, single: bool) -> str:
    """Text for stdout. ``single``: a describe (one resource) rather than a list."""
    kind, keys = spec
    if kind == "json":
        return json.dumps(resources[0] if single else resources, indent=2, sort_keys=True) + "\n"
    if kind == "yaml":
        if single:
            return yaml.safe_dump(resources[0], sort_keys=True)
        return "".join("---\n" + yaml.safe_dump(r, sort_keys=True) for r in resources)
    if kind == "value":
        lines = ["\t".join(_value_text(lookup(r, k)) for k in keys) for r in resources]
        return "".join(line + "\n" for line in lines)
    raise FormatError("default format has no generic rendering")


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    out = []
    for row in [headers, *rows]:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
    return "\n".join(out) + "\n"
