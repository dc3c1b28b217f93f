"""``deliverables.yaml``: reading, checking against ``deliverables.schema.json``, and rewriting.

The course's layout is kept exactly (``services`` -> ``v1``/``v2`` -> ``back_end``/``front_end``
-> ``build_id``/``service_url``, with the course's "Paste ..." comments on empty values), so an
all-empty file renders back into the course's template byte for byte.

Writes are atomic (a temporary file renamed over the old one): a failed or interrupted
build/deploy leaves either the previous file or the new one, never half of one. ``update``
merges the entries that succeeded into whatever the file held.

Each target has its own file: ``deliverables.yaml`` (gcp, the one the course grades),
``deliverables.local.yaml`` and ``deliverables.container.yaml`` (git-ignored).
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).with_name("deliverables.schema.json")
FILES = {
    "gcp": "deliverables.yaml",
    "local": "deliverables.local.yaml",
    "container": "deliverables.container.yaml",
}
FIELDS = ("build_id", "service_url")
PARTS = ("back_end", "front_end")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
LOCAL_HEADER = (
    "# Written by `nox -s build` and `nox -s deploy` on the {target} target (same layout and\n"
    "# schema as deliverables.yaml, which holds the Google Cloud deployment). Not committed.\n"
)

Data = dict[str, Any]


class DeliverablesError(ValueError):
    """The file cannot be read as deliverables at all (missing, not YAML, wrong shape)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the deliverables: where, what, and what to do about it."""

    where: str  # e.g. services.v1.back_end.build_id
    message: str
    fix: str
    kind: str = "layout"  # layout (keys, types) | empty (a value not filled in) | value

    def __str__(self) -> str:
        return f"{self.where}: {self.message}; {self.fix}"


def path_for(root: Path, target: str) -> Path:
    return root / FILES[target]


@cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def empty(versions: tuple[str, ...] = ("v1", "v2")) -> Data:
    return {"services": {v: {p: dict.fromkeys(FIELDS) for p in PARTS} for v in versions}}


# --- reading -------------------------------------------------------------------------------


def parse(text: str, source: str = "deliverables.yaml") -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DeliverablesError(
            f"{source}{where}: not valid YAML: {problem}; fix the syntax, or restore the "
            f"course's template with `git checkout {Path(source).name}` and run the build and "
            "deploy again"
        ) from None


def read(path: Path) -> Any:
    """The parsed YAML of ``path`` (anything YAML can hold); DeliverablesError if unreadable."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DeliverablesError(
            f"{path}: not found; run the build and deploy first (`nox -s build deploy`)"
        ) from None
    except UnicodeDecodeError:
        raise DeliverablesError(f"{path}: not a text file; restore it from git") from None
    return parse(text, str(path))


def load_for_update(path: Path) -> Data:
    """The current contents to merge new entries into: the course's empty layout when the file
    does not exist; DeliverablesError when it exists but is not in the course's layout (it is
    not overwritten then: nothing a person typed is lost)."""
    if not path.exists():
        return empty()
    data = read(path)
    if data is None:
        return empty()
    shape = shape_problems(data)
    if shape:
        listing = "; ".join(str(p) for p in shape)
        raise DeliverablesError(
            f"{path} is not in the course's layout, so it was left untouched: {listing}"
        )
    return data


def shape_problems(data: Any) -> list[Problem]:
    """Layout problems only (missing or unknown keys, wrong types), not empty values."""
    return [p for p in problems(data) if p.kind == "layout"]


# --- checking ------------------------------------------------------------------------------

RESTORE = (
    "keep the course's layout: services -> v1, v2 -> back_end, front_end -> build_id, "
    "service_url (`git checkout deliverables.yaml` restores the template)"
)


def _dotted(parts) -> str:
    return ".".join(str(p) for p in parts) or "(top level)"


def _hint(field: str, target: str) -> str:
    flag = "" if target == "local" else f" -- --target {target}"
    if field == "build_id":
        if target == "gcp":
            return (
                f"run `nox -s build{flag}` (it records each build's ID here), or paste the ID "
                "that `deployment/submit_build.sh` printed (Created [.../builds/BUILD_ID])"
            )
        return f"run `nox -s build{flag}`"
    if target == "gcp":
        return (
            f"run `nox -s deploy{flag}`, or paste the URL that `gcloud run services describe "
            "SERVICE --region=REGION --format='value(status.url)'` prints"
        )
    return f"run `nox -s deploy{flag}`"


