"""Who may do what: the project's IAM policy, the identity Cloud Build runs builds as, and who may
invoke a Cloud Run service, with the organization policies that break students' first runs.

* **Cloud Build's identity.** In projects created since mid-2024 Cloud Build runs builds as the
  Compute Engine default service account, ``PROJECT_NUMBER-compute@developer.gserviceaccount.com``
  (https://cloud.google.com/build/docs/cloud-build-service-account, "Cloud Build default service
  account change": https://cloud.google.com/build/docs/cloud-build-service-account-updates).
  That account gets the Editor role automatically, unless the organization policy
  ``iam.automaticIamGrantsForDefaultServiceAccounts`` is enforced (typical of university
  accounts, https://cloud.google.com/resource-manager/docs/organization-policy/
  restricting-service-accounts#disable_service_account_default_grants): then it has no role,
  and a build cannot fetch its uploaded source (storage.objects.list/get), write its logs
  (logging.logEntries.create) or push its images (artifactregistry.repositories.uploadArtifacts).
  ``FakeGcloud.add_project(..., default_grants=False)`` models that project; the fix is granting
  roles/storage.objectViewer and roles/logging.logWriter on the project and
  roles/artifactregistry.writer on the repository (the roles https://cloud.google.com/functions/
  docs/securing/build-custom-sa lists for a build's account; roles/cloudbuild.builds.builder,
  which Google suggests for the Compute account, covers all three more broadly).
* **Public access refused by policy.** Under domain-restricted sharing (organization policy
  ``iam.allowedPolicyMemberDomains``), no IAM policy may name ``allUsers``: ``gcloud run deploy
  --allow-unauthenticated`` only warns and exits 0 (gcloud's ``serverless_operations.py``:
  ``Setting IAM policy failed, try "gcloud beta run services add-iam-policy-binding ..."``), the
  service stays private and answers 403. The documented way out is to turn the Invoker IAM check
  off (``gcloud run services update SERVICE --no-invoker-iam-check``,
  https://cloud.google.com/run/docs/authenticating/public, "Use this solution when the project is
  subject to the domain restricted sharing constraint"). ``add_project(...,
  domain_restricted_sharing=True)`` models it.

The model only: the commands that read or change these policies are in ``commands/`` (one module
per command group).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from .call import Call

ALL = "*"
# The permissions the fake checks, per role (a subset of each role's; basic roles hold them all).
SOURCE = ("storage.objects.get", "storage.objects.list")
LOGS = "logging.logEntries.create"
PUSH = "artifactregistry.repositories.uploadArtifacts"
PULL = "artifactregistry.repositories.downloadArtifacts"
INVOKE = "run.routes.invoke"
_AR_WRITE = frozenset({PUSH, PULL})
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "roles/owner": frozenset({ALL}),
    "roles/editor": frozenset({ALL}),
    "roles/viewer": frozenset({PULL}),
    "roles/cloudbuild.builds.builder": frozenset({*SOURCE, LOGS, PUSH, PULL}),
    "roles/storage.objectViewer": frozenset(SOURCE),
    "roles/storage.objectAdmin": frozenset(SOURCE),
    "roles/storage.admin": frozenset(SOURCE),
    "roles/logging.logWriter": frozenset({LOGS}),
    "roles/logging.admin": frozenset({LOGS}),
    "roles/artifactregistry.reader": frozenset({PULL}),
    "roles/artifactregistry.writer": _AR_WRITE,
    "roles/artifactregistry.createOnPushWriter": _AR_WRITE,
    "roles/artifactregistry.repoAdmin": _AR_WRITE,
    "roles/artifactregistry.createOnPushRepoAdmin": _AR_WRITE,
    "roles/artifactregistry.admin": _AR_WRITE,
    "roles/run.invoker": frozenset({INVOKE}),
    "roles/run.admin": frozenset({INVOKE}),
    "roles/run.developer": frozenset(),
    "roles/run.viewer": frozenset(),
    "roles/iam.serviceAccountUser": frozenset(),
}
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
INVOKER_ROLE = "roles/run.invoker"
# Cloud Run's annotation for a service whose Invoker IAM check is off (public without allUsers).
INVOKER_IAM_DISABLED = "run.googleapis.com/invoker-iam-disabled"
MEMBER_RE = re.compile(
    r"^((user|group|serviceAccount|domain|principal|principalSet):[^\s:]\S*"
    r"|allUsers|allAuthenticatedUsers)$"
)
EMPTY_POLICY_ETAG = "ACAB"  # what Google returns for a resource with no policy yet
DRS_REFUSAL = (
    "FAILED_PRECONDITION: One or more users named in the policy do not belong to a permitted "
    "customer."
)


def compute_account(number: str) -> str:
    return f"{number}-compute@developer.gserviceaccount.com"


def new_policy(number: str, *, default_grants: bool = True) -> dict[str, Any]:
    """A new project's IAM policy: its creator owns it, and the Compute Engine default service
    account has Editor unless automatic grants are turned off by organization policy."""
    bindings = [{"members": ["user:student@example.com"], "role": "roles/owner"}]
    if default_grants:
        bindings.insert(
            0, {"members": [f"serviceAccount:{compute_account(number)}"], "role": "roles/editor"}
        )
    return {"bindings": bindings, "etag": "BwYh3tTr0aA=", "version": 1}


def project_policy(data: dict) -> dict:
    return data.setdefault("iam", new_policy(data["number"]))


def build_account(data: dict) -> str:
    """The service account Cloud Build runs this project's builds as."""
    return data.get("build_service_account") or compute_account(data["number"])


