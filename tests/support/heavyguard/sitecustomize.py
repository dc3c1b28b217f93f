"""Heavy-import guard for the light environment's tests, plus the network guard.

Python imports ``sitecustomize`` at start-up from ``sys.path``; tests/test_light_env.py puts this
folder first on ``PYTHONPATH`` of every command it runs in the light environment (and so of
every Python process those commands start). An attempt to import one of ``$HEAVY_MODULES``
(comma-separated top-level names) is written to ``$HEAVY_LOG`` with its stack, even when the
caller catches the ImportError that follows (the light environment does not have them): a light
path that merely tries torch is caught too, not only one that needs it. The network guard
(``../netguard/sitecustomize.py``) is then loaded as well, as for every test subprocess.
"""

import importlib.util
import os
import sys
import traceback

_HEAVY = frozenset(filter(None, os.environ.get("HEAVY_MODULES", "").split(",")))
_LOG = os.environ.get("HEAVY_LOG")


class _HeavyImportRecorder:
    """A meta path finder that finds nothing: it only records the heavy names asked for."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in _HEAVY and _LOG:
            stack = "".join(traceback.format_stack(limit=15)[:-1])
            with open(_LOG, "a") as log:
                log.write(f"pid {os.getpid()} import {name} ({sys.argv[0]})\n{stack}\n")
        return None


sys.meta_path.insert(0, _HeavyImportRecorder())

_netguard = os.path.join(os.path.dirname(os.path.dirname(__file__)), "netguard", "sitecustomize.py")
_spec = importlib.util.spec_from_file_location("_hw5_netguard", _netguard)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
