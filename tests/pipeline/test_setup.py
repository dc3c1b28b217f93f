"""`nox -s setup` (python -m hw5kit.pipeline setup) against the fake gcloud: the exact commands
for a fresh project, read-only commands only when everything exists, only what is missing
otherwise, a dry run that runs nothing, and clear stops where setup cannot fix things.

Most tests run on the course's config (v1 and v2 only: the course's three APIs); the v3 ones
(a config with v3 services: API Gateway's APIs too) use the ``scenario_v3`` fixture."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hw5kit.gcloud_fake import (
    COURSE_AUTOGRADER,
    COURSE_TEST_AUTOGRADER,
    GATEWAY_APIS,
    FakeGcloud,
)
from hw5kit.pipeline import config, setup_plan

from ..conftest import ROOT, subprocess_env
from ..support.pipeline import PROJECT, make_repo, pipeline

AR, RUN, CB = "artifactregistry.googleapis.com", "run.googleapis.com", "cloudbuild.googleapis.com"
AG, SM, SC = GATEWAY_APIS
KEYS = "apikeys.googleapis.com"
SA = COURSE_TEST_AUTOGRADER
SUCCESS = "All prerequisites are met. You can proceed with the assignment."
READ_ONLY = {
    "projects describe",
    "config get-value",
    "services list",
    "artifacts repositories describe",
    "artifacts repositories get-iam-policy",
    "builds get-default-service-account",
    "projects get-iam-policy",
}

DESCRIBE_PROJECT = ["projects", "describe", PROJECT, "--format=value(lifecycleState)"]
GET_PROJECT = ["config", "get-value", "project"]
LIST_ENABLED = [
    "services",
    "list",
    "--enabled",
    f"--project={PROJECT}",
    "--format=value(config.name)",
]
DESCRIBE_REPO = [
    "artifacts",
    "repositories",
    "describe",
    "hw5-images",
    f"--project={PROJECT}",
    "--location=us-central1",
    "--format=value(format)",
]
GET_POLICY = [
    "artifacts",
    "repositories",
    "get-iam-policy",
    "hw5-images",
    f"--project={PROJECT}",
    "--location=us-central1",
    "--format=json",
]
BUILD_ACCOUNT = [
    "builds",
    "get-default-service-account",
    f"--project={PROJECT}",
    "--region=us-central1",
    "--format=value(serviceAccountEmail)",
]
PROJECT_POLICY = ["projects", "get-iam-policy", PROJECT, "--format=json"]
SET_PROJECT = ["config", "set", "project", PROJECT]
CREATE_REPO = [
    "artifacts",
    "repositories",
    "create",
    "hw5-images",
    "--repository-format=docker",
    "--location=us-central1",
    f"--project={PROJECT}",
]


def enable(*apis):
    return ["services", "enable", *apis, f"--project={PROJECT}"]


def grant(account=SA):
    return [
        "artifacts",
        "repositories",
        "add-iam-policy-binding",
        "hw5-images",
        f"--project={PROJECT}",
        "--location=us-central1",
        f"--member=serviceAccount:{account}",
        "--role=roles/artifactregistry.reader",
    ]


# what setup/check_prereq.sh asks, in its order
CHECK = [
    GET_PROJECT,
    DESCRIBE_PROJECT,
    ["services", "list", "--enabled", "--format=value(config.name)"],
    DESCRIBE_REPO,
    GET_POLICY,
    BUILD_ACCOUNT,
    PROJECT_POLICY,
]


class Scenario:
    """A fake project seeded one way, a copy of the repository, and setup run on them."""

    def __init__(self, tmp_path: Path, *, v3: bool = False):
        self.fake = FakeGcloud(tmp_path / "gcloud-state")
        self.fake.install(tmp_path / "bin")
        env = self.fake.env(subprocess_env(tmp_path))
        # python3 with PyYAML (a course prerequisite) for setup/check_prereq.sh
        env["PATH"] = f"{env['PATH']}{os.pathsep}{Path(sys.executable).parent}"
        self.env = env
        self.repo = make_repo(tmp_path / "repo", v3=v3)

    def setup(self, *args: str, target: str | None = "gcp"):
        extra = ("--target", target) if target else ()
        return pipeline("setup", *extra, *args, root=self.repo, env=self.env)

    def argv(self) -> list[list[str]]:
        return [c["argv"] for c in self.fake.calls()]

    def changing(self) -> list[list[str]]:
        return [c["argv"] for c in self.fake.calls() if c["command"] not in READ_ONLY]

    def project(self) -> dict:
        return self.fake.project(PROJECT)


@pytest.fixture
def scenario(tmp_path) -> Scenario:
    """The course's config: v1 and v2, no API gateway."""
    return Scenario(tmp_path)