def _roles_of(policy: dict | None, member: str) -> set[str]:
    return {
        b["role"]
        for b in (policy or {}).get("bindings", [])
        if member in b.get("members", []) and "condition" not in b
    }


def granted(data: dict, member: str, permission: str, repository: str | None = None) -> bool:
    """Does ``member`` hold ``permission`` on the project (or on the repository
    ``"<location>/<name>"``, for Artifact Registry's permissions)?"""
    roles = _roles_of(project_policy(data), member)
    if repository is not None:
        roles |= _roles_of(data.get("repository_iam", {}).get(repository), member)
    held = set().union(*(ROLE_PERMISSIONS.get(r, frozenset()) for r in roles)) if roles else set()
    return ALL in held or permission in held


def add_binding(policy: dict, role: str, member: str) -> bool:
    """Add ``member`` to ``role`` as add-iam-policy-binding does; True when it changed."""
    bindings = policy.setdefault("bindings", [])
    for binding in bindings:
        if binding["role"] == role and "condition" not in binding:
            if member in binding["members"]:
                return False
            binding["members"] = sorted([*binding["members"], member])
            break
    else:
        bindings.append({"members": [member], "role": role})
        bindings.sort(key=lambda b: b["role"])
    policy["version"] = 1
    digest = hashlib.sha256(json.dumps(bindings, sort_keys=True).encode()).digest()
    policy["etag"] = base64.b64encode(digest[:8]).decode()
    return True


def refuse_public(call: Call, data: dict, member: str) -> None:
    """Domain-restricted sharing: a policy may not name allUsers / allAuthenticatedUsers."""
    if member in PUBLIC_MEMBERS and data.get("domain_restricted_sharing"):
        raise call.error(DRS_REFUSAL)


def binding_flags(call: Call) -> tuple[str, str]:
    for flag in ("--member", "--role"):
        if not call.flag(flag):
            raise call.error(f"argument {flag}: Must be specified.", 2)
    return str(call.flag("--member")), str(call.flag("--role"))


def check_member(call: Call, state: dict, member: str) -> None:
    if not MEMBER_RE.match(member):
        raise call.error(
            f"INVALID_ARGUMENT: Invalid member: {member}. (fake gcloud: a principal is "
            "user:EMAIL, group:EMAIL, serviceAccount:EMAIL, domain:DOMAIN, allUsers or "
            "allAuthenticatedUsers)"
        )
    kind, _, email = member.partition(":")
    if kind == "serviceAccount" and email not in state.get("service_accounts", []):
        raise call.error(f"INVALID_ARGUMENT: Service account {email} does not exist.")


def check_role(call: Call, role: str) -> None:
    if role not in ROLE_PERMISSIONS:
        raise call.error(
            f"INVALID_ARGUMENT: Role {role} is not supported for this resource. (fake gcloud: "
            f"it knows {', '.join(sorted(ROLE_PERMISSIONS))})",
        )


# --- Cloud Run: who may invoke a service ------------------------------------------------------


def service_policy(data: dict, key: str) -> dict:
    return data.setdefault("run_iam", {}).setdefault(key, {"etag": EMPTY_POLICY_ETAG})


def is_public(data: dict, key: str) -> bool:
    """allUsers may invoke it, or its Invoker IAM check is off."""
    resource = data["run"].get(key) or {}
    annotations = (resource.get("metadata") or {}).get("annotations") or {}
    if annotations.get(INVOKER_IAM_DISABLED) == "true":
        return True
    return INVOKER_ROLE in _roles_of(data.get("run_iam", {}).get(key), "allUsers")


def set_public(call: Call, data: dict, key: str, region: str, service: str, public: bool) -> str:
    """What ``run deploy --[no-]allow-unauthenticated`` does to the service's policy: "" when it
    worked, else the warning gcloud prints (and exits 0) when the policy cannot be set."""
    policy = service_policy(data, key)
    if public:
        if data.get("domain_restricted_sharing"):
            return (
                'Setting IAM policy failed, try "gcloud beta run services add-iam-policy-binding '
                f'--region={region} --member=allUsers --role={INVOKER_ROLE} {service}"'
            )
        add_binding(policy, INVOKER_ROLE, "allUsers")
    else:
        for binding in policy.get("bindings", []):
            if binding["role"] == INVOKER_ROLE and "allUsers" in binding["members"]:
                binding["members"].remove("allUsers")
        policy["bindings"] = [b for b in policy.get("bindings", []) if b["members"]]
    return ""
