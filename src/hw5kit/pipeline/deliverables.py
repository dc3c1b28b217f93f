"""``deliverables.yaml``: reading, checking against ``deliverables.schema.json`` (the way
``deployment.yaml`` is checked: ``yamlschema``), and rewriting.

The course's layout is kept exactly (``services`` -> ``v1``/``v2`` -> ``back_end``/``front_end``
-> ``build_id``/``service_url``, with the course's "Paste ..." comments on empty values), so an
all-empty file renders back into the course's template byte for byte.

Writes are atomic (a temporary file renamed over the old one): a failed or interrupted
build/deploy leaves either the previous file or the new one, never half of one. ``update``
merges the entries that succeeded into whatever the file held.

An optional ``v3`` block follows (``gateway_url``, ``backends`` -> one entry per model,
``front_end``): it is written only once a v3 service is built or deployed, so a file without v3
stays the course's template.

Each target has its own file: ``deliverables.yaml`` (gcp, the one the course grades),
``deliverables.local.yaml`` and ``deliverables.container.yaml`` (git-ignored).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .. import naming
from . import rerun, yamlschema

SCHEMA = "deliverables.schema.json"
SCHEMA_PATH = yamlschema.HERE / SCHEMA
FILES = {
    "gcp": "deliverables.yaml",
    "local": "deliverables.local.yaml",
    "container": "deliverables.container.yaml",
}
FIELDS = ("build_id", "service_url")
PARTS = ("back_end", "front_end")
GATEWAY_URL = "gateway_url"
UUID_RE = naming.BUILD_ID_RE  # a Cloud Build ID (hw5kit.naming)
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


def schema() -> dict:
    return yamlschema.load(SCHEMA)


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
    return yamlschema.dotted(parts) or "(top level)"


def _hint(field: str, target: str) -> str:
    build, deploy = (rerun.command(target, session) for session in ("build", "deploy"))
    if field == GATEWAY_URL:
        if target == "gcp":
            return (
                f"run `{rerun.command(target, 'deploy', 'backend_v3')}` (it creates the gateway "
                "and records its URL), or paste https:// and the defaultHostname `gcloud "
                "api-gateway gateways describe GATEWAY --location=REGION` prints"
            )
        return f"run `{deploy}`"
    if field == "build_id":
        if target == "gcp":
            return (
                f"run `{build}` (it records each build's ID here), or paste the ID "
                "that `deployment/submit_build.sh` printed (Created [.../builds/BUILD_ID])"
            )
        return f"run `{build}`"
    if target == "gcp":
        return (
            f"run `{deploy}`, or paste the URL that `gcloud run services describe "
            "SERVICE --region=REGION --format='value(status.url)'` prints"
        )
    return f"run `{deploy}`"


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
    if (field in FIELDS or field == GATEWAY_URL) and (value is None or value == ""):
        return Problem(where, "empty", _hint(str(field), target), "empty")
    if field == GATEWAY_URL:
        expected = (
            "https://<gateway>-<hash>.<region>.gateway.dev"
            if target == "gcp"
            else "http://127.0.0.1:<port>"
        )
        return Problem(
            where,
            f"{value!r} is not an API gateway URL (expected {expected})",
            _hint(field, target),
            "value",
        )
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
    found = [_describe(e, target) for e in yamlschema.errors(schema(), data)]
    if target == "gcp" and isinstance(data, Mapping):
        found += _gcp_problems(data)
    if target != "gcp":
        found += _local_problems(data)
    unique: dict[str, Problem] = {}
    for problem in found:  # one problem per entry: the schema's, if it has one
        unique.setdefault(problem.where, problem)
    return list(unique.values())


def _urls(data: Any, where: str = "services"):
    """(dotted key, URL) of every service_url and gateway_url, at any depth."""
    node = data.get("services") if where == "services" and isinstance(data, Mapping) else data
    if not isinstance(node, Mapping):
        return
    for key, value in node.items():
        if key in ("service_url", GATEWAY_URL):
            if isinstance(value, str):
                yield f"{where}.{key}", value
        elif isinstance(value, Mapping):
            yield from _urls(value, f"{where}.{key}")


def filled_urls(data: Any):
    """(dotted key, URL) of every URL filled in (service and gateway URLs)."""
    return ((where, url) for where, url in _urls(data) if url)


def _gcp_problems(data: Mapping) -> list[Problem]:
    out = []
    for where, url in _urls(data):
        if url.startswith("http://"):
            out.append(
                Problem(
                    where,
                    f"{url!r} is a local address; deliverables.yaml holds the Cloud Run URL",
                    _hint(where.rsplit(".", 1)[1], "gcp"),
                    "value",
                )
            )
    return out


def _local_problems(data: Any) -> list[Problem]:
    out = []
    for where, url in _urls(data):
        if url.startswith("https://"):
            out.append(
                Problem(
                    where,
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


def _dump_entry(lines: list[str], entry: Mapping, indent: str, label: str) -> None:
    for field in FIELDS:
        value = entry.get(field)
        if value in (None, ""):
            what = (
                f"the build ID of the Cloud Build for {label}"
                if field == "build_id"
                else f"the URL of the Cloud Run service for {label}"
            )
            lines.append(f"{indent}{field}: # Paste {what}")
        else:
            lines.append(f"{indent}{field}: {_scalar(value)}")


def dump(data: Data, header: str = "") -> str:
    """The course's layout, with its comments on empty values (and the optional v3 block)."""
    lines = [header.rstrip("\n")] if header else []
    lines.append("services:")
    versions = list(data["services"].items())
    for index, (version, parts) in enumerate(versions):
        lines.append(f"  {version}:")
        for part, entry in parts.items():
            if part == GATEWAY_URL:
                if entry in (None, ""):
                    lines.append(
                        f"    {part}: # Paste the URL of the API gateway for {version.upper()}"
                    )
                else:
                    lines.append(f"    {part}: {_scalar(entry)}")
                continue
            if part == "backends" and not entry:
                lines.append(f"    {part}: {{}}  # one entry per model, written by build/deploy")
                continue
            lines.append(f"    {part}:")
            if part == "backends" and isinstance(entry, Mapping):
                for model, model_entry in entry.items():
                    lines.append(f"      {model}:")
                    label = f"back end {version.upper()} ({model})"
                    _dump_entry(lines, model_entry, "        ", label)
                continue
            _dump_entry(lines, entry, "      ", _label(part, version))
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


