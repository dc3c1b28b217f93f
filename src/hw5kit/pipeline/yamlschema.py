"""The one way the pipeline checks its YAML files: JSON Schema (2020-12), with ``jsonschema``.

``deployment.yaml`` follows ``deployment.schema.json`` and ``deliverables*.yaml`` follow
``deliverables.schema.json`` (both in this package). Each file's module turns the validator's
errors into its own messages (``config.py``: the key, the value found and what is expected;
``deliverables.py``: the entry, the problem and the command that fixes it); what the schema
cannot say (one value against another: min_instances against max_instances, a frontend's
backend, the deliverables' URLs against the target) is checked in Python after it passes.

Two conventions of the kit's schemas, both ignored by other JSON Schema tools (an editor with
the schema still checks everything else):

* **Several spellings of one value.** YAML types scalars by their look: ``cpu: 2`` is a number,
  ``serving_port: "8000"`` a string. A property whose ``type`` lists several types is read as
  the first one listed; ``read_as`` converts the others to it before validation (a number to
  its text, a string of digits to an integer). A property with a single type is strict
  (``student_id`` must be quoted: an unquoted number loses its leading zeros). ``read_as`` also
  strips the spaces around any text a ``pattern`` or an ``enum`` checks.
* **Messages.** ``description`` says what a key holds (listed when a key is unknown or
  missing); ``x-expected`` is the "expected ..." of an error when it differs; ``x-messages``
  maps a failed keyword (``type``, ``pattern``, ``not``, ...) to a whole message, in which
  ``{value}`` is the value found.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

HERE = Path(__file__).resolve().parent


@cache
def load(name: str) -> dict:
    """The schema ``name`` (a file of this package), parsed once."""
    return json.loads((HERE / name).read_text())


def dotted(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts)


def resolve(schema: Mapping, root: Mapping) -> Mapping:
    """``schema`` with its local ``$ref`` (``#/$defs/...``) followed."""
    while "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def errors(schema: Mapping, data: Any) -> list[jsonschema.ValidationError]:
    """Every violation of ``schema`` in ``data``, ordered by where it is (then by the order of
    the schema's keywords, so the first error at a place is the one its schema lists first)."""
    validator = jsonschema.Draft202012Validator(schema)
    return sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])


def read_as(data: Any, schema: Mapping, root: Mapping | None = None) -> Any:
    """A copy of ``data`` with each value read as its schema's first type (module docstring)."""
    root = schema if root is None else root
    schema = resolve(schema, root)
    if isinstance(data, Mapping):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out = {}
        for key, value in data.items():
            sub = properties.get(key, extra if isinstance(extra, Mapping) else None)
            out[key] = read_as(value, sub, root) if sub is not None else value
        return out
    if isinstance(data, bool):  # YAML's true/false: never another type's spelling
        return data
    types = schema.get("type")
    first = types[0] if isinstance(types, list) else None
    if first == "string" and isinstance(data, int | float):
        data = str(data)
    elif first == "integer" and isinstance(data, str) and data.strip().isdigit():
        return int(data.strip())
    if isinstance(data, str) and ("pattern" in schema or "enum" in schema):
        return data.strip()
    return data
