"""``gcloud artifacts repositories describe / create / get-iam-policy /
add-iam-policy-binding``: the Docker repository the images go to, and who may read it."""

from __future__ import annotations

import re
import uuid
from typing import Any

from .. import iam
from ..call import Call, Result
from ..state import now
from .common import describe_output, need_api, project_of

# Roles that can be granted on an Artifact Registry repository
# (https://cloud.google.com/artifact-registry/docs/access-control#roles), and the basic roles.
REPOSITORY_ROLES = frozenset(
    {
        "roles/artifactregistry.reader",
        "roles/artifactregistry.writer",
        "roles/artifactregistry.createOnPushWriter",
        "roles/artifactregistry.repoAdmin",
        "roles/artifactregistry.createOnPushRepoAdmin",
        "roles/artifactregistry.admin",
        "roles/viewer",
        "roles/editor",
        "roles/owner",
    }
)


REPOSITORY_ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


def repository_resource(
    project: str, location: str, name: str, *, repository_format: str = "DOCKER", description=""
) -> dict[str, Any]:
    stamp = now()
    host = f"{location}-{repository_format.lower()}.pkg.dev"
    return {
        "name": f"projects/{project}/locations/{location}/repositories/{name}",
        "format": repository_format.upper(),
        "mode": "STANDARD_REPOSITORY",
        "description": description,
        "createTime": stamp,
        "updateTime": stamp,
        "registryUri": f"{host}/{project}/{name}",
        "sizeBytes": "0",
    }


def _ar_location(call: Call, state: dict) -> str:
    location = call.flag("--location") or state["config"].get("artifacts/location")
    if not location:
        raise call.error(
            "Error parsing [repository].\nThe [repository] resource is not properly specified."
            "\nFailed to find attribute [location]. The attribute can be set in the following "
            "ways:\n- provide the argument `--location` on the command line\n- set the "
            "property `artifacts/location`"
        )
    return str(location)


def _repository(call: Call, state: dict) -> tuple[dict, str, str]:
    """The project data, the repository's state key and its name; NOT_FOUND when missing."""
    project, data = project_of(call, state)
    location = _ar_location(call, state)
    need_api(call, project, data, "artifactregistry.googleapis.com")
    name = call.positionals[0]
    key = f"{location}/{name}"
    if key not in data["repositories"]:
        raise call.error("NOT_FOUND: Requested entity was not found.")
    return data, key, name


def repository_policy(data: dict, key: str) -> dict:
    """The repository's IAM policy (``{"etag": "ACAB"}`` until a binding is added)."""
    return data.setdefault("repository_iam", {}).setdefault(key, {"etag": iam.EMPTY_POLICY_ETAG})


def artifacts_repositories_describe(call: Call, state: dict) -> Result:
    data, key, _name = _repository(call, state)
    return Result(stdout=describe_output(call, data["repositories"][key]))


def artifacts_repositories_create(call: Call, state: dict) -> Result:
    project, data = project_of(call, state)
    location = _ar_location(call, state)
    repository_format = call.flag("--repository-format")
    if not repository_format:
        raise call.error("argument --repository-format: Must be specified.", 2)
    need_api(call, project, data, "artifactregistry.googleapis.com")
    name = call.positionals[0]
    if not REPOSITORY_ID_RE.match(name):
        raise call.error(
            f"INVALID_ARGUMENT: invalid repository ID [{name}] (fake gcloud: lowercase letters, "
            "digits and hyphens, starting with a letter and ending with a letter or digit, at "
            "most 63 characters)"
        )
    key = f"{location}/{name}"
    if key in data["repositories"]:
        raise call.error("ALREADY_EXISTS: the repository already exists")
    data["repositories"][key] = repository_resource(
        project,
        location,
        name,
        repository_format=str(repository_format),
        description=str(call.flag("--description") or ""),
    )
    operation = f"projects/{project}/locations/{location}/operations/{uuid.uuid4()}"
    stderr = f"Create request issued for: [{name}]\n"
    if call.flag("--async"):
        stderr += f"Check operation [{operation}] for status.\n"
    else:
        stderr += (
            f"Waiting for operation [{operation}] to complete...done.\n"
            f"Created repository [{name}].\n"
        )
    return Result(stderr=stderr, extra={"created": key})


def artifacts_repositories_get_iam_policy(call: Call, state: dict) -> Result:
    data, key, _name = _repository(call, state)
    policy = data.get("repository_iam", {}).get(key, {"etag": iam.EMPTY_POLICY_ETAG})
    return Result(stdout=describe_output(call, policy))


def artifacts_repositories_add_iam_policy_binding(call: Call, state: dict) -> Result:
    member, role = iam.binding_flags(call)
    data, key, name = _repository(call, state)
    iam.check_member(call, state, member)
    iam.refuse_public(call, data, member)
    if role not in REPOSITORY_ROLES:
        raise call.error(f"INVALID_ARGUMENT: Role {role} is not supported for this resource.")
    policy = repository_policy(data, key)
    changed = iam.add_binding(policy, role, member)
    return Result(
        stdout=describe_output(call, policy),
        stderr=f"Updated IAM policy for repository [{name}].\n",
        extra={"binding_added": changed},
    )
