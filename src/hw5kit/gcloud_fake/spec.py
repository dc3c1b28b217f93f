"""The allow-list: every command and flag the fake gcloud accepts, each checked against
Google's reference (the URL is kept with the command) and the real CLI's ``--help``.

To allow another command, add a ``Command`` to ``COMMANDS`` with its flags and a handler
(``handler(call, state) -> Result``, named ``"module:function"`` of ``commands/``, the module
of its command group); anything not listed here is refused
with gcloud's own wording ("Invalid choice", "unrecognized arguments") and exit status 2.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# Cloud Run regions (https://cloud.google.com/run/docs/locations), also valid for Cloud Build
# and Artifact Registry.
REGIONS = frozenset(
    {
        "africa-south1",
        "asia-east1",
        "asia-east2",
        "asia-northeast1",
        "asia-northeast2",
        "asia-northeast3",
        "asia-south1",
        "asia-south2",
        "asia-southeast1",
        "asia-southeast2",
        "australia-southeast1",
        "australia-southeast2",
        "europe-central2",
        "europe-north1",
        "europe-southwest1",
        "europe-west1",
        "europe-west2",
        "europe-west3",
        "europe-west4",
        "europe-west6",
        "europe-west8",
        "europe-west9",
        "europe-west10",
        "europe-west12",
        "me-central1",
        "me-central2",
        "me-west1",
        "northamerica-northeast1",
        "northamerica-northeast2",
        "southamerica-east1",
        "southamerica-west1",
        "us-central1",
        "us-east1",
        "us-east4",
        "us-east5",
        "us-south1",
        "us-west1",
        "us-west2",
        "us-west3",
        "us-west4",
    }
)

Check = Callable[[str], str | None]  # returns an error message, or None when the value is fine


def _regex(pattern: str, expected: str) -> Check:
    compiled = re.compile(pattern)
    return lambda v: None if compiled.match(v) else f"expected {expected}, got [{v}]"


def region_check(value: str) -> str | None:
    if value in REGIONS:
        return None
    return f"[{value}] is not a Cloud Run region (e.g. us-central1)"


# Artifact Registry also has multi-region locations
# (https://cloud.google.com/artifact-registry/docs/repositories/repo-locations).
MULTI_REGIONS = frozenset({"us", "europe", "asia"})


def location_check(value: str) -> str | None:
    if value in REGIONS or value in MULTI_REGIONS:
        return None
    return f"[{value}] is not an Artifact Registry location (e.g. us-central1)"


def build_region_check(value: str) -> str | None:
    return None if value == "global" else region_check(value)


def _int_range(low: int, high: int, *, default_ok: bool = False) -> Check:
    def check(value: str) -> str | None:
        if default_ok and value == "default":
            return None
        if not re.fullmatch(r"[0-9]+", value) or not low <= int(value) <= high:
            return f"expected an integer from {low} to {high}, got [{value}]"
        return None

    return check


def cpu_check(value: str) -> str | None:
    if re.fullmatch(r"[1248]|6|0?\.[0-9]*[1-9]|[1-9][0-9]{0,3}m", value):
        return None
    return (
        f"[{value}]: Cloud Run supports fractional values below 1, 1, 2, 4, 6 and 8 "
        "(or millicpu such as 500m)"
    )


def memory_check(value: str) -> str | None:
    if re.fullmatch(r"[1-9][0-9]*(Ki|Mi|Gi|k|M|G)?", value):
        return None
    return f"[{value}] is not a memory size such as 512Mi or 2Gi"


@dataclass(frozen=True)
class Flag:
    name: str  # "--region"
    takes_value: bool = True
    negatable: bool = False  # accepts --no-NAME too
    check: Check | None = None
    choices: tuple[str, ...] = ()
    short: str | None = None  # e.g. "-q"


@dataclass(frozen=True)
class Positional:
    name: str  # as gcloud's usage shows it, e.g. SERVICE
    required: bool = True
    repeated: bool = False  # the last positional only: SERVICE [SERVICE ...]


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    doc: str  # the reference page the flags were checked against
    flags: tuple[Flag, ...] = ()
    positionals: tuple[Positional, ...] = ()
    handler: str = ""  # "module:function" of the package commands/

    @property
    def name(self) -> str:
        return " ".join(self.path)

    @property
    def dotted(self) -> str:
        return "gcloud." + ".".join(self.path)

    def flag(self, name: str) -> Flag | None:
        for f in (*self.flags, *GLOBAL_FLAGS):
            if f.name == name or f.short == name:
                return f
            if f.negatable and name == "--no-" + f.name[2:]:
                return f
        return None


# https://cloud.google.com/sdk/gcloud/reference (GCLOUD WIDE FLAGS), the ones the kit uses
GLOBAL_FLAGS = (
    Flag("--project", check=_regex(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$", "a project ID")),
    Flag("--quiet", takes_value=False, short="-q"),
    Flag("--format"),
    Flag("--verbosity", choices=("debug", "info", "warning", "error", "critical", "none")),
)

REGION = Flag("--region", check=region_check)
# `gcloud artifacts repositories create --repository-format` (gcloud 528's --help)
REPOSITORY_FORMATS = ("apt", "docker", "go", "kfp", "maven", "npm", "python", "yum")

# API Gateway IDs (https://cloud.google.com/api-gateway/docs/creating-api-config): at most 63
# lowercase letters, digits or dashes, not starting with a dash, no underscore
GATEWAY_ID = _regex(r"^[a-z0-9]([a-z0-9-]{0,62})$", "an ID of lowercase letters, digits, dashes")
GATEWAY_FLAGS = (
    Flag("--location", check=region_check),
    Flag("--api", check=GATEWAY_ID),
    Flag("--api-config", check=GATEWAY_ID),
    Flag("--display-name"),
    Flag("--labels"),
    Flag("--async", takes_value=False),
)

# --- Secret Manager (v2's session key; commands/secrets.py) -----------------------------------
# `gcloud run deploy` (https://cloud.google.com/sdk/gcloud/reference/run/deploy): secrets as
# environment variables, KEY=SECRET_NAME:SECRET_VERSION,...; the runtime identity.
SECRET_DEPLOY_FLAGS = (
    Flag("--set-secrets"),
    Flag("--update-secrets"),
    Flag("--service-account"),
)
SECRET_DATA = Flag("--data-file")
SECRET_COMMANDS = (
    Command(
        ("secrets", "create"),
        "https://cloud.google.com/sdk/gcloud/reference/secrets/create",
        flags=(
            SECRET_DATA,
            Flag("--replication-policy", choices=("automatic", "user-managed")),
            Flag("--locations"),
            Flag("--labels"),
        ),
        positionals=(Positional("SECRET"),),
        handler="secrets:secrets_create",
    ),
    Command(
        ("secrets", "describe"),
        "https://cloud.google.com/sdk/gcloud/reference/secrets/describe",
        positionals=(Positional("SECRET"),),
        handler="secrets:secrets_describe",
    ),
    Command(
        ("secrets", "versions", "add"),
        "https://cloud.google.com/sdk/gcloud/reference/secrets/versions/add",
        flags=(SECRET_DATA,),
        positionals=(Positional("SECRET"),),
        handler="secrets:secrets_versions_add",
    ),
    Command(
        ("secrets", "add-iam-policy-binding"),
        "https://cloud.google.com/sdk/gcloud/reference/secrets/add-iam-policy-binding",
        flags=(Flag("--member"), Flag("--role")),
        positionals=(Positional("SECRET"),),
        handler="secrets:secrets_add_iam_policy_binding",
    ),
)

COMMANDS: dict[tuple[str, ...], Command] = {
    c.path: c
    for c in (
        Command(
            ("config", "get-value"),
            "https://cloud.google.com/sdk/gcloud/reference/config/get-value",
            positionals=(Positional("SECTION/PROPERTY"),),
            handler="config:config_get_value",
        ),
        Command(
            ("config", "set"),
            "https://cloud.google.com/sdk/gcloud/reference/config/set",
            positionals=(Positional("SECTION/PROPERTY"), Positional("VALUE")),
            handler="config:config_set",
        ),
        Command(
            ("services", "list"),
            "https://cloud.google.com/sdk/gcloud/reference/services/list",
            flags=(Flag("--enabled", takes_value=False),),
            handler="services:services_list",
        ),
        Command(
            ("artifacts", "repositories", "describe"),
            "https://cloud.google.com/sdk/gcloud/reference/artifacts/repositories/describe",
            flags=(Flag("--location", check=region_check),),
            positionals=(Positional("REPOSITORY"),),
            handler="artifacts:artifacts_repositories_describe",
        ),
        Command(
            ("builds", "submit"),
            "https://cloud.google.com/sdk/gcloud/reference/builds/submit",
            flags=(
                Flag("--config"),
                Flag("--region", check=build_region_check),
                Flag("--substitutions"),
                Flag("--suppress-logs", takes_value=False),
                Flag("--timeout", check=_regex(r"^[0-9]+[smhd]?$", "a duration such as 3600s")),
                # student scripts use these too (the fake runs the build at once either way)
                Flag("--async", takes_value=False),
                Flag(
                    "--machine-type",
                    choices=(
                        "e2-highcpu-32",
                        "e2-highcpu-8",
                        "e2-medium",
                        "n1-highcpu-32",
                        "n1-highcpu-8",
                    ),
                ),
            ),
            positionals=(Positional("SOURCE", required=False),),
            handler="builds:builds_submit",
        ),
        Command(
            ("builds", "describe"),
            "https://cloud.google.com/sdk/gcloud/reference/builds/describe",
            flags=(Flag("--region", check=build_region_check),),
            positionals=(Positional("BUILD"),),
            handler="builds:builds_describe",
        ),
        Command(
            ("builds", "log"),
            "https://cloud.google.com/sdk/gcloud/reference/builds/log",
            flags=(
                Flag("--region", check=build_region_check),
                Flag("--stream", takes_value=False),
            ),
            positionals=(Positional("BUILD"),),
            handler="builds:builds_log",
        ),
        # which service account builds run as (issue 19: the Compute Engine default account in
        # projects created since mid-2024); `nox -s setup` and check_prereq.sh ask it
        Command(
            ("builds", "get-default-service-account"),
            "https://cloud.google.com/sdk/gcloud/reference/builds/get-default-service-account",
            flags=(Flag("--region", check=build_region_check),),
            handler="builds:builds_get_default_service_account",
        ),
        Command(
            ("run", "deploy"),
            "https://cloud.google.com/sdk/gcloud/reference/run/deploy",
            flags=(
                REGION,
                Flag("--image"),
                Flag("--port", check=_int_range(1, 65535)),
                Flag("--memory", check=memory_check),
                Flag("--cpu", check=cpu_check),
                Flag("--min-instances", check=_int_range(0, 1000, default_ok=True)),
                Flag("--max-instances", check=_int_range(1, 1000, default_ok=True)),
                Flag("--allow-unauthenticated", takes_value=False, negatable=True),
                Flag("--set-env-vars"),
                # hidden in gcloud 528 but still accepted; course material passes it
                Flag("--platform", choices=("managed",)),
                # common in student scripts (the grader runs them against this fake)
                Flag("--update-env-vars"),
                Flag("--concurrency", check=_int_range(1, 1000, default_ok=True)),
                Flag("--timeout", check=_regex(r"^([0-9]+[smh]?)+$", "a duration such as 300s")),
                Flag("--ingress", choices=("all", "internal", "internal-and-cloud-load-balancing")),
                Flag("--cpu-boost", takes_value=False, negatable=True),
                Flag("--async", takes_value=False),
                # https://cloud.google.com/run/docs/authenticating/public: public without allUsers
                Flag("--invoker-iam-check", takes_value=False, negatable=True),
                *SECRET_DEPLOY_FLAGS,
            ),
            positionals=(Positional("SERVICE"),),
            handler="run:run_deploy",
        ),
        # who may invoke a service: deploy and verify check --allow-unauthenticated took effect
        Command(
            ("run", "services", "get-iam-policy"),
            "https://cloud.google.com/sdk/gcloud/reference/run/services/get-iam-policy",
            flags=(REGION, Flag("--platform", choices=("managed",))),
            positionals=(Positional("SERVICE"),),
            handler="run:run_services_get_iam_policy",
        ),
        Command(
            ("run", "services", "add-iam-policy-binding"),
            "https://cloud.google.com/sdk/gcloud/reference/run/services/add-iam-policy-binding",
            flags=(
                REGION,
                Flag("--member"),
                Flag("--role"),
                Flag("--platform", choices=("managed",)),
            ),
            positionals=(Positional("SERVICE"),),
            handler="run:run_services_add_iam_policy_binding",
        ),
        # the remedy under domain-restricted sharing: --no-invoker-iam-check (nothing else)
        Command(
            ("run", "services", "update"),
            "https://cloud.google.com/sdk/gcloud/reference/run/services/update",
            flags=(
                REGION,
                Flag("--invoker-iam-check", takes_value=False, negatable=True),
                Flag("--platform", choices=("managed",)),
            ),
            positionals=(Positional("SERVICE"),),
            handler="run:run_services_update",
        ),
        Command(
            ("run", "services", "describe"),
            "https://cloud.google.com/sdk/gcloud/reference/run/services/describe",
            flags=(REGION, Flag("--platform", choices=("managed",))),
            positionals=(Positional("SERVICE"),),
            handler="run:run_services_describe",
        ),
        # --- what `nox -s setup` and setup/check_prereq.sh use (steps 1 to 5) ---
        Command(
            ("projects", "describe"),
            "https://cloud.google.com/sdk/gcloud/reference/projects/describe",
            positionals=(Positional("PROJECT_ID_OR_NUMBER"),),
            handler="projects:projects_describe",
        ),
        Command(
            ("services", "enable"),
            "https://cloud.google.com/sdk/gcloud/reference/services/enable",
            flags=(Flag("--async", takes_value=False),),
            positionals=(Positional("SERVICE", repeated=True),),
            handler="services:services_enable",
        ),
        Command(
            ("artifacts", "repositories", "create"),
            "https://cloud.google.com/sdk/gcloud/reference/artifacts/repositories/create",
            flags=(
                Flag("--location", check=location_check),
                Flag("--repository-format", choices=REPOSITORY_FORMATS),
                Flag("--description"),
                Flag("--async", takes_value=False),
            ),
            positionals=(Positional("REPOSITORY"),),
            handler="artifacts:artifacts_repositories_create",
        ),
        Command(
            ("artifacts", "repositories", "get-iam-policy"),
            "https://cloud.google.com/sdk/gcloud/reference/artifacts/repositories/get-iam-policy",
            flags=(Flag("--location", check=location_check),),
            positionals=(Positional("REPOSITORY"),),
            handler="artifacts:artifacts_repositories_get_iam_policy",
        ),
        Command(
            ("artifacts", "repositories", "add-iam-policy-binding"),
            "https://cloud.google.com/sdk/gcloud/reference/artifacts/repositories/"
            "add-iam-policy-binding",
            flags=(
                Flag("--location", check=location_check),
                Flag("--member"),
                Flag("--role"),
            ),
            positionals=(Positional("REPOSITORY"),),
            handler="artifacts:artifacts_repositories_add_iam_policy_binding",
        ),
        # the roles of Cloud Build's service account, on the project (setup grants them)
        Command(
            ("projects", "get-iam-policy"),
            "https://cloud.google.com/sdk/gcloud/reference/projects/get-iam-policy",
            positionals=(Positional("PROJECT_ID"),),
            handler="projects:projects_get_iam_policy",
        ),
        Command(
            ("projects", "add-iam-policy-binding"),
            "https://cloud.google.com/sdk/gcloud/reference/projects/add-iam-policy-binding",
            flags=(Flag("--member"), Flag("--role"), Flag("--condition")),
            positionals=(Positional("PROJECT_ID"),),
            handler="projects:projects_add_iam_policy_binding",
        ),
        # --- v3: Google API Gateway (the API, its configs, the gateway) ---
        Command(
            ("api-gateway", "api-configs", "create"),
            "https://cloud.google.com/sdk/gcloud/reference/api-gateway/api-configs/create",
            flags=(
                Flag("--api", check=GATEWAY_ID),
                Flag("--openapi-spec"),
                Flag("--backend-auth-service-account"),
                Flag("--display-name"),
                Flag("--labels"),
                Flag("--async", takes_value=False),
            ),
            positionals=(Positional("API_CONFIG"),),
            handler="apigateway:api_configs_create",
        ),
        Command(
            ("api-gateway", "api-configs", "describe"),
            "https://cloud.google.com/sdk/gcloud/reference/api-gateway/api-configs/describe",
            flags=(Flag("--api", check=GATEWAY_ID), Flag("--view", choices=("BASIC", "FULL"))),
            positionals=(Positional("API_CONFIG"),),
            handler="apigateway:api_configs_describe",
        ),
        Command(
            ("api-gateway", "apis", "describe"),
            "https://cloud.google.com/sdk/gcloud/reference/api-gateway/apis/describe",
            positionals=(Positional("API"),),
            handler="apigateway:apis_describe",
        ),
        Command(
            ("api-gateway", "gateways", "create"),
            "https://cloud.google.com/sdk/gcloud/reference/api-gateway/gateways/create",
            flags=GATEWAY_FLAGS,
            positionals=(Positional("GATEWAY"),),
            handler="apigateway:gateways_create",
        ),
        Command(
            ("api-gateway", "gateways", "update"),
            "https://cloud.google.com/sdk/gcloud/reference/api-gateway/gateways/update",
            flags=GATEWAY_FLAGS,
            positionals=(Positional("GATEWAY"),),
            handler="apigateway:gateways_update",
        ),
        Command(
            ("api-gateway", "gateways", "describe"),
            "https://cloud.google.com/sdk/gcloud/reference/api-gateway/gateways/describe",
            flags=(Flag("--location", check=region_check),),
            positionals=(Positional("GATEWAY"),),
            handler="apigateway:gateways_describe",
        ),
    )
}


COMMANDS.update({c.path: c for c in SECRET_COMMANDS})


def groups() -> set[tuple[str, ...]]:
    """Every command-group prefix (("run",), ("run", "services"), ...)."""
    out: set[tuple[str, ...]] = set()
    for path in COMMANDS:
        for i in range(1, len(path)):
            out.add(path[:i])
    return out
