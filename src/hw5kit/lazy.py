"""Package exports imported on first use (PEP 562 ``__getattr__``), standard library only.

A package's ``__init__`` names what it exports and from which submodule; nothing is imported
until a name is used. This keeps ``import hw5kit.X.sub`` from importing X's heavier siblings
(the light environment has no serving stack), and ``python -m hw5kit.X.sub`` from running its
module twice.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``names[attr]`` (a submodule name,
    relative to the package) the first time ``attr`` is asked for."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(f".{names[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
