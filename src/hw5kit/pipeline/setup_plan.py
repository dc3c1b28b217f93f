"""What ``nox -s setup`` gives a Google Cloud project, as data: the APIs the config needs, the
roles that read or write the repository and the minimal ones Cloud Build's service account needs
(``BUILD_NEEDS``; ``setup.py``'s docstring says why), the changing commands (``Step``) and the
read-only ones that look first, and ``plan``: the steps a project in a given ``State`` still
needs, in the order they must run. No gcloud runs here: ``setup.py`` runs them.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import naming
from .deployment import Config

# The assignment's step 3, in the course's order.
APIS = ("artifactregistry.googleapis.com", "run.googleapis.com", "cloudbuild.googleapis.com")
# v3: what Google API Gateway needs (https://cloud.google.com/api-gateway/docs/configure-dev-env),
# and the API Keys API for `gcloud services api-keys` when the gateway requires a key.
GATEWAY_APIS = (
    "apigateway.googleapis.com",
    "servicemanagement.googleapis.com",
    "servicecontrol.googleapis.com",
)
APIKEYS_API = "apikeys.googleapis.com"
API_NAMES = {
    "artifactregistry.googleapis.com": "Artifact Registry",
    "run.googleapis.com": "Cloud Run",
    "cloudbuild.googleapis.com": "Cloud Build",
    "apigateway.googleapis.com": "API Gateway",
    "servicemanagement.googleapis.com": "Service Management",
    "servicecontrol.googleapis.com": "Service Control",
    APIKEYS_API: "API Keys",
}
READER_ROLE = "roles/artifactregistry.reader"
# Roles granted on a repository that include reading it (artifactregistry.repositories.
# downloadArtifacts); setup/check_prereq.sh accepts the same list.
READ_ROLES = frozenset(
    {
        f"roles/artifactregistry.{r}"
        for r in (
            "reader",
            "writer",
            "createOnPushWriter",
            "repoAdmin",
            "createOnPushRepoAdmin",
            "admin",
        )
    }
    | {"roles/viewer", "roles/editor", "roles/owner"}
)
# What Cloud Build's service account needs, and the roles that already give it (setup grants the
# first, the most limited; setup/check_prereq.sh checks the same lists). Google's own suggestion
# for the Compute Engine account, roles/cloudbuild.builds.builder, covers all three.
BUILDER = "roles/cloudbuild.builds.builder"
BASIC = {"roles/editor", "roles/owner"}
BUILD_NEEDS = (
    (
        "project",
        "roles/storage.objectViewer",
        "read the source gcloud uploads",
        frozenset(
            {"roles/storage.objectViewer", "roles/storage.objectAdmin", "roles/storage.admin"}
            | {BUILDER}
            | BASIC
        ),
    ),
    (
        "project",
        "roles/logging.logWriter",
        "write the build's log",
        frozenset({"roles/logging.logWriter", "roles/logging.admin", BUILDER} | BASIC),
    ),
    (
        "repository",
        "roles/artifactregistry.writer",
        "push the images",
        frozenset(
            {
                f"roles/artifactregistry.{r}"
                for r in (
                    "writer",
                    "createOnPushWriter",
                    "repoAdmin",
                    "createOnPushRepoAdmin",
                    "admin",
                )
            }
            | {BUILDER}
            | BASIC
        ),
    ),
)
BUILD_ACCOUNT_PLACEHOLDER = naming.compute_service_account("PROJECT_NUMBER")


@dataclass(frozen=True)
class Step:
    """One changing command and what it does, in words."""

    what: str
    argv: tuple[str, ...]
    kind: str = ""  # project | apis | repository | reader | builder

    @property
    def shell(self) -> str:
        return shlex.join(self.argv)


@dataclass
class State:
    """What the read-only commands found. ``None`` where a question could not be asked yet
    (the repository while Artifact Registry is disabled; its policy while it is missing)."""

    configured_project: str | None = None
    enabled: set[str] = field(default_factory=set)
    repository_format: str | None = None  # "DOCKER", ...; None: missing or not looked at
    repository_known: bool = False
    can_read: bool | None = None
    repository_policy: dict | None = None
    # Cloud Build's service account: None while the Cloud Build API is off (not looked at)
    build_account: str | None = None
    build_known: bool = False
    project_policy: dict | None = None

    @classmethod
    def fresh(cls) -> State:
        """A project where nothing is set up yet (what ``--dry-run`` plans for)."""
        return cls(repository_known=True, build_known=True)


def required_apis(cfg: Config) -> tuple[str, ...]:
    """The APIs the config needs: the course's three, plus API Gateway's when it has v3
    services (and the API Keys API when the gateway requires a key)."""
    if cfg.gateway is None:
        return APIS
    return (*APIS, *GATEWAY_APIS, *((APIKEYS_API,) if cfg.gateway.api_key else ()))


# --- the commands --------------------------------------------------------------------------


def set_project(cfg: Config) -> Step:
    return Step(
        f"make {cfg.project_id} gcloud's project",
        ("gcloud", "config", "set", "project", cfg.project_id),
        "project",
    )


def enable(cfg: Config, apis: Sequence[str]) -> Step:
    names = ", ".join(API_NAMES.get(a, a) for a in apis)
    return Step(
        f"enable {names}",
        ("gcloud", "services", "enable", *apis, f"--project={cfg.project_id}"),
        "apis",
    )


def create_repository(cfg: Config) -> Step:
    return Step(
        f"create the Docker repository {cfg.repo_uri}",
        (
            "gcloud",
            "artifacts",
            "repositories",
            "create",
            cfg.repository,
            "--repository-format=docker",
            f"--location={cfg.region}",
            f"--project={cfg.project_id}",
        ),
        "repository",
    )


def repository_binding(cfg: Config, account: str, role: str) -> tuple[str, ...]:
    """``role`` for the service account ``account`` on the repository alone."""
    return (
        "gcloud",
        "artifacts",
        "repositories",
        "add-iam-policy-binding",
        cfg.repository,
        f"--project={cfg.project_id}",
        f"--location={cfg.region}",
        f"--member=serviceAccount:{account}",
        f"--role={role}",
    )


def grant_reader(cfg: Config) -> Step:
    return Step(
        f"let the autograder ({cfg.autograder_service_account}) read {cfg.repository}",
        repository_binding(cfg, cfg.autograder_service_account, READER_ROLE),
        "reader",
    )


def grant_build_role(cfg: Config, account: str, scope: str, role: str, why: str) -> Step:
    member = f"--member=serviceAccount:{account}"
    if scope == "repository":
        argv = repository_binding(cfg, account, role)
    else:
        argv = (
            "gcloud",
            "projects",
            "add-iam-policy-binding",
            cfg.project_id,
            member,
            f"--role={role}",
            "--condition=None",
        )
    return Step(f"let Cloud Build's service account ({account}) {why}", argv, "builder")


def build_account(cfg: Config) -> tuple[str, ...]:
    return (
        "gcloud",
        "builds",
        "get-default-service-account",
        f"--project={cfg.project_id}",
        f"--region={cfg.region}",
        "--format=value(serviceAccountEmail)",
    )


def project_policy(cfg: Config) -> tuple[str, ...]:
    return ("gcloud", "projects", "get-iam-policy", cfg.project_id, "--format=json")


def describe_project(cfg: Config) -> tuple[str, ...]:
    return (
        "gcloud",
        "projects",
        "describe",
        cfg.project_id,
        "--format=value(lifecycleState)",
    )


def configured_project() -> tuple[str, ...]:
    return ("gcloud", "config", "get-value", "project")


def list_enabled(cfg: Config) -> tuple[str, ...]:
    return (
        "gcloud",
        "services",
        "list",
        "--enabled",
        f"--project={cfg.project_id}",
        "--format=value(config.name)",
    )


def describe_repository(cfg: Config) -> tuple[str, ...]:
    return (
        "gcloud",
        "artifacts",
        "repositories",
        "describe",
        cfg.repository,
        f"--project={cfg.project_id}",
        f"--location={cfg.region}",
        "--format=value(format)",
    )


def repository_policy(cfg: Config) -> tuple[str, ...]:
    return (
        "gcloud",
        "artifacts",
        "repositories",
        "get-iam-policy",
        cfg.repository,
        f"--project={cfg.project_id}",
        f"--location={cfg.region}",
        "--format=json",
    )


def can_read(policy: dict, service_account: str) -> bool:
    """Does the policy give ``service_account`` read access, without a condition?"""
    member = f"serviceAccount:{service_account}"
    return any(
        b.get("role") in READ_ROLES and member in b.get("members", []) and not b.get("condition")
        for b in policy.get("bindings", [])
    )


def roles_of(policy: dict | None, member: str) -> set[str]:
    """The roles ``member`` holds in the policy, without a condition."""
    return {
        b.get("role", "")
        for b in (policy or {}).get("bindings", [])
        if member in b.get("members", []) and not b.get("condition")
    }


def missing_build_roles(state: State) -> list[tuple[str, str, str]]:
    """(scope, role, what for) of each need of Cloud Build's service account no held role
    covers; nothing while the account is unknown."""
    if not state.build_account:
        return []
    member = f"serviceAccount:{state.build_account}"
    project_roles = roles_of(state.project_policy, member)
    repository_roles = roles_of(state.repository_policy, member)
    missing = []
    for scope, role, why, covering in BUILD_NEEDS:
        held = project_roles | (repository_roles if scope == "repository" else set())
        if not held & covering:
            missing.append((scope, role, why))
    return missing


def plan(cfg: Config, state: State) -> list[Step]:
    """The changing commands ``state`` still needs, in the order they must run."""
    steps = []
    if state.configured_project != cfg.project_id:
        steps.append(set_project(cfg))
    missing = [api for api in required_apis(cfg) if api not in state.enabled]
    if missing:
        steps.append(enable(cfg, missing))
    if state.repository_format is None:
        steps.append(create_repository(cfg))
    if not state.can_read:
        steps.append(grant_reader(cfg))
    for scope, role, why in missing_build_roles(state):
        steps.append(grant_build_role(cfg, str(state.build_account), scope, role, why))
    return steps
