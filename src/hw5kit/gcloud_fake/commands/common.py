"""What the command groups share: the project, region and API a command works on, its
output format, the read of list and dict flags, and the project a seed or command creates.

Messages follow the real gcloud 528's wording where the kit or a student would see them.
"""

from __future__ import annotations

import re

from .. import formats, iam
from ..call import Call
from ..state import API_TITLES, new_project


def output_format(call: Call) -> tuple[str, list[str]]:
    try:
        return formats.parse(call.flag("--format"))
    except formats.FormatError as exc:
        raise call.error(str(exc)) from None


def project_of(call: Call, state: dict) -> tuple[str, dict]:
    project = (
        call.flag("--project")
        or call.env.get("CLOUDSDK_CORE_PROJECT")
        or state["config"].get("core/project")
    )
    if not project:
        raise call.error(
            "The required property [project] is not currently set.\nIt can be set on a "
            "per-command basis by re-running your command with the [--project] flag.\n\n"
            "You may set it for your current workspace by running:\n\n"
            "  $ gcloud config set project VALUE"
        )
    data = state["projects"].get(project)
    if data is None:
        raise call.error(
            f"PERMISSION_DENIED: Permission denied on resource project {project}. (The fake "
            f"gcloud knows the projects: {', '.join(sorted(state['projects'])) or 'none'}.)",
        )
    return project, data


def need_api(call: Call, project: str, data: dict, api: str) -> None:
    if api not in data["apis"]:
        title = API_TITLES.get(api, api)
        raise call.error(
            f"PERMISSION_DENIED: {title} has not been used in project {data['number']} before "
            f"or it is disabled. Enable it by visiting https://console.developers.google.com/"
            f"apis/api/{api}/overview?project={data['number']} then retry. If you enabled this "
            "API recently, wait a few minutes for the action to propagate to our systems and "
            f"retry. (fake gcloud: gcloud services enable {api} --project={project})"
        )


def region_of(call: Call, state: dict, prop: str, *, default: str | None = None) -> str:
    region = (
        call.flag("--region")
        or call.env.get("CLOUDSDK_" + prop.upper().replace("/", "_"))
        or state["config"].get(prop)
        or default
    )
    if not region:
        raise call.error(
            "Missing required argument [--region]: You must specify a region. Either use the "
            f"`--region` flag or set the {prop} property."
        )
    return region


def describe_output(call: Call, resource: dict) -> str:
    spec = output_format(call)
    if spec[0] == "default":
        spec = ("yaml", [])
    return formats.render([resource], spec, single=True)


def split_list(raw: str) -> list[str]:
    delimiter = ","
    match = re.match(r"^\^([^^]+)\^", raw)
    if match:
        delimiter = match.group(1)
        raw = raw[match.end() :]
    return [item for item in raw.split(delimiter) if item != ""]


def public_view(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k != "fake"}


def active_account(state: dict) -> str:
    return state["config"].get("core/account") or "student@example.com"


def ensure_project(state: dict, project_id: str) -> dict:
    data = state["projects"].setdefault(project_id, new_project(project_id))
    iam.project_policy(data)
    # the Compute Engine default service account exists (Cloud Build runs builds as it)
    account = iam.compute_account(data["number"])
    if account not in state["service_accounts"]:
        state["service_accounts"].append(account)
    return data
