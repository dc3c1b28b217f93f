"""What each allowed command does to the fake project state, and what it prints: one module per
gcloud command group (``config``, ``services``, ``projects``, ``artifacts``, ``builds``,
``run``, ``apigateway``, ``secrets``), with what they share in ``common``.

A handler takes the parsed ``Call`` and the locked state and returns a ``Result`` or raises
``GcloudError`` (``call.py``). ``spec.py`` names each command's handler as
``"module:function"``; ``handler`` finds it, importing only that group's module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..call import Call, Result

Handler = Callable[[Call, dict], Result]
GROUPS = ("config", "services", "projects", "artifacts", "builds", "run", "apigateway", "secrets")


def handler(name: str) -> Handler:
    """The function ``"module:function"`` names (a module of this package)."""
    module, sep, function = name.partition(":")
    if not sep or not module or not function:
        raise ValueError(f"a handler is named 'module:function', not {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), function)


def preload() -> None:
    """Import every group's module now (a server forking a child per call imports them once)."""
    for module in GROUPS:
        importlib.import_module(f".{module}", __name__)
