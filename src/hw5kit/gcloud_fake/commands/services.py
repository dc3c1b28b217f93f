"""``gcloud services list / enable``: the project's APIs (billing needed for the billed ones,
the managed services of the project's API Gateway APIs enabled like Google's)."""

from __future__ import annotations

import uuid

from .. import formats
from ..call import Call, Result
from ..state import API_TITLES, BILLED_APIS
from .common import output_format, project_of


def services_list(call: Call, state: dict) -> Result:
    _project_id, data = project_of(call, state)
    items = [
        {
            "config": {"name": api, "title": API_TITLES.get(api, api)},
            "name": f"projects/{data['number']}/services/{api}",
            "parent": f"projects/{data['number']}",
            "state": "ENABLED",
        }
        for api in sorted(data["apis"])
    ]
    spec = output_format(call)
    if spec[0] == "default":
        rows = [[i["config"]["name"], i["config"]["title"]] for i in items]
        return Result(stdout=formats.table(rows, ["NAME", "TITLE"]))
    return Result(stdout=formats.render(items, spec, single=False))


def services_enable(call: Call, state: dict) -> Result:
    _project_id, data = project_of(call, state)
    wanted = list(dict.fromkeys(call.positionals))
    if not wanted:
        raise call.error("argument SERVICE: Must be specified.", 2)
    # besides Google's APIs, the managed services of the project's API Gateway APIs
    managed = {a["managedService"] for a in data.get("apigateway", {}).get("apis", {}).values()}
    unknown = [api for api in wanted if api not in API_TITLES and api not in managed]
    if unknown:
        raise call.error(
            "PERMISSION_DENIED: Not found or permission denied for service(s): "
            f"{', '.join(unknown)}. (fake gcloud: it knows {', '.join(sorted(API_TITLES))})",
        )
    new = [api for api in wanted if api not in data["apis"]]
    billed = [api for api in new if api in BILLED_APIS]
    if billed and not data.get("billing", True):
        raise call.error(
            f"FAILED_PRECONDITION: Billing account for project '{data['number']}' is not found. "
            f"Billing must be enabled for activation of service(s) '{','.join(billed)}' to "
            "proceed."
        )
    data["apis"] = sorted(set(data["apis"]) | set(new))
    if not new:
        return Result(extra={"enabled": []})
    operation = f"operations/acf.p2-{data['number']}-{uuid.uuid4()}"
    if call.flag("--async"):
        stderr = (
            "Asynchronous operation is in progress... Use the following command to wait for its "
            f"completion:\n gcloud beta services operations wait {operation}\n"
        )
    else:
        stderr = f'Operation "{operation}" finished successfully.\n'
    return Result(stderr=stderr, extra={"enabled": new})
