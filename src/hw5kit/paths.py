"""Where the repository is: the one place that works it out from this package's location.

The kit runs from a checkout (``pip install -e .`` of ``src/hw5kit``), so the repository root is
two levels above the package: ``<root>/src/hw5kit``. Commands that take ``--root`` use it as
their default; everything else (apps, templates, docs, reports) is found from it.

Standard library only: the noxfile imports ``hw5kit.devenv``, which imports this, before any
environment exists.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def pythonpath() -> str:
    """``PYTHONPATH`` for a child process running this checkout's code: ``src/`` first, then the
    caller's own ``PYTHONPATH``."""
    return os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)
