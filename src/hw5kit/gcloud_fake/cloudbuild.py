"""Cloud Build's config file, as far as the HW5 pipeline and its grader need it: its schema and
its substitutions (the steps are simulated in ``simulation.py``, Docker's own rules are in
``docker.py``).

* ``load_config`` parses a config the way gcloud does (YAML or JSON, snake_case keys turned
  into camelCase, unknown keys refused) and checks it against ``cloudbuild.schema.json``,
  which encodes the fields of Google's reference (https://cloud.google.com/build/docs/build-config).
* ``apply_substitutions`` implements ``$VAR`` / ``${VAR}`` / ``$$``, the built-in variables,
  and the ``MUST_MATCH`` / ``ALLOW_LOOSE`` checks.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ..confined import Plain, Unreadable
from ..yamlsafe import yaml_limits_problem

SCHEMA_PATH = Path(__file__).with_name("cloudbuild.schema.json")
# the builder images whose steps run docker (the simulation runs their docker commands)
DOCKER_BUILDERS = ("gcr.io/cloud-builders/docker", "docker", "docker.io/library/docker")
# Built-in substitutions, replaced by "" when a build has no value for them.
BUILTINS = (
    "PROJECT_ID",
    "BUILD_ID",
    "PROJECT_NUMBER",
    "LOCATION",
    "SERVICE_ACCOUNT_EMAIL",
    "SERVICE_ACCOUNT",
    "TRIGGER_NAME",
    "COMMIT_SHA",
    "REVISION_ID",
    "SHORT_SHA",
    "REPO_NAME",
    "REPO_FULL_NAME",
    "BRANCH_NAME",
    "TAG_NAME",
    "REF_NAME",
    "TRIGGER_BUILD_CONFIG_PATH",
)
# The built-ins `gcloud builds submit --substitutions` may set (gcloud's help says so).
SETTABLE_BUILTINS = (
    "REPO_NAME",
    "BRANCH_NAME",
    "TAG_NAME",
    "REVISION_ID",
    "COMMIT_SHA",
    "SHORT_SHA",
)
USER_KEY_RE = re.compile(r"^_[A-Z0-9_]+$")
VAR_RE = re.compile(r"\$\$|\$\{([^}]*)\}|\$([A-Z_][A-Z0-9_]*)")


class ConfigProblem(ValueError):
    """The config cannot be submitted; the message is what gcloud would print after ERROR:."""


@cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def snake_to_camel(data: Any, *, top: bool = True) -> Any:
    """As gcloud does before parsing (substitution keys and env strings are left alone)."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            new_key = _camel(key) if isinstance(key, str) and not key.startswith("_") else key
            if new_key == "substitutions":
                out[new_key] = value
            else:
                out[new_key] = snake_to_camel(value, top=False)
        return out
    if isinstance(data, list):
        return [snake_to_camel(v, top=False) for v in data]
    return data


def schema_errors(data: Any) -> list[str]:
    """Every way ``data`` (camelCase) departs from the config schema, one line each."""
    import jsonschema  # only builds need it; the other commands start faster without it

    validator = jsonschema.Draft202012Validator(schema())
    out = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path) or "."
        if error.validator == "additionalProperties":
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            for key in extra:
                out.append(f"{where.rstrip('.')}.{key}: unused")
        elif error.validator == "required":
            out.append(f"{where}: {error.message}")
        else:
            out.append(f"{where}: {error.message}")
    return out


def load_config(path: Path) -> dict[str, Any]:
    """Read (as gcloud would, size-capped and non-blocking) and check a config file."""
    try:
        data = Plain().read(str(path), Path.cwd(), flag="--config")
    except Unreadable as exc:
        raise ConfigProblem(f"Unable to read file [{path}]: {exc.reason}") from None
    return parse_config(data, str(path))


