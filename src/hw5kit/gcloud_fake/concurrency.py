"""gcloud run in parallel: one configuration directory, several invocations at once.

gcloud keeps credentials and caches in SQLite databases inside its configuration directory
(``CLOUDSDK_CONFIG``, else ``~/.config/gcloud``: https://cloud.google.com/sdk/docs/
configurations). "Parallel execution of multiple gcloud CLI commands is not supported"
(https://cloud.google.com/sdk/docs/scripting-gcloud); when two invocations on one directory
collide, SQLite's lock surfaces as gcloud's crash report (``googlecloudsdk/command_lib/
crash_handling.py``, ``HandleGcloudCrash``; seen in public issues such as google/oss-fuzz-gen#163
and GoogleCloudPlatform/ops-agent#1645)::

    ERROR: gcloud crashed (OperationalError): database is locked

With the setting ``config_dir_crash`` on, an invocation that starts while another one on the same
configuration directory is running crashes at once, having done nothing, and the one already
running crashes when it ends, after doing its work (a build it created goes on in the cloud, its
``Created [...]`` line already printed). ``call_seconds`` makes every invocation last that long, so
that overlaps are certain in tests; ``slow`` ({"run deploy": 30, ...}) lengthens one command.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

from ..procs import pid_alive

RUNNING = "running"
CRASH = (
    "ERROR: gcloud crashed (OperationalError): database is locked\n\n"
    "If you would like to report this issue, please run the following command:\n"
    "  gcloud feedback\n\n"
    "To check gcloud for common problems, please run the following command:\n"
    "  gcloud info --run-diagnostics\n"
)


def config_dir(env: Mapping[str, str]) -> str:
    """The configuration directory an invocation uses, as gcloud finds it (on POSIX)."""
    raw = env.get("CLOUDSDK_CONFIG") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".config", "gcloud"
    )
    return os.path.realpath(raw)


class Session:
    """One invocation's use of its configuration directory (a file under ``state/running/``)."""

    def __init__(self, state_dir: Path, env: Mapping[str, str], enabled: bool):
        self.enabled = enabled
        self.folder = Path(state_dir) / RUNNING
        self.config = config_dir(env)
        self.me = self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.json"
        self.crashed_at_start = False

    def __enter__(self) -> Session:
        if not self.enabled:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for other in self.folder.glob("*.json"):
                try:
                    entry = json.loads(other.read_text())
                except (OSError, ValueError):
                    continue
                if entry.get("config") != self.config:
                    continue
                if not pid_alive(int(entry.get("pid", 0))):
                    other.unlink(missing_ok=True)
                    continue
                self.crashed_at_start = True
                other.with_suffix(".collided").touch()
            self.me.write_text(json.dumps({"pid": os.getpid(), "config": self.config}))
        return self

    def collided(self) -> bool:
        """Did another invocation on the same directory start while this one ran?"""
        return self.enabled and self.me.with_suffix(".collided").exists()

    def __exit__(self, *exc) -> None:
        if self.enabled:
            with contextlib.suppress(OSError):
                self.me.unlink()
                self.me.with_suffix(".collided").unlink(missing_ok=True)