def _v3_block() -> Data:
    return {GATEWAY_URL: None, "backends": {}, "front_end": dict.fromkeys(FIELDS)}


def update(
    path: Path,
    changes: Mapping[tuple[str, ...], Mapping[str, str | None]],
    *,
    target: str = "gcp",
    gateway_url: tuple[str, str | None] | None = None,
) -> Data:
    """Merge ``{(version, part): {field: value}}`` (v3 backends: ``("v3", "backends", model)``)
    into the file, atomically; ``gateway_url=(version, url)`` sets a version's gateway URL.
    Return the data."""
    data = copy.deepcopy(load_for_update(path))
    services = data.setdefault("services", {})
    for key, fields in changes.items():
        version = key[0]
        node = services.setdefault(version, _v3_block() if version == "v3" else {})
        for part in key[1:]:
            node = node.setdefault(part, {} if part == "backends" else dict.fromkeys(FIELDS))
        for field in FIELDS:
            node.setdefault(field, None)
        for field, value in fields.items():
            if field not in FIELDS:
                raise ValueError(f"unknown deliverables field {field!r}")
            node[field] = value
    if gateway_url is not None:
        version, url = gateway_url
        services.setdefault(version, _v3_block())[GATEWAY_URL] = url
    header = "" if target == "gcp" else LOCAL_HEADER.format(target=target)
    write_atomic(path, dump(data, header))
    return data


def entry(data: Any, *key: str) -> Mapping[str, Any]:
    """The entry at ``services.<version>.<part>`` (or ``services.v3.backends.<model>``), or an
    empty mapping."""
    found = data.get("services") if isinstance(data, Mapping) else None
    for part in key:
        found = found.get(part) if isinstance(found, Mapping) else None
    return found if isinstance(found, Mapping) else {}


def gateway_url(data: Any, version: str = "v3") -> str | None:
    found = entry(data, version).get(GATEWAY_URL)
    return str(found) if found else None