@pytest.fixture
def scenario_v3(tmp_path) -> Scenario:
    """The repository's config as committed: v1, v2 and v3 (API gateway, no API key)."""
    return Scenario(tmp_path, v3=True)


def fresh(scenario: Scenario) -> Scenario:
    scenario.fake.add_project(PROJECT, apis=(), repositories=(), readers=(), set_default=False)
    return scenario


def output(done) -> str:
    return done.stdout + done.stderr


def test_a_fresh_project_gets_exactly_the_expected_commands_in_order(scenario):
    fresh(scenario)
    done = scenario.setup()
    assert done.returncode == 0, output(done)
    assert scenario.argv() == [
        DESCRIBE_PROJECT,
        GET_PROJECT,
        LIST_ENABLED,
        SET_PROJECT,
        enable(AR, RUN, CB),
        DESCRIBE_REPO,  # only now can it be looked at: NOT_FOUND
        BUILD_ACCOUNT,  # and Cloud Build's service account (it has Editor: nothing to grant)
        PROJECT_POLICY,
        CREATE_REPO,
        grant(),
        *CHECK,
    ]
    exits = [c["exit"] for c in scenario.fake.calls()]
    assert exits == [0] * 5 + [1] + [0] * 11
    assert "NOT_FOUND" in scenario.fake.calls()[5]["stderr"]
    project = scenario.project()
    assert sorted(project["apis"]) == sorted([AR, RUN, CB])
    assert project["repositories"]["us-central1/hw5-images"]["format"] == "DOCKER"
    assert scenario.fake.readers(PROJECT, "us-central1", "hw5-images") == [f"serviceAccount:{SA}"]
    assert scenario.fake.state()["config"]["core/project"] == PROJECT
    assert "setup: up to 4 change(s) to make" in done.stdout
    assert "setup: done: 4 change(s) made" in done.stdout
    # each changing command is printed before it runs, as a shell line
    for argv in scenario.changing():
        assert f"  $ {shlex.join(['gcloud', *argv])}\n" in done.stdout
    assert done.stdout.index("$ gcloud services enable") < done.stdout.index(
        "finished successfully"
    )
    assert SUCCESS in done.stdout
    assert "is ready for `nox -s build`" in done.stdout


def test_a_second_run_changes_nothing_and_says_so(scenario):
    fresh(scenario)
    assert scenario.setup().returncode == 0
    before = scenario.fake.state()
    first = len(scenario.fake.calls())
    again = scenario.setup()
    assert again.returncode == 0, output(again)
    second = scenario.fake.calls()[first:]
    assert [c["argv"] for c in second] == [
        DESCRIBE_PROJECT,
        GET_PROJECT,
        LIST_ENABLED,
        DESCRIBE_REPO,
        GET_POLICY,
        BUILD_ACCOUNT,
        PROJECT_POLICY,
        *CHECK,
    ]
    assert {c["command"] for c in second} <= READ_ONLY
    assert scenario.fake.state() == before
    assert "setup: nothing to change: gcloud is set to hw5-123456789, the 3 APIs" in again.stdout
    assert "Cloud Build's service account has the roles its builds need" in again.stdout
    assert "change(s) to make" not in again.stdout
    assert SUCCESS in again.stdout


