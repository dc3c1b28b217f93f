"""The commands `nox -s setup` and setup/check_prereq.sh use, on the fake gcloud: projects
describe, services enable, repositories create, IAM policies; and the seeding CLI."""

import json
import subprocess
import sys

import pytest
import yaml

from hw5kit.gcloud_fake import COURSE_AUTOGRADER, COURSE_TEST_AUTOGRADER, FakeGcloud

from ..conftest import subprocess_env
from ..support.pipeline import PROJECT, Cloud

AR, RUN, CB = "artifactregistry.googleapis.com", "run.googleapis.com", "cloudbuild.googleapis.com"
READER = "roles/artifactregistry.reader"


@pytest.fixture
def bare(tmp_path) -> Cloud:
    """A fresh project: no API enabled, no repository, no binding."""
    fake = FakeGcloud(tmp_path / "bare-state")
    fake.install(tmp_path / "bare-bin")
    fake.add_project(PROJECT, apis=(), repositories=(), readers=())
    return Cloud(fake, fake.env(subprocess_env(tmp_path)))


def enabled(cloud: Cloud) -> list[str]:
    done = cloud.gcloud("services", "list", "--enabled", "--format=value(config.name)")
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_projects_describe_by_id_or_number_and_a_missing_project(cloud):
    done = cloud.gcloud("projects", "describe", PROJECT, "--format=json")
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout)
    assert described["projectId"] == PROJECT and described["lifecycleState"] == "ACTIVE"
    number = described["projectNumber"]
    assert len(number) == 12 and number.isdigit()
    by_number = cloud.gcloud("projects", "describe", number, "--format=value(projectId)")
    assert by_number.stdout == f"{PROJECT}\n"
    assert yaml.safe_load(cloud.gcloud("projects", "describe", PROJECT).stdout)["name"] == PROJECT
    missing = cloud.gcloud("projects", "describe", "hw5-000000000")
    assert missing.returncode == 1
    assert missing.stderr.startswith("ERROR: (gcloud.projects.describe) [")
    assert "does not have permission to access projects instance [hw5-000000000]" in (
        missing.stderr
    )


def test_a_fresh_project_has_nothing_and_enabling_changes_services_list(bare):
    assert enabled(bare) == []
    done = bare.gcloud("services", "enable", RUN, CB)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith('Operation "operations/acf.p2-')
    assert done.stderr.endswith('" finished successfully.\n')
    assert enabled(bare) == [CB, RUN]
    again = bare.gcloud("services", "enable", RUN)
    assert again.returncode == 0 and again.stderr == ""  # already on: nothing to do
    calls = bare.fake.calls("services enable")
    assert [c["enabled"] for c in calls] == [[RUN, CB], []]
    asynchronous = bare.gcloud("services", "enable", AR, "--async")
    assert "gcloud beta services operations wait operations/acf.p2-" in asynchronous.stderr
    assert enabled(bare) == [AR, CB, RUN]


def test_enable_refuses_unknown_services_and_needs_billing(bare, tmp_path):
    unknown = bare.gcloud("services", "enable", "runn.googleapis.com", RUN)
    assert unknown.returncode == 1
    assert "PERMISSION_DENIED: Not found or permission denied for service(s): runn." in (
        unknown.stderr
    )
    assert enabled(bare) == []  # nothing enabled when one name is wrong
    assert bare.gcloud("services", "enable").returncode == 2
    bare.fake.add_project(PROJECT, apis=(), repositories=(), readers=(), billing=False)
    unbilled = bare.gcloud("services", "enable", AR, RUN, "iam.googleapis.com")
    assert unbilled.returncode == 1
    number = bare.fake.project(PROJECT)["number"]
    assert (
        f"FAILED_PRECONDITION: Billing account for project '{number}' is not found. Billing must "
        f"be enabled for activation of service(s) '{AR},{RUN}' to proceed." in unbilled.stderr
    )
    assert enabled(bare) == []
    assert bare.gcloud("services", "enable", "iam.googleapis.com").returncode == 0


