"""``gcloud config get-value / set``: the properties the kit and students' scripts use
(https://cloud.google.com/sdk/gcloud/reference/config/get-value: the value on stdout,
``(unset)`` on stderr; an environment variable ``CLOUDSDK_SECTION_NAME`` overrides)."""

from __future__ import annotations

from ..call import Call, Result

PROPERTIES = {
    "project": "core/project",
    "core/project": "core/project",
    "account": "core/account",
    "core/account": "core/account",
    "run/region": "run/region",
    "builds/region": "builds/region",
    "compute/region": "compute/region",
    "artifacts/location": "artifacts/location",
    # https://cloud.google.com/sdk/gcloud/reference/topic/gcloudignore: turns ignore files off
    "gcloudignore/enabled": "gcloudignore/enabled",
}


def _property(call: Call) -> str:
    name = call.positionals[0]
    prop = PROPERTIES.get(name)
    if prop is None:
        section, _, key = name.rpartition("/")
        raise call.error(
            f"Section [{section or 'core'}] has no property [{key}]. (fake gcloud: known "
            f"properties: {', '.join(sorted(set(PROPERTIES.values())))})",
        )
    return prop


def config_get_value(call: Call, state: dict) -> Result:
    prop = _property(call)
    env_name = "CLOUDSDK_" + prop.upper().replace("/", "_")
    value = call.env.get(env_name) or state["config"].get(prop)
    if not value:
        return Result(stderr="(unset)\n")
    return Result(stdout=f"{value}\n")


def config_set(call: Call, state: dict) -> Result:
    prop = _property(call)
    value = call.positionals[1]
    state["config"][prop] = value
    stderr = f"Updated property [{prop}].\n"
    if prop == "core/project" and value not in state["projects"]:
        stderr = (
            f"WARNING: You do not appear to have access to project [{value}] or it does not "
            "exist.\n" + stderr
        )
    return Result(stderr=stderr)