def test_a_ready_project_gets_only_read_only_commands(scenario):
    scenario.fake.add_project(PROJECT)  # the defaults: everything setup provisions
    before = scenario.fake.state()
    done = scenario.setup()
    assert done.returncode == 0, output(done)
    assert {c["command"] for c in scenario.fake.calls()} <= READ_ONLY
    assert scenario.changing() == []
    assert scenario.argv()[:5] == [
        DESCRIBE_PROJECT,
        GET_PROJECT,
        LIST_ENABLED,
        DESCRIBE_REPO,
        GET_POLICY,
    ]
    assert scenario.fake.state() == before
    assert "nothing to change" in done.stdout


@pytest.mark.parametrize("api", [AR, RUN, CB])
def test_a_project_with_one_api_missing_gets_only_that_one_enabled(scenario, api):
    scenario.fake.add_project(PROJECT, apis=[a for a in (AR, RUN, CB) if a != api])
    done = scenario.setup()
    assert done.returncode == 0, output(done)
    assert scenario.changing() == [enable(api)]
    assert sorted(scenario.project()["apis"]) == sorted([AR, RUN, CB])
    assert SUCCESS in done.stdout
    if api == AR:
        # the repository cannot be looked at while Artifact Registry is off: it is looked at
        # right after enabling it, found, and left alone
        assert "setup: up to 3 change(s) to make" in done.stdout
        assert scenario.argv()[:8] == [
            DESCRIBE_PROJECT,
            GET_PROJECT,
            LIST_ENABLED,
            BUILD_ACCOUNT,
            PROJECT_POLICY,
            enable(AR),
            DESCRIBE_REPO,
            GET_POLICY,
        ]
    elif api == CB:
        # the same for Cloud Build's service account
        assert "setup: up to 1 change(s) to make" in done.stdout
        assert scenario.argv()[:8] == [
            DESCRIBE_PROJECT,
            GET_PROJECT,
            LIST_ENABLED,
            DESCRIBE_REPO,
            GET_POLICY,
            enable(CB),
            BUILD_ACCOUNT,
            PROJECT_POLICY,
        ]
    else:
        assert "setup: 1 change(s) to make" in done.stdout
        assert scenario.argv()[:8] == [
            DESCRIBE_PROJECT,
            GET_PROJECT,
            LIST_ENABLED,
            DESCRIBE_REPO,
            GET_POLICY,
            BUILD_ACCOUNT,
            PROJECT_POLICY,
            enable(api),
        ]
    assert "setup: done: 1 change(s) made" in done.stdout


def test_artifact_registry_off_and_no_reader_grants_after_looking(scenario):
    scenario.fake.add_project(PROJECT, apis=(RUN, CB), readers=())
    done = scenario.setup()
    assert done.returncode == 0, output(done)
    assert scenario.changing() == [enable(AR), grant()]


def test_no_reader_binding_gets_only_the_binding(scenario):
    scenario.fake.add_project(PROJECT, readers=())
    done = scenario.setup()
    assert done.returncode == 0, output(done)
    assert scenario.changing() == [grant()]
    assert scenario.fake.readers(PROJECT, "us-central1", "hw5-images") == [f"serviceAccount:{SA}"]


def test_another_configured_project_gets_only_config_set(scenario):
    scenario.fake.add_project(PROJECT)
    scenario.fake.add_project("hw5-987654321")  # now gcloud's project
    done = scenario.setup()
    assert done.returncode == 0, output(done)
    assert scenario.changing() == [SET_PROJECT]
    assert scenario.fake.state()["config"]["core/project"] == PROJECT