def test_a_repository_is_described_with_the_format_and_location_it_was_created_with(bare):
    bare.gcloud("services", "enable", AR)
    created = bare.gcloud(
        "artifacts",
        "repositories",
        "create",
        "py-packages",
        "--repository-format=python",
        "--location=europe-west1",
        "--description=wheels",
    )
    assert created.returncode == 0, created.stderr
    lines = created.stderr.splitlines()
    assert lines[0] == "Create request issued for: [py-packages]"
    assert lines[1].startswith(f"Waiting for operation [projects/{PROJECT}/locations/europe-west1/")
    assert lines[-1] == "Created repository [py-packages]."
    described = json.loads(
        bare.gcloud(
            "artifacts",
            "repositories",
            "describe",
            "py-packages",
            "--location=europe-west1",
            "--format=json",
        ).stdout
    )
    assert described["format"] == "PYTHON"
    assert described["description"] == "wheels"
    assert (
        described["name"] == f"projects/{PROJECT}/locations/europe-west1/repositories/py-packages"
    )
    assert described["registryUri"] == f"europe-west1-python.pkg.dev/{PROJECT}/py-packages"
    elsewhere = bare.gcloud(
        "artifacts", "repositories", "describe", "py-packages", "--location=us-central1"
    )
    assert elsewhere.returncode == 1 and "NOT_FOUND" in elsewhere.stderr
    twice = bare.gcloud(
        "artifacts",
        "repositories",
        "create",
        "py-packages",
        "--repository-format=docker",
        "--location=europe-west1",
    )
    assert twice.returncode == 1
    assert "ALREADY_EXISTS: the repository already exists" in twice.stderr
    assert bare.fake.project(PROJECT)["repositories"]["europe-west1/py-packages"]["format"] == (
        "PYTHON"
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--location=us-central1"], 2, "argument --repository-format: Must be specified."),
        (
            ["--location=us-central1", "--repository-format=dockr"],
            2,
            "Invalid choice: 'dockr'. Valid choices are [apt, docker, go, kfp, maven, npm, "
            "python, yum].",
        ),
        (["--location=us-centrall", "--repository-format=docker"], 2, "not an Artifact Registry"),
        (["--repository-format=docker"], 1, "Failed to find attribute [location]"),
        (["--location=us", "--repository-format=docker", "--mode=remote-repository"], 2, "--mode"),
    ],
)
def test_create_checks_its_flags(bare, args, code, message):
    bare.gcloud("services", "enable", AR)
    done = bare.gcloud("artifacts", "repositories", "create", "hw5-images", *args)
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert bare.fake.project(PROJECT)["repositories"] == {}


def test_create_needs_the_api_and_a_valid_name(bare):
    args = ("--repository-format=docker", "--location=us-central1")
    off = bare.gcloud("artifacts", "repositories", "create", "hw5-images", *args)
    assert off.returncode == 1
    assert "Artifact Registry API has not been used in project" in off.stderr
    bare.gcloud("services", "enable", AR)
    bad = bare.gcloud("artifacts", "repositories", "create", "HW5_images", *args)
    assert bad.returncode == 1 and "INVALID_ARGUMENT: invalid repository ID" in bad.stderr
    assert bare.gcloud("artifacts", "repositories", "create", "hw5-images", *args).returncode == 0
    assert bare.fake.project(PROJECT)["repositories"]["us-central1/hw5-images"]["format"] == (
        "DOCKER"
    )


