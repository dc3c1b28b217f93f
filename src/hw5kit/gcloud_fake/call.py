"""The types every part of the fake gcloud shares: a parsed command line (``Call``), what a
command hands back (``Result``) and the failure gcloud reports (``GcloudError``). Standard
library only, so that the parser (``cli.py``), the commands (``commands/``) and the models they
use (``iam.py``, ``cloudbuild.py``) import it without importing one another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..confined import Files, Plain

if TYPE_CHECKING:
    from .spec import Command


class GcloudError(Exception):
    """A failure gcloud reports as ``ERROR: (gcloud.CMD) MESSAGE``."""

    def __init__(self, message: str, code: int = 1, command: str = "gcloud"):
        super().__init__(message)
        self.message = message
        self.code = code
        self.command = command


@dataclass
class Call:
    command: Command
    flags: dict[str, str | bool]
    positionals: list[str]
    argv: list[str]
    env: Mapping[str, str]
    cwd: Path
    # how the command reads the files it names (the grader's is confined to the workspace)
    files: Files = field(default_factory=Plain)

    def flag(self, name: str, default=None):
        return self.flags.get(name, default)

    def error(self, message: str, code: int = 1) -> GcloudError:
        """The failure this command reports (``raise call.error(...)``): gcloud exits 1 for a
        refused request, 2 for a command line it cannot parse."""
        return GcloudError(message, code, self.command.dotted)


@dataclass
class Result:
    stdout: str = ""
    stderr: str = ""
    code: int = 0
    extra: dict = field(default_factory=dict)  # recorded in the call log