def test_the_dry_run_runs_nothing_and_prints_what_a_fresh_project_gets(scenario, tmp_path):
    fresh(scenario)
    dry = scenario.setup("--dry-run")
    assert dry.returncode == 0, output(dry)
    assert scenario.fake.calls() == []
    assert not (scenario.fake.state_dir / "calls.jsonl").exists()
    assert scenario.fake.project(PROJECT)["apis"] == []
    printed = [
        shlex.split(line)
        for line in dry.stdout.splitlines()
        if line.startswith("  gcloud ") or line.startswith("  setup/check_prereq.sh ")
    ]
    # the printed commands are exactly the ones a real run on a fresh project runs
    assert scenario.setup().returncode == 0
    assert [["gcloud", *argv] for argv in scenario.changing()] == printed[:-1]
    assert printed[-1] == [
        "setup/check_prereq.sh",
        "--student-id",
        "123456789",
        "--region",
        "us-central1",
        "--repository",
        "hw5-images",
        "--autograder-service-account",
        SA,
    ]
    assert "runs no gcloud command, not even the read-only checks" in dry.stdout


def test_the_dry_run_needs_no_gcloud_at_all(scenario):
    env = {**scenario.env, "PATH": str(Path(sys.executable).parent)}
    done = pipeline("setup", "--target", "gcp", "--dry-run", root=scenario.repo, env=env)
    assert done.returncode == 0, output(done)
    assert "gcloud services enable artifactregistry.googleapis.com run.googleapis.com" in (
        done.stdout
    )


def test_plan_runs_only_read_only_commands_and_prints_the_changes(scenario):
    scenario.fake.add_project(PROJECT, apis=(AR, CB), readers=())
    before = scenario.fake.state()
    done = scenario.setup("--plan")
    assert done.returncode == 0, output(done)
    assert {c["command"] for c in scenario.fake.calls()} <= READ_ONLY
    assert scenario.fake.state() == before
    planned = [
        shlex.split(line) for line in done.stdout.splitlines() if line.startswith("  gcloud ")
    ]
    assert planned == [["gcloud", *enable(RUN)], ["gcloud", *grant()]]
    assert "2 command(s) to run (none was run)" in done.stdout
    assert SUCCESS not in done.stdout  # the prerequisite check is not part of a plan


def test_a_missing_project_stops_before_any_change(scenario):
    scenario.fake.add_project("hw5-987654321")
    done = scenario.setup()
    assert done.returncode == 1
    assert scenario.argv() == [DESCRIBE_PROJECT]
    err = done.stderr
    assert "does not have permission to access projects instance [hw5-123456789]" in err
    assert "The project hw5-123456789 does not exist or your account cannot see it" in err
    assert "https://console.cloud.google.com/projectcreate" in err


def test_a_project_being_deleted_is_not_set_up(scenario):
    scenario.fake.add_project(PROJECT, lifecycle_state="DELETE_REQUESTED")
    done = scenario.setup()
    assert done.returncode == 1
    assert "is DELETE_REQUESTED, not ACTIVE" in done.stderr
    assert scenario.argv() == [DESCRIBE_PROJECT]


def test_a_repository_of_another_format_is_reported_not_changed(scenario):
    scenario.fake.add_project(PROJECT, repositories=(("us-central1", "hw5-images", "python"),))
    done = scenario.setup()
    assert done.returncode == 1
    assert "holds PYTHON packages, not Docker images" in done.stderr
    assert "gcloud artifacts repositories delete hw5-images --location=us-central1" in done.stderr
    assert scenario.changing() == []


