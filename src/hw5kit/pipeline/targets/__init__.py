"""Where build, deploy and verify run: ``local`` (default), ``container``, ``gcp``.

Each target has ``build(names)``, ``deploy(names)``, ``stop()`` and ``status()`` returning an
exit status, and writes the same deliverables layout (``deliverables.py``) to its own file.
"""

from __future__ import annotations

from ..project import PipelineError, Project


def get(project: Project):
    """The target object for ``project.target``."""
    if project.target == "local":
        from .local import LocalTarget

        return LocalTarget(project)
    if project.target == "gcp":
        from .gcp import GcpTarget

        return GcpTarget(project)
    if project.target == "container":
        from .container import ContainerTarget

        return ContainerTarget(project)
    raise PipelineError(f"unknown target {project.target!r}")
