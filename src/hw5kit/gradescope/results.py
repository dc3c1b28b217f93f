"""Checking a results.json against Gradescope's documented format (``results.schema.json``,
written from https://gradescope-autograders.readthedocs.io/en/latest/specs/)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parent / "results.schema.json"


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def problems(data: Any) -> list[str]:
    """What in ``data`` departs from Gradescope's format (empty when it conforms)."""
    validator = jsonschema.Draft202012Validator(schema())
    out = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        out.append(f"{where}: {error.message}")
    return out


def load_checked(path: Path) -> dict[str, Any]:
    """The results.json at ``path`` when it is valid JSON in Gradescope's format, else
    ``ValueError`` saying why."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    found = problems(data)
    if found:
        raise ValueError(
            f"{path} does not follow Gradescope's results format: " + "; ".join(found[:10])
        )
    return data