def test_without_billing_enabling_stops_with_what_to_do_and_keeps_what_was_done(scenario):
    scenario.fake.add_project(PROJECT, apis=(), repositories=(), readers=(), billing=False)
    scenario.fake.set_property("core/project", None)
    done = scenario.setup()
    assert done.returncode == 1
    assert "FAILED_PRECONDITION: Billing account for project" in done.stdout
    assert "has no billing account: link the course's billing account" in done.stderr
    assert [c["command"] for c in scenario.fake.calls()][-2:] == ["config set", "services enable"]
    assert scenario.fake.state()["config"]["core/project"] == PROJECT  # the first change stays
    logs = list((scenario.repo / ".hw5" / "gcp" / "logs").glob("setup-2-*.log"))
    assert len(logs) == 1 and "FAILED_PRECONDITION" in logs[0].read_text()
    # once billing is linked, the next run goes on from there
    scenario.fake.add_project(PROJECT, apis=(), repositories=(), readers=(), billing=True)
    first = len(scenario.fake.calls())
    again = scenario.setup()
    assert again.returncode == 0, output(again)
    assert [c["argv"] for c in scenario.fake.calls()[first:] if c["command"] not in READ_ONLY] == [
        enable(AR, RUN, CB),
        CREATE_REPO,
        grant(),
    ]


def test_the_configured_autograder_account_is_the_one_granted(scenario):
    config = scenario.repo / "deployment.yaml"
    data = yaml.safe_load(config.read_text())
    data["autograder_service_account"] = COURSE_AUTOGRADER
    config.write_text(yaml.safe_dump(data))
    scenario.fake.add_project(PROJECT, readers=())
    done = scenario.setup()
    assert done.returncode == 0, output(done)
    assert scenario.changing() == [grant(COURSE_AUTOGRADER)]
    assert f"--autograder-service-account {COURSE_AUTOGRADER}" in done.stdout
    assert f"Checking if the autograder service account {COURSE_AUTOGRADER} can read" in (
        done.stdout
    )


def test_an_account_google_does_not_know_fails_with_what_to_check(scenario):
    config = scenario.repo / "deployment.yaml"
    data = yaml.safe_load(config.read_text())
    data["autograder_service_account"] = "ta-autogradr@ift6758-hw5-gcp-24.iam.gserviceaccount.com"
    config.write_text(yaml.safe_dump(data))
    scenario.fake.add_project(PROJECT, readers=())
    done = scenario.setup()
    assert done.returncode == 1
    assert "Service account ta-autogradr@ift6758-hw5-gcp-24" in done.stdout
    assert "Check autograder_service_account in" in done.stderr


def test_other_targets_are_refused_unless_gcp_is_asked_for(scenario):
    scenario.fake.add_project(PROJECT)
    done = scenario.setup(target=None)  # deployment.yaml says local
    assert done.returncode == 1
    assert "setup provisions Google Cloud (the gcp target), but the target is 'local'" in (
        done.stderr
    )
    assert "nox -s setup -- --target gcp" in done.stderr
    assert scenario.fake.calls() == []
    assert scenario.setup(target="container").returncode == 1
    assert scenario.setup(target="gcp").returncode == 0


def test_without_gcloud_it_says_how_to_install_it(scenario):
    env = {**scenario.env, "PATH": str(Path(sys.executable).parent)}
    done = pipeline("setup", "--target", "gcp", root=scenario.repo, env=env)
    assert done.returncode == 1
    assert "gcloud is not on PATH: install the Google Cloud CLI" in done.stderr


def test_a_failing_prerequisite_check_fails_setup(scenario):
    scenario.fake.add_project(PROJECT)
    (scenario.repo / "setup" / "check_prereq.sh").write_text('echo "broken check"\nexit 1\n')
    done = scenario.setup()
    assert done.returncode == 1
    assert "broken check" in done.stdout
    assert "setup: the prerequisite check failed" in done.stdout


def test_help_says_what_the_dry_run_and_plan_do(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "hw5kit.pipeline", "setup", "--help"],
        capture_output=True,
        text=True,
        env=subprocess_env(tmp_path),
    )
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "--dry-run run no gcloud command at all (not even read-only ones)" in text
    assert "--plan run only the read-only gcloud commands" in text
    assert "A second run finds everything in place, changes nothing and says so." in text


