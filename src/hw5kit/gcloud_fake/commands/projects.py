"""``gcloud projects describe / get-iam-policy / add-iam-policy-binding`` (what ``nox -s setup``
and setup/check_prereq.sh look at), a project named by its ID or its number."""

from __future__ import annotations

from .. import iam
from ..call import Call, Result
from .common import active_account, describe_output


def _named_project(call: Call, state: dict, *, detail: bool = False) -> tuple[str, dict]:
    """The project the command names (its ID or number); refused as Google refuses a project
    that does not exist or that the caller may not see (``detail``: with the sentence on the
    active account that ``projects describe`` adds)."""
    wanted = call.positionals[0]
    for project_id, data in state["projects"].items():
        if wanted in (project_id, data["number"]):
            return project_id, data
    account = active_account(state)
    message = (
        f"[{account}] does not have permission to access projects instance [{wanted}] (or it "
        "may not exist): The caller does not have permission"
    )
    if detail:
        message += (
            f". This command is authenticated as {account} which is the active account "
            "specified by the [core/account] property"
        )
    raise call.error(message)


def projects_describe(call: Call, state: dict) -> Result:
    project_id, data = _named_project(call, state, detail=True)
    resource = {
        "createTime": data.get("createTime", "2024-01-01T00:00:00.000Z"),
        "lifecycleState": data.get("lifecycleState", "ACTIVE"),
        "name": project_id,
        "projectId": project_id,
        "projectNumber": data["number"],
    }
    return Result(stdout=describe_output(call, resource))


def projects_get_iam_policy(call: Call, state: dict) -> Result:
    _project_id, data = _named_project(call, state)
    return Result(stdout=describe_output(call, iam.project_policy(data)))


def projects_add_iam_policy_binding(call: Call, state: dict) -> Result:
    member, role = iam.binding_flags(call)
    project_id, data = _named_project(call, state)
    condition = call.flag("--condition")
    if condition not in (None, "None"):
        raise call.error(
            "argument --condition: the fake gcloud models unconditional bindings only "
            "(--condition=None)",
            2,
        )
    iam.check_member(call, state, member)
    iam.check_role(call, role)
    iam.refuse_public(call, data, member)
    changed = iam.add_binding(iam.project_policy(data), role, member)
    return Result(
        stdout=describe_output(call, iam.project_policy(data)),
        stderr=f"Updated IAM policy for project [{project_id}].\n",
        extra={"binding_added": changed},
    )