def policy(cloud: Cloud) -> dict:
    done = cloud.gcloud(
        "artifacts",
        "repositories",
        "get-iam-policy",
        "hw5-images",
        "--location=us-central1",
        "--format=json",
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def bind(cloud: Cloud, member: str, role: str = READER) -> subprocess.CompletedProcess:
    return cloud.gcloud(
        "artifacts",
        "repositories",
        "add-iam-policy-binding",
        "hw5-images",
        "--location=us-central1",
        f"--member={member}",
        f"--role={role}",
    )


def test_iam_bindings_accumulate_and_adding_one_twice_changes_nothing(cloud):
    cloud.fake.add_project(PROJECT, repositories=(("us-central1", "other"),), readers=())
    assert policy(cloud)["bindings"] == [
        {"members": [f"serviceAccount:{COURSE_TEST_AUTOGRADER}"], "role": READER}
    ]
    first = policy(cloud)["etag"]
    done = bind(cloud, f"serviceAccount:{COURSE_AUTOGRADER}")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "Updated IAM policy for repository [hw5-images].\n"
    printed = yaml.safe_load(done.stdout)
    assert printed == policy(cloud)
    assert printed["bindings"][0]["members"] == sorted(
        [f"serviceAccount:{COURSE_TEST_AUTOGRADER}", f"serviceAccount:{COURSE_AUTOGRADER}"]
    )
    assert printed["etag"] != first and printed["version"] == 1
    bind(cloud, "user:student@example.com", "roles/artifactregistry.writer")
    roles = {b["role"]: b["members"] for b in policy(cloud)["bindings"]}
    assert roles["roles/artifactregistry.writer"] == ["user:student@example.com"]
    assert len(roles[READER]) == 2
    etag = policy(cloud)["etag"]
    again = bind(cloud, f"serviceAccount:{COURSE_AUTOGRADER}")
    assert again.returncode == 0 and policy(cloud)["etag"] == etag
    assert (
        cloud.fake.calls("artifacts repositories add-iam-policy-binding")[-1]["binding_added"]
        is False
    )
    # another repository's policy is its own
    other = cloud.gcloud(
        "artifacts",
        "repositories",
        "get-iam-policy",
        "other",
        "--location=us-central1",
        "--format=json",
    )
    assert json.loads(other.stdout) == {"etag": "ACAB"}


def test_a_new_repository_has_an_empty_policy_and_reading_it_changes_nothing(bare):
    bare.gcloud("services", "enable", AR)
    bare.gcloud(
        "artifacts",
        "repositories",
        "create",
        "hw5-images",
        "--repository-format=docker",
        "--location=us-central1",
    )
    before = bare.fake.state()
    assert policy(bare) == {"etag": "ACAB"}
    default = bare.gcloud(
        "artifacts", "repositories", "get-iam-policy", "hw5-images", "--location=us-central1"
    )
    assert default.stdout == "etag: ACAB\n"
    assert bare.fake.state() == before


@pytest.mark.parametrize(
    ("member", "role", "message"),
    [
        ("ift6758@example.com", READER, "INVALID_ARGUMENT: Invalid member: ift6758@example.com."),
        (
            "serviceAccount:nobody-here@hw5-12345.iam.gserviceaccount.com",
            READER,
            "INVALID_ARGUMENT: Service account nobody-here@hw5-12345.iam.gserviceaccount.com "
            "does not exist.",
        ),
        (
            f"serviceAccount:{COURSE_AUTOGRADER}",
            "roles/run.invoker",
            "INVALID_ARGUMENT: Role roles/run.invoker is not supported for this resource.",
        ),
        (
            f"serviceAccount:{COURSE_AUTOGRADER}",
            "roles/artifactregistry.Reader",
            "is not supported for this resource",
        ),
    ],
)
def test_bad_members_unknown_accounts_and_roles_are_refused(cloud, member, role, message):
    before = policy(cloud)
    done = bind(cloud, member, role)
    assert done.returncode == 1
    assert message in done.stderr
    assert policy(cloud) == before


def test_iam_commands_need_the_repository_and_their_flags(cloud):
    missing = cloud.gcloud(
        "artifacts", "repositories", "get-iam-policy", "nope", "--location=us-central1"
    )
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    no_role = cloud.gcloud(
        "artifacts",
        "repositories",
        "add-iam-policy-binding",
        "hw5-images",
        "--location=us-central1",
        f"--member=serviceAccount:{COURSE_AUTOGRADER}",
    )
    assert no_role.returncode == 2 and "argument --role: Must be specified." in no_role.stderr
    # the kit never adds conditional bindings: --condition is outside the allow-list
    conditional = cloud.gcloud(
        "artifacts",
        "repositories",
        "add-iam-policy-binding",
        "hw5-images",
        "--location=us-central1",
        f"--member=serviceAccount:{COURSE_AUTOGRADER}",
        f"--role={READER}",
        "--condition=None",
    )
    assert conditional.returncode == 2 and "unrecognized arguments: --condition=None" in (
        conditional.stderr
    )


def test_the_seed_cli_sets_up_each_scenario(tmp_path):
    state = tmp_path / "state"

    def seed(*args):
        done = subprocess.run(
            [sys.executable, "-m", "hw5kit.gcloud_fake", "seed", "--state", str(state), *args],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return FakeGcloud(state)

    fake = seed("hw5-000000001", "--fresh")
    fresh = fake.project("hw5-000000001")
    assert fresh["apis"] == [] and fresh["repositories"] == {}
    assert fake.state()["config"]["core/project"] == "hw5-000000001"
    fake = seed("hw5-000000002", "--no-set-default")
    assert sorted(fake.project("hw5-000000002")["apis"]) == sorted([AR, RUN, CB])
    assert fake.readers("hw5-000000002", "us-central1", "hw5-images") == [
        f"serviceAccount:{COURSE_TEST_AUTOGRADER}"
    ]
    assert fake.state()["config"]["core/project"] == "hw5-000000001"
    fake = seed("hw5-000000003", "--without-api", RUN, "--without-reader", "--no-billing")
    third = fake.project("hw5-000000003")
    assert sorted(third["apis"]) == sorted([AR, CB]) and third["billing"] is False
    assert fake.readers("hw5-000000003", "us-central1", "hw5-images") == []
    fake = seed("hw5-000000004", "--without-repository")
    assert fake.project("hw5-000000004")["repositories"] == {}
    fake = seed("hw5-000000005", "--reader", COURSE_AUTOGRADER)
    assert fake.readers("hw5-000000005", "us-central1", "hw5-images") == [
        f"serviceAccount:{COURSE_AUTOGRADER}"
    ]
    gateway = ("apigateway.googleapis.com", "servicemanagement.googleapis.com")
    fake = seed("hw5-000000006", "--api-gateway", "--without-api", "servicecontrol.googleapis.com")
    assert sorted(fake.project("hw5-000000006")["apis"]) == sorted([AR, RUN, CB, *gateway])
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "hw5kit.gcloud_fake",
            "seed",
            "--state",
            str(state),
            "p",
            "--without-api",
            "storage.googleapis.com",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_a_seeded_service_account_can_be_granted(cloud):
    account = "my-grader@hw5-123456789.iam.gserviceaccount.com"
    assert bind(cloud, f"serviceAccount:{account}").returncode == 1
    cloud.fake.add_service_account(account)
    assert bind(cloud, f"serviceAccount:{account}").returncode == 0
    assert f"serviceAccount:{account}" in cloud.fake.readers(PROJECT, "us-central1", "hw5-images")