def _describe(error: jsonschema.ValidationError, target: str) -> Problem:
    path = list(error.absolute_path)
    where = _dotted(["services", *path[1:]] if path[:1] == ["services"] else path)
    field = path[-1] if path else ""
    value = error.instance
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in (value or {})]
        key = f"{where}.{missing[0]}" if path else missing[0]
        return Problem(key, "missing", RESTORE)
    if error.validator == "additionalProperties":
        extra = sorted(set(value) - set(error.schema.get("properties", {})))
        names = ", ".join(map(str, extra))
        return Problem(where, f"unknown key(s) {names}", RESTORE)
    if field in FIELDS and (value is None or value == ""):
        return Problem(where, "empty", _hint(str(field), target), "empty")
    if field == "build_id":
        return Problem(
            where,
            f"{value!r} is not a build ID (a UUID such as 0b5c2e4a-91d3-4f6e-8a7b-2c3d4e5f6a7b)",
            _hint("build_id", target),
            "value",
        )
    if field == "service_url":
        expected = (
            "https://<service>-<hash>-uc.a.run.app"
            if target == "gcp"
            else "http://127.0.0.1:<port>"
        )
        return Problem(
            where,
            f"{value!r} is not a service URL (expected {expected})",
            _hint(field, target),
            "value",
        )
    if error.validator == "type":
        kind = type(value).__name__ if value is not None else "nothing"
        return Problem(where, f"expected a mapping, found {kind}", RESTORE)
    return Problem(where, error.message, RESTORE)


def problems(data: Any, target: str = "gcp") -> list[Problem]:
    """Every schema violation, as actionable problems, in file order."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    found = [_describe(e, target) for e in errors]
    if target == "gcp" and isinstance(data, Mapping):
        found += _gcp_problems(data)
    if target != "gcp":
        found += _local_problems(data)
    unique: dict[str, Problem] = {}
    for problem in found:  # one problem per entry: the schema's, if it has one
        unique.setdefault(problem.where, problem)
    return list(unique.values())


def _entries(data: Any):
    services = data.get("services") if isinstance(data, Mapping) else None
    if not isinstance(services, Mapping):
        return
    for version, parts in services.items():
        if not isinstance(parts, Mapping):
            continue
        for part, entry in parts.items():
            if isinstance(entry, Mapping):
                yield f"services.{version}.{part}", entry


def _gcp_problems(data: Mapping) -> list[Problem]:
    out = []
    for where, entry in _entries(data):
        url = entry.get("service_url")
        if isinstance(url, str) and url.startswith("http://"):
            out.append(
                Problem(
                    f"{where}.service_url",
                    f"{url!r} is a local address; deliverables.yaml holds the Cloud Run URL",
                    _hint("service_url", "gcp"),
                    "value",
                )
            )
    return out


def _local_problems(data: Any) -> list[Problem]:
    out = []
    for where, entry in _entries(data):
        url = entry.get("service_url")
        if isinstance(url, str) and url.startswith("https://"):
            out.append(
                Problem(
                    f"{where}.service_url",
                    f"{url!r} is a Cloud Run URL in a local deliverables file",
                    "run `nox -s deploy` for this target",
                    "value",
                )
            )
    return out


# --- writing -------------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    text = str(value)
    if yaml.safe_load(text) == text and "#" not in text and text.strip() == text:
        return text
    return json.dumps(text)


def _label(part: str, version: str) -> str:
    return f"{part.replace('_', ' ')} {version.upper()}"


def dump(data: Data, header: str = "") -> str:
    """The course's layout, with its comments on empty values."""
    lines = [header.rstrip("\n")] if header else []
    lines.append("services:")
    versions = list(data["services"].items())
    for index, (version, parts) in enumerate(versions):
        lines.append(f"  {version}:")
        for part, entry in parts.items():
            lines.append(f"    {part}:")
            label = _label(part, version)
            for field in FIELDS:
                value = entry.get(field)
                if value in (None, ""):
                    what = (
                        f"the build ID of the Cloud Build for {label}"
                        if field == "build_id"
                        else f"the URL of the Cloud Run service for {label}"
                    )
                    lines.append(f"      {field}: # Paste {what}")
                else:
                    lines.append(f"      {field}: {_scalar(value)}")
        if index < len(versions) - 1:
            lines.append("")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def update(
    path: Path,
    changes: Mapping[tuple[str, str], Mapping[str, str | None]],
    *,
    target: str = "gcp",
) -> Data:
    """Merge ``{(version, part): {field: value}}`` into the file, atomically; return the data."""
    data = copy.deepcopy(load_for_update(path))
    services = data.setdefault("services", {})
    for (version, part), fields in changes.items():
        entry = services.setdefault(version, {}).setdefault(part, dict.fromkeys(FIELDS))
        for field, value in fields.items():
            if field not in FIELDS:
                raise ValueError(f"unknown deliverables field {field!r}")
            entry[field] = value
    header = "" if target == "gcp" else LOCAL_HEADER.format(target=target)
    write_atomic(path, dump(data, header))
    return data


def entry(data: Any, version: str, part: str) -> Mapping[str, Any]:
    """The entry at ``services.<version>.<part>`` or an empty mapping."""
    try:
        found = data["services"][version][part]
    except (KeyError, TypeError):
        return {}
    return found if isinstance(found, Mapping) else {}
