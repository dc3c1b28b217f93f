"""Where a submission keeps its files, in the course's layout and in the older ones students
still copy, each read with a note saying what was found and what the course asks for.

* The course (2024, 2025): ``deployment/cloudbuild.yaml``, one ``deployment/submit_build.sh``
  (run once per image), ``deployment/deploy_<app>.sh``, ``deliverables.yaml`` holding a
  ``build_id`` and a ``service_url`` per service.
* Files at the top of the folder instead of ``deployment/``: read there (``Snapshot.locate``
  looks in ``deployment/`` first, then at the top; the runs copy them into ``deployment/``).
* One Cloud Build file and one submit script per service (2023: ``cloudbuild_backend_v1.yaml``,
  ``submit_build_backend_v1.sh``, ...): every submit script runs, and each build is graded for
  the service it builds.
* ``deliverables.yaml`` with a bare URL per service (2023: ``back_end: https://...``): the URL
  is read as the service's ``service_url``; there is no build ID to read.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .submission import FileProblem, Snapshot, load_yaml

SUBMIT_NAMES = ("submit_build.sh", "submit_build_template.sh")
CONFIG_NAMES = ("cloudbuild.yaml", "cloudbuild.yml", "cloudbuild_template.yaml")
FOLDERS = ("deployment", "")
PARTS = {"back_end": "backend", "front_end": "frontend"}
COURSE_DELIVERABLES = "services -> v1, v2 -> back_end, front_end -> build_id, service_url"


def _candidates(snapshot: Snapshot, accept) -> list[str]:
    """Files of deployment/ then of the top that ``accept`` their name, one per name."""
    out: dict[str, str] = {}
    for folder in FOLDERS:
        for rel in snapshot.files(folder):
            name = Path(rel).name
            if accept(name.lower()) and name not in out:
                out[name] = rel
    return sorted(out.values(), key=lambda rel: (rel.count("/") == 0, rel))


def locate_submits(snapshot: Snapshot) -> tuple[list[str], list[str]]:
    """The submit script(s) to run, and notes on the layout."""
    for name in SUBMIT_NAMES:
        rel = snapshot.locate(name)
        if rel:
            return [rel], []
    found = _candidates(snapshot, lambda n: n.startswith("submit") and n.endswith(".sh"))
    if len(found) > 1:
        names = ", ".join(found)
        return found, [
            f"{len(found)} submit scripts ({names}): one per service, an older layout of the "
            "course; each one runs and its build is graded for the service it builds (the "
            "course now asks for one deployment/submit_build.sh, run once per image)"
        ]
    return found, []


def _has_steps(snapshot: Snapshot, rel: str) -> bool:
    with contextlib.suppress(FileProblem):
        data = load_yaml(snapshot.read_text(rel), rel)
        return isinstance(data, dict) and "steps" in data
    return False


def locate_configs(snapshot: Snapshot) -> tuple[list[str], list[str]]:
    """The Cloud Build file(s) to read when no build tells which one it used, and notes."""
    for name in CONFIG_NAMES:
        rel = snapshot.locate(name)
        if rel:
            return [rel], []
    skip = ("deliverables.yaml", "deployment.yaml")
    found = [
        rel
        for rel in _candidates(snapshot, lambda n: n.endswith((".yaml", ".yml")) and n not in skip)
        if _has_steps(snapshot, rel)
    ]
    if len(found) > 1:
        return found, [
            f"{len(found)} Cloud Build files ({', '.join(found)}): one per service, an older "
            "layout of the course; each is graded for the service it builds (the course now "
            "asks for one deployment/cloudbuild.yaml driven by substitutions)"
        ]
    return found, []


def app_named_in(name: str, apps: tuple[str, ...] | list[str]) -> str | None:
    """The app a per-service file is for, from its name (``cloudbuild_backend_v1.yaml``)."""
    lowered = name.lower().replace("-", "_")
    for app in sorted(apps, key=len, reverse=True):
        if app in lowered:
            return app
    return None


# --- deliverables.yaml -------------------------------------------------------------------------


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.strip().startswith(("https://", "http://"))


def _flat_key(key: Any) -> tuple[str, str] | None:
    """``backend_v1`` -> ("v1", "back_end")."""
    kind, _, version = str(key).partition("_")
    part = {v: k for k, v in PARTS.items()}.get(kind)
    return (version, part) if part and version[:1] == "v" and version[1:].isdigit() else None


def normalize_deliverables(data: Any) -> tuple[Any, list[str]]:
    """``data`` in the course's layout when it holds bare URLs per service (an older layout:
    ``services.v1.back_end: URL``, or ``backend_v1: URL``), and a note on what was read that
    way; anything else is returned unchanged."""
    if not isinstance(data, Mapping):
        return data, []
    out = copy.deepcopy(dict(data))
    services = out.get("services")
    services = dict(services) if isinstance(services, Mapping) else {}
    found: list[str] = []

    def put(version: str, part: str, url: str) -> None:
        entry = services.get(version)
        entry = dict(entry) if isinstance(entry, Mapping) else {}
        entry[part] = {"build_id": None, "service_url": url.strip()}
        services[version] = entry

    for version, parts in list(services.items()):
        if isinstance(parts, Mapping):
            for part, value in parts.items():
                if part in PARTS and _is_url(value):
                    found.append(f"services.{version}.{part}")
                    put(str(version), part, value)
    for prefix, container in (("services.", services), ("", out)):
        for key in list(container):
            slot = _flat_key(key)
            if slot and _is_url(container[key]):
                found.append(f"{prefix}{key}")
                value = container.pop(key)
                put(*slot, value)
    if not found:
        return data, []
    out["services"] = services
    note = (
        f"deliverables.yaml gives a bare URL per service ({', '.join(found)}), an older layout "
        "of the course: each URL is read as the service's service_url, and there is no build "
        f"ID to read (the course asks for {COURSE_DELIVERABLES})"
    )
    return out, [note]