def config_for(*, v3: bool = False, **changes):
    """The repository's config with ``changes``; without its v3 services unless ``v3``."""
    data = yaml.safe_load((ROOT / "deployment.yaml").read_text())
    if not v3:
        data["services"] = {k: v for k, v in data["services"].items() if v["version"] != "v3"}
    data.update(changes)
    return config.parse(data)


def test_plan_orders_the_changes_and_skips_what_is_there():
    cfg = config_for()
    fresh_plan = setup_plan.plan(cfg, setup_plan.State.fresh())
    assert [s.kind for s in fresh_plan] == ["project", "apis", "repository", "reader"]
    ready = setup_plan.State(
        configured_project=PROJECT,
        enabled={AR, RUN, CB, "iam.googleapis.com"},
        repository_format="DOCKER",
        repository_known=True,
        can_read=True,
    )
    assert setup_plan.plan(cfg, ready) == []
    ready.enabled = {CB}
    ready.can_read = False
    steps = setup_plan.plan(cfg, ready)
    assert [list(s.argv) for s in steps] == [["gcloud", *enable(AR, RUN)], ["gcloud", *grant()]]
    other = config_for(region="europe-west1", repository="images", student_id="abc123")
    create = setup_plan.create_repository(other)
    assert create.argv[4:] == (
        "images",
        "--repository-format=docker",
        "--location=europe-west1",
        "--project=hw5-abc123",
    )


@pytest.mark.parametrize(
    ("bindings", "expected"),
    [
        ([], False),
        ([{"role": "roles/artifactregistry.reader", "members": [f"serviceAccount:{SA}"]}], True),
        ([{"role": "roles/artifactregistry.writer", "members": [f"serviceAccount:{SA}"]}], True),
        ([{"role": "roles/run.invoker", "members": [f"serviceAccount:{SA}"]}], False),
        ([{"role": "roles/artifactregistry.reader", "members": [f"user:{SA}"]}], False),
        (
            [
                {
                    "role": "roles/artifactregistry.reader",
                    "members": [f"serviceAccount:{SA}"],
                    "condition": {"expression": "false", "title": "never"},
                }
            ],
            False,
        ),
    ],
)
def test_read_access_is_an_unconditional_role_that_includes_reading(bindings, expected):
    assert setup_plan.can_read({"bindings": bindings, "etag": "x"}, SA) is expected


# --- v3: the APIs API Gateway needs ------------------------------------------------------------

PREREQ_V3 = [
    "setup/check_prereq.sh",
    "--student-id",
    "123456789",
    "--region",
    "us-central1",
    "--repository",
    "hw5-images",
    "--autograder-service-account",
    SA,
    "--api-gateway",
]


def test_a_fresh_project_with_v3_also_gets_the_api_gateway_apis(scenario_v3):
    scenario = fresh(scenario_v3)
    done = scenario.setup()
    assert done.returncode == 0, output(done)
    assert scenario.argv() == [
        DESCRIBE_PROJECT,
        GET_PROJECT,
        LIST_ENABLED,
        SET_PROJECT,
        enable(AR, RUN, CB, AG, SM, SC),
        DESCRIBE_REPO,
        BUILD_ACCOUNT,
        PROJECT_POLICY,
        CREATE_REPO,
        grant(),
        *CHECK,
    ]
    assert sorted(scenario.project()["apis"]) == sorted([AR, RUN, CB, AG, SM, SC])
    assert "setup: enable Artifact Registry, Cloud Run, Cloud Build, API Gateway, Service " in (
        done.stdout
    )
    # the prerequisite check is asked to check them too, and does
    assert f"  $ {shlex.join(PREREQ_V3)}\n" in done.stdout
    for label in ("API Gateway", "Service Management", "Service Control"):
        assert f"Checking if {label} is enabled (v3: API Gateway)..." in done.stdout
    assert SUCCESS in done.stdout
    again = scenario.setup()
    assert again.returncode == 0, output(again)
    assert "nothing to change: gcloud is set to hw5-123456789, the 6 APIs are enabled" in (
        again.stdout
    )