def parse_config(raw: bytes, path: str) -> dict[str, Any]:
    """Parse and check a config's bytes; ConfigProblem with gcloud's wording otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigProblem(f"parsing {path}: not a text file") from None
    problem = yaml_limits_problem(text, path)  # the fake must not explode either
    if problem:
        raise ConfigProblem(problem)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigProblem(f"parsing {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigProblem(f"parsing {path}: Could not parse as a dictionary.")
    data = snake_to_camel(data)
    if "source" in data:
        raise ConfigProblem(f"invalid build config {path}: config cannot specify source")
    if not data.get("steps"):
        raise ConfigProblem(f"invalid build config {path}: config must list at least one step")
    for key in data.get("substitutions") or {}:
        if not isinstance(key, str) or not USER_KEY_RE.match(key):
            raise ConfigProblem(
                f"invalid build config {path}: substitution key {key} does not respect format "
                f"{USER_KEY_RE.pattern}"
            )
    errors = schema_errors(data)
    if errors:
        raise ConfigProblem(f"interpreting {path} as build config: " + "; ".join(errors))
    ids = [s.get("id") for s in data["steps"] if s.get("id")]
    seen: set[str] = set()
    for index, step in enumerate(data["steps"]):
        for dep in step.get("waitFor", []):
            if dep != "-" and dep not in seen:
                known = "unknown" if dep not in ids else "a later"
                raise ConfigProblem(
                    f"INVALID_ARGUMENT: invalid build: build step {index} waits for {known} "
                    f'step "{dep}" (waitFor names the id of an earlier step, or "-")'
                )
        if step.get("id"):
            if step["id"] in seen:
                raise ConfigProblem(
                    f'INVALID_ARGUMENT: invalid build: duplicate step id "{step["id"]}"'
                )
            seen.add(step["id"])
    return data


# --- substitutions -------------------------------------------------------------------------


def template_keys(value: Any) -> set[str]:
    """The substitution names a string (or nested list/dict of strings) refers to."""
    found: set[str] = set()
    if isinstance(value, str):
        for match in VAR_RE.finditer(value):
            name = match.group(1) or match.group(2)
            if name:
                found.add(name)
    elif isinstance(value, list):
        for v in value:
            found |= template_keys(v)
    elif isinstance(value, dict):
        for v in value.values():
            found |= template_keys(v)
    return found


def substitute(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1) or match.group(2)
            return values.get(name, "")

        return VAR_RE.sub(replace, value)
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, values) for k, v in value.items()}
    return value


# Where Cloud Build substitutes (not in ids or waitFor).
STEP_FIELDS = ("name", "args", "env", "dir", "entrypoint", "script", "secretEnv")


def substituted_parts(config: dict[str, Any]) -> dict[str, Any]:
    parts: dict[str, Any] = {
        "steps": [{k: s[k] for k in STEP_FIELDS if k in s} for s in config["steps"]],
        "images": config.get("images", []),
        "artifacts": config.get("artifacts", {}),
        "tags": config.get("tags", []),
        "logsBucket": config.get("logsBucket", ""),
        "options.env": (config.get("options") or {}).get("env", []),
    }
    return parts


def apply_substitutions(
    config: dict[str, Any], given: dict[str, str], builtins: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The config with substitutions applied, and the build's user substitutions.

    Raises ConfigProblem with Cloud Build's messages when MUST_MATCH checks fail."""
    for key in given:
        if not USER_KEY_RE.match(key) and key not in SETTABLE_BUILTINS:
            raise ConfigProblem(
                f"INVALID_ARGUMENT: generic::invalid_argument: invalid value for "
                f"'build.substitutions': key {key!r} is not a valid substitution key (user "
                "substitutions start with an underscore and use only uppercase letters, "
                "digits and underscores)"
            )
    user = dict(config.get("substitutions") or {})
    user.update(given)
    option = (config.get("options") or {}).get("substitutionOption", "MUST_MATCH")
    used = template_keys(substituted_parts(config))
    if option != "ALLOW_LOOSE":
        for key in sorted(used):
            if key.startswith("_") and key not in user:
                raise ConfigProblem(
                    "INVALID_ARGUMENT: generic::invalid_argument: key in the template "
                    f'"{key}" is not matched in the substitution data; substitutions = '
                    f"map[{' '.join(f'{k}:{v}' for k, v in sorted(user.items()))}]"
                )
        for key in sorted(user):
            if key not in used:
                raise ConfigProblem(
                    f'INVALID_ARGUMENT: generic::invalid_argument: key "{key}" in the '
                    "substitution data is not matched in the template"
                )
    values = {**dict.fromkeys(BUILTINS, ""), **builtins, **user}
    out = dict(config)
    out["steps"] = [
        {**s, **{k: substitute(s[k], values) for k in STEP_FIELDS if k in s}}
        for s in config["steps"]
    ]
    for key in ("images", "tags", "logsBucket", "artifacts"):
        if key in config:
            out[key] = substitute(config[key], values)
    if "options" in config and "env" in config["options"]:
        out["options"] = {**config["options"], "env": substitute(config["options"]["env"], values)}
    return out, user
