"""The staff's options for the Gradescope bundle: one small YAML file, ``autograder.yaml``.

The default is ``files/autograder.yaml`` beside this module (commented for staff); ``nox -s
gradescope -- --config FILE`` takes another. It is checked when the bundle is built and again
by ``run_autograder`` before each grading: unknown keys and bad values are refused with a
message naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import yaml

DEFAULT = Path(__file__).resolve().parent / "files" / "autograder.yaml"
# Gradescope's visibility values (https://gradescope-autograders.readthedocs.io/en/latest/specs/
# "Controlling Test Case Visibility")
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
SANDBOXES = ("auto", "bwrap", "user")  # never "none": other people's scripts
# Gradescope lets staff raise an assignment's timeout to 40 minutes at most
# (https://gradescope-autograders.readthedocs.io/en/latest/troubleshooting/)
GRADESCOPE_MAX_TIMEOUT = 40 * 60


class ConfigError(ValueError):
    """The config file is unreadable or holds a bad value; the message names the key."""


@dataclass(frozen=True)
class Config:
    visibility: str = "visible"
    live: bool = False
    script_timeout: float = 30.0
    time_limit: float = 480.0
    sandbox: str = "auto"

    def grader_args(self) -> list[str]:
        """The options ``python -m hw5kit.grading`` gets for these settings."""
        args = ["--visibility", self.visibility, "--timeout", f"{self.script_timeout:g}"]
        args += ["--sandbox", self.sandbox]
        if self.live:
            args.append("--live")
        return args


KEYS = {f.name for f in fields(Config)}


def parse(data: object, where: str = "autograder.yaml") -> Config:
    """A ``Config`` from the file's parsed YAML; ``ConfigError`` naming the bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: expected keys and values (a mapping), not {type(data).__name__}"
        )
    unknown = sorted(str(k) for k in data if k not in KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; the keys are {', '.join(sorted(KEYS))}"
        )
    values = {**{f.name: f.default for f in fields(Config)}, **data}
    if values["visibility"] not in VISIBILITIES:
        raise ConfigError(
            f"{where}: visibility {values['visibility']!r} must be one of {', '.join(VISIBILITIES)}"
        )
    if values["sandbox"] not in SANDBOXES:
        raise ConfigError(
            f"{where}: sandbox {values['sandbox']!r} must be one of {', '.join(SANDBOXES)}"
        )
    if not isinstance(values["live"], bool):
        raise ConfigError(f"{where}: live must be true or false, not {values['live']!r}")
    for key in ("script_timeout", "time_limit"):
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{where}: {key} must be a positive number of seconds, not {value!r}")
        values[key] = float(value)
    if values["time_limit"] > GRADESCOPE_MAX_TIMEOUT:
        raise ConfigError(
            f"{where}: time_limit {values['time_limit']:g} s is above Gradescope's largest "
            f"autograder timeout ({GRADESCOPE_MAX_TIMEOUT} s)"
        )
    if values["time_limit"] < 2 * values["script_timeout"]:
        raise ConfigError(
            f"{where}: time_limit ({values['time_limit']:g} s) must leave room for several "
            f"scripts of script_timeout ({values['script_timeout']:g} s) each: make it at least "
            "twice as long"
        )
    return Config(**values)


def load(path: Path | None = None) -> Config:
    path = Path(path or DEFAULT)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse(data, str(path))