def test_a_course_ready_project_with_v3_gets_only_the_missing_gateway_apis(scenario_v3):
    scenario_v3.fake.add_project(PROJECT, apis=(AR, RUN, CB, SM))
    done = scenario_v3.setup()
    assert done.returncode == 0, output(done)
    assert scenario_v3.changing() == [enable(AG, SC)]
    assert "APIs enabled: 4 of 6 (missing: apigateway.googleapis.com, " in done.stdout


def test_without_v3_the_gateway_apis_are_neither_enabled_nor_checked(scenario):
    scenario.fake.add_project(PROJECT)  # the course's three APIs, nothing of API Gateway
    done = scenario.setup()
    assert done.returncode == 0, output(done)
    assert scenario.changing() == []
    assert "--api-gateway" not in done.stdout and "API Gateway" not in done.stdout
    assert sorted(scenario.project()["apis"]) == sorted([AR, RUN, CB])


def test_an_api_key_gateway_also_gets_the_api_keys_api(scenario_v3):
    config_path = scenario_v3.repo / "deployment.yaml"
    data = yaml.safe_load(config_path.read_text())
    data["gateway"]["api_key"] = True
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    scenario_v3.fake.add_project(PROJECT, apis=(AR, RUN, CB, AG, SM, SC))
    done = scenario_v3.setup()
    assert done.returncode == 0, output(done)
    assert scenario_v3.changing() == [enable(KEYS)]


def test_the_dry_run_with_v3_prints_the_gateway_apis(scenario_v3):
    dry = scenario_v3.setup("--dry-run")
    assert dry.returncode == 0, output(dry)
    assert f"  gcloud {shlex.join(enable(AR, RUN, CB, AG, SM, SC))}\n" in dry.stdout
    assert f"  {shlex.join(PREREQ_V3)}\n" in dry.stdout


def test_the_required_apis_follow_the_config():
    assert setup_plan.required_apis(config_for()) == (AR, RUN, CB)
    assert setup_plan.required_apis(config_for(v3=True)) == (AR, RUN, CB, AG, SM, SC)
    keyed = config_for(v3=True, gateway={"api_id": "hw5-api", "api_key": True})
    assert setup_plan.required_apis(keyed) == (AR, RUN, CB, AG, SM, SC, KEYS)


# --- Cloud Build's service account (issue 19) -------------------------------------------------


def build_grants(account: str) -> list[list[str]]:
    member = f"--member=serviceAccount:{account}"
    return [
        [
            "projects",
            "add-iam-policy-binding",
            PROJECT,
            member,
            "--role=roles/storage.objectViewer",
            "--condition=None",
        ],
        [
            "projects",
            "add-iam-policy-binding",
            PROJECT,
            member,
            "--role=roles/logging.logWriter",
            "--condition=None",
        ],
        [
            "artifacts",
            "repositories",
            "add-iam-policy-binding",
            "hw5-images",
            f"--project={PROJECT}",
            "--location=us-central1",
            member,
            "--role=roles/artifactregistry.writer",
        ],
    ]


def compute_account(scenario: Scenario) -> str:
    return f"{scenario.project()['number']}-compute@developer.gserviceaccount.com"


