"""Where build, deploy and verify run: ``local`` (default), ``container``, ``gcp``.

Each target implements ``base.Target``: ``build(names)``, ``deploy(names)``, ``stop()`` and
``status()`` returning an exit status, writing the same deliverables layout
(``deliverables.py``) to its own file, and what ``verify`` asks of it (the gateway's key, the
commands and fixes it prints, each deployed service's provenance checks). ``get`` imports only
the chosen target's module: the gcp target runs in the light environment.
"""

from __future__ import annotations

import importlib

from ..project import PipelineError, Project
from .base import Target

TARGETS = {
    "local": ("local", "LocalTarget"),
    "container": ("container", "ContainerTarget"),
    "gcp": ("gcp", "GcpTarget"),
}


def get(project: Project) -> Target:
    """The target object for ``project.target``."""
    if project.target not in TARGETS:
        raise PipelineError(f"unknown target {project.target!r}")
    module, name = TARGETS[project.target]
    return getattr(importlib.import_module(f".{module}", __name__), name)(project)