def test_a_build_account_without_roles_gets_exactly_the_minimal_grants(scenario):
    scenario.fake.add_project(PROJECT, default_grants=False)
    account = compute_account(scenario)
    plan = scenario.setup("--plan")
    assert plan.returncode == 0, output(plan)
    assert scenario.changing() == []
    planned = [
        shlex.split(line) for line in plan.stdout.splitlines() if line.startswith("  gcloud ")
    ]
    assert planned == [["gcloud", *argv] for argv in build_grants(account)]
    assert (
        f"Cloud Build runs builds as {account}: it lacks roles/storage.objectViewer (to read the "
        "source gcloud uploads), roles/logging.logWriter (to write the build's log), "
        "roles/artifactregistry.writer (to push the images)" in plan.stdout
    )

    done = scenario.setup()
    assert done.returncode == 0, output(done)
    assert scenario.changing() == build_grants(account)
    assert f"setup: let Cloud Build's service account ({account}) push the images:" in done.stdout
    assert SUCCESS in done.stdout
    # the repository role is granted on the repository alone, not on the project
    project_roles = {
        b["role"]
        for b in scenario.project()["iam"]["bindings"]
        if f"serviceAccount:{account}" in b["members"]
    }
    assert project_roles == {"roles/storage.objectViewer", "roles/logging.logWriter"}
    again = scenario.setup()
    assert again.returncode == 0 and "nothing to change" in again.stdout


def test_a_fresh_project_without_default_grants_is_set_up_and_then_builds(scenario):
    scenario.fake.add_project(
        PROJECT, apis=(), repositories=(), readers=(), set_default=False, default_grants=False
    )
    account = compute_account(scenario)
    done = scenario.setup()
    assert done.returncode == 0, output(done)
    assert scenario.changing() == [
        SET_PROJECT,
        enable(AR, RUN, CB),
        CREATE_REPO,
        grant(),
        *build_grants(account),
    ]
    # the build that failed fetching its source before setup now succeeds
    built = pipeline("build", "--target", "gcp", "backend_v1", root=scenario.repo, env=scenario.env)
    assert built.returncode == 0, output(built)
    assert scenario.fake.calls("builds submit")[-1]["exit"] == 0


def test_a_role_that_covers_a_need_is_not_granted_again(scenario):
    scenario.fake.add_project(PROJECT, default_grants=False)
    account = compute_account(scenario)
    scenario.fake.calls()  # nothing yet
    subprocess.run(
        [
            "gcloud",
            "projects",
            "add-iam-policy-binding",
            PROJECT,
            f"--member=serviceAccount:{account}",
            "--role=roles/artifactregistry.admin",
        ],
        env=scenario.env,
        check=True,
        capture_output=True,
    )
    first = len(scenario.fake.calls())
    done = scenario.setup()
    assert done.returncode == 0, output(done)
    changed = [c["argv"] for c in scenario.fake.calls()[first:] if c["command"] not in READ_ONLY]
    assert changed == build_grants(account)[:2]  # pushing is covered at the project level


def test_the_dry_run_shows_the_build_account_grants_as_conditional(scenario):
    dry = scenario.setup("--dry-run")
    assert dry.returncode == 0, output(dry)
    conditional = [line for line in dry.stdout.splitlines() if line.startswith("  if missing: ")]
    assert len(conditional) == 3
    placeholder = "PROJECT_NUMBER-compute@developer.gserviceaccount.com"
    for line, argv in zip(conditional, build_grants(placeholder), strict=True):
        assert line.startswith(f"  if missing: {shlex.join(['gcloud', *argv])}  # to ")
    assert "gcloud builds get-default-service-account" in dry.stdout


def test_a_change_that_hangs_is_stopped_with_what_to_check(scenario):
    import time

    scenario.fake.add_project(PROJECT, apis=(AR, CB))
    scenario.fake.configure(slow={"services enable": 120})
    started = time.monotonic()
    done = pipeline(
        "setup",
        "--target",
        "gcp",
        root=scenario.repo,
        env={**scenario.env, "HW5_GCP_CHANGE_WAIT": "2"},
    )
    assert done.returncode == 1
    assert time.monotonic() - started < 60
    text = " ".join(done.stderr.split())
    assert "services enable run.googleapis.com" in text
    assert "It did not finish within 2 s and was stopped (Google may still complete it)" in text
    assert "nox -s setup -- --plan" in text
