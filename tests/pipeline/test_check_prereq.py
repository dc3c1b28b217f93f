"""setup/check_prereq.sh against the fake gcloud: the course's messages, non-interactive."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hw5kit.gcloud_fake import (
    COURSE_AUTOGRADER,
    COURSE_TEST_AUTOGRADER,
    GATEWAY_APIS,
    FakeGcloud,
)

from ..conftest import ROOT, subprocess_env
from ..support.pipeline import PROJECT, make_repo, pipeline

SCRIPT = ROOT / "setup" / "check_prereq.sh"
SUCCESS = "All prerequisites are met. You can proceed with the assignment."


def check(env, *args, stdin=None):
    # python3 with PyYAML (the kit's interpreter) is one of the course's prerequisites
    env = {**env, "PATH": f"{env['PATH']}{os.pathsep}{Path(sys.executable).parent}"}
    return subprocess.run(
        ["bash", SCRIPT, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def test_a_ready_project_passes_with_the_course_success_line(cloud):
    done = check(cloud.env, "--student-id", "123456789")
    assert done.returncode == 0, done.stdout
    assert done.stdout.rstrip().endswith(SUCCESS)
    assert f"Repository us-central1-docker.pkg.dev/{PROJECT}/hw5-images exists" in done.stdout
    commands = [c["command"] for c in cloud.fake.calls()]
    assert commands == [
        "config get-value",
        "projects describe",
        "services list",
        "artifacts repositories describe",
        "artifacts repositories get-iam-policy",
        "builds get-default-service-account",
        "projects get-iam-policy",
    ]
    assert f"Checking if the autograder service account {COURSE_TEST_AUTOGRADER} can read" in (
        done.stdout
    )
    assert "Checking if Cloud Build's service account can read the uploaded source" in done.stdout


def test_the_student_id_comes_from_the_environment_or_stdin(cloud):
    assert check({**cloud.env, "STUDENT_ID": " 123456789 "}).returncode == 0
    asked = check(cloud.env, stdin="123456789\n")
    assert asked.returncode == 0 and asked.stdout.rstrip().endswith(SUCCESS)


REPO = "us-central1-docker.pkg.dev/hw5-123456789/hw5-images"
NO_READER = (
    f"The autograder service account {COURSE_TEST_AUTOGRADER} does not have read access to "
    f"{REPO}. Please grant it the Artifact Registry Reader role before running this script:"
)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("project-unset", "Project is not set to hw5-123456789. Please set the project to"),
        ("other-project", "Project is not set to hw5-123456789. Please set the project to"),
        ("no-project", "Project hw5-123456789 does not exist or your account cannot access it."),
        ("no-run", "Cloud Run is not enabled. Please enable Cloud Run before running"),
        ("no-build", "Cloud Build is not enabled. Please enable Cloud Build before running"),
        (
            "no-registry",
            "Artifact Registry is not enabled. Please enable Artifact Registry before running",
        ),
        ("no-repository", f"Repository {REPO} does not exist"),
        ("no-reader", NO_READER),
    ],
)
def test_each_missing_piece_fails_with_the_course_message(tmp_path, setup, message):
    fake = FakeGcloud(tmp_path / "state")
    fake.install(tmp_path / "bin")
    apis = {"run.googleapis.com", "cloudbuild.googleapis.com", "artifactregistry.googleapis.com"}
    apis -= {
        "no-run": {"run.googleapis.com"},
        "no-build": {"cloudbuild.googleapis.com"},
        "no-registry": {"artifactregistry.googleapis.com"},
    }.get(setup, set())
    repositories = () if setup == "no-repository" else (("us-central1", "hw5-images"),)
    readers = () if setup == "no-reader" else (COURSE_TEST_AUTOGRADER,)
    if setup == "no-project":
        fake.add_project("hw5-987654321")
        fake.set_property("core/project", PROJECT)  # set, but it does not exist
    else:
        fake.add_project(PROJECT, apis=apis, repositories=repositories, readers=readers)
    if setup == "other-project":
        fake.add_project("hw5-987654321")
    if setup == "project-unset":
        fake.set_property("core/project", None)
    done = check(fake.env(subprocess_env(tmp_path)), "--student-id=123456789")
    assert done.returncode == 1, done.stdout
    assert message in done.stdout
    assert SUCCESS not in done.stdout
    # the check stops at the first missing piece
    lines = done.stdout.rstrip().splitlines()
    at = next(i for i, line in enumerate(lines) if message in line)
    assert not any(line.startswith("Checking") for line in lines[at + 1 :])
    if setup == "no-reader":
        hint = done.stdout.rstrip().splitlines()[-1].split()
        assert hint[:4] == ["gcloud", "artifacts", "repositories", "add-iam-policy-binding"]
        assert f"--member=serviceAccount:{COURSE_TEST_AUTOGRADER}" in hint
    if setup == "no-project":
        assert "does not have permission to access projects instance" in done.stdout


@pytest.mark.parametrize(
    "role",
    [
        "roles/artifactregistry.reader",
        "roles/artifactregistry.writer",
        "roles/artifactregistry.repoAdmin",
        "roles/viewer",
    ],
)
def test_roles_that_include_reading_count_as_read_access(tmp_path, role):
    fake = FakeGcloud(tmp_path / "state")
    fake.install(tmp_path / "bin")
    fake.add_project(PROJECT, readers=())
    env = fake.env(subprocess_env(tmp_path))
    bound = subprocess.run(
        [
            "gcloud",
            "artifacts",
            "repositories",
            "add-iam-policy-binding",
            "hw5-images",
            "--location=us-central1",
            f"--member=serviceAccount:{COURSE_TEST_AUTOGRADER}",
            f"--role={role}",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert bound.returncode == 0, bound.stderr
    done = check(env, "--student-id", "123456789")
    assert done.returncode == 0, done.stdout
    assert done.stdout.rstrip().endswith(SUCCESS)


def test_read_access_for_another_account_or_under_a_condition_does_not_count(tmp_path):
    fake = FakeGcloud(tmp_path / "state")
    fake.install(tmp_path / "bin")
    fake.add_project(PROJECT, readers=(COURSE_AUTOGRADER,))
    with fake.store.locked() as state:  # a conditional binding, as the console can add
        policy = state["projects"][PROJECT]["repository_iam"]["us-central1/hw5-images"]
        policy["bindings"].append(
            {
                "condition": {"expression": "request.time < timestamp('2000-01-01T00:00:00Z')"},
                "members": [f"serviceAccount:{COURSE_TEST_AUTOGRADER}"],
                "role": "roles/artifactregistry.reader",
            }
        )
    env = fake.env(subprocess_env(tmp_path))
    done = check(env, "--student-id", "123456789")
    assert done.returncode == 1 and NO_READER in done.stdout
    # the account is configurable: by flag, or by the course script's variable name
    assert (
        check(
            env, "--student-id", "123456789", "--autograder-service-account", COURSE_AUTOGRADER
        ).returncode
        == 0
    )
    assert (
        check(
            {**env, "TA_SERVICE_ACCOUNT": COURSE_AUTOGRADER}, "--student-id", "123456789"
        ).returncode
        == 0
    )


def test_a_repository_of_another_format_fails(tmp_path):
    fake = FakeGcloud(tmp_path / "state")
    fake.install(tmp_path / "bin")
    fake.add_project(PROJECT, repositories=(("us-central1", "hw5-images", "python"),))
    done = check(fake.env(subprocess_env(tmp_path)), "--student-id", "123456789")
    assert done.returncode == 1
    assert "holds PYTHON packages, not Docker images" in done.stdout


def test_region_and_repository_are_configurable(tmp_path):
    fake = FakeGcloud(tmp_path / "state")
    fake.install(tmp_path / "bin")
    fake.add_project(PROJECT, repositories=(("europe-west1", "images"),))
    env = fake.env(subprocess_env(tmp_path))
    assert check(env, "--student-id", "123456789").returncode == 1
    done = check(
        env, "--student-id", "123456789", "--region", "europe-west1", "--repository=images"
    )
    assert done.returncode == 0, done.stdout
    assert f"Repository europe-west1-docker.pkg.dev/{PROJECT}/images exists" in done.stdout
    env_done = check(
        {**env, "PROJECT_REGION": "europe-west1", "REPO_NAME": "images"},
        "--student-id",
        "123456789",
    )
    assert env_done.returncode == 0, env_done.stdout


def test_gcloud_errors_are_shown_not_hidden(tmp_path):
    fake = FakeGcloud(tmp_path / "state")
    fake.install(tmp_path / "bin")
    fake.add_project(PROJECT)
    env = fake.env(subprocess_env(tmp_path))
    # a services list that fails (as with an expired login) is reported as such, with gcloud's
    # message, not as "Cloud Run is not enabled"
    done = check({**env, "CLOUDSDK_CORE_PROJECT": "hw5-000000000"}, "--student-id", "000000000")
    assert done.returncode == 1
    assert "Project hw5-000000000 does not exist or your account cannot access it" in done.stdout
    assert "  ERROR: (gcloud.projects.describe)" in done.stdout


def test_bad_options_are_usage_errors():
    done = subprocess.run(["bash", SCRIPT, "--region"], capture_output=True, text=True)
    assert done.returncode == 2 and "option --region needs a value" in done.stderr
    done = subprocess.run(["bash", SCRIPT, "--bogus"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown option: --bogus" in done.stderr
    helped = subprocess.run(["bash", SCRIPT, "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--autograder-service-account" in helped.stdout
    assert COURSE_AUTOGRADER in helped.stdout


def test_without_gcloud_it_says_so(tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("bash", "sed", "grep"):
        (bare / tool).symlink_to(shutil.which(tool))
    done = check({"PATH": str(bare)}, "--student-id", "1")
    assert done.returncode == 1
    assert "gcloud is not installed. Please install gcloud" in done.stdout


def test_the_nox_session_passes_the_configured_student_id(tmp_path, cloud):
    repo = make_repo(tmp_path / "repo")
    env = {**cloud.env, "PATH": f"{cloud.env['PATH']}{os.pathsep}{Path(sys.executable).parent}"}
    done = pipeline("check-prereq", root=repo, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Checking if the project is set to hw5-123456789..." in done.stdout
    # the region, repository and autograder account come from deployment.yaml too
    config = repo / "deployment.yaml"
    config.write_text(config.read_text().replace(COURSE_TEST_AUTOGRADER, COURSE_AUTOGRADER))
    refused = pipeline("check-prereq", root=repo, env=env)
    assert refused.returncode == 1
    assert f"The autograder service account {COURSE_AUTOGRADER} does not have" in refused.stdout


# --- v3: --api-gateway (or CHECK_API_GATEWAY=1) also checks what API Gateway needs -----------

COURSE_APIS = ("artifactregistry.googleapis.com", "cloudbuild.googleapis.com", "run.googleapis.com")
GATEWAY_LABELS = {
    "apigateway.googleapis.com": "API Gateway",
    "servicemanagement.googleapis.com": "Service Management",
    "servicecontrol.googleapis.com": "Service Control",
}


def gateway_project(tmp_path, *, without=()):
    fake = FakeGcloud(tmp_path / "state")
    fake.install(tmp_path / "bin")
    apis = [a for a in (*COURSE_APIS, *GATEWAY_APIS) if a not in without]
    fake.add_project(PROJECT, apis=apis)
    return fake, fake.env(subprocess_env(tmp_path))


def test_with_api_gateway_a_ready_project_passes_with_the_course_success_line(tmp_path):
    _fake, env = gateway_project(tmp_path)
    done = check(env, "--student-id", "123456789", "--api-gateway")
    assert done.returncode == 0, done.stdout
    assert done.stdout.rstrip().endswith(SUCCESS)
    for label in GATEWAY_LABELS.values():
        assert f"Checking if {label} is enabled (v3: API Gateway)..." in done.stdout
    by_env = check({**env, "CHECK_API_GATEWAY": "1"}, "--student-id", "123456789")
    assert by_env.returncode == 0 and "(v3: API Gateway)" in by_env.stdout


@pytest.mark.parametrize("api", GATEWAY_APIS)
def test_with_api_gateway_each_missing_gateway_api_fails_with_what_to_run(tmp_path, api):
    _fake, env = gateway_project(tmp_path, without=(api,))
    for done in (
        check(env, "--student-id", "123456789", "--api-gateway"),
        check({**env, "CHECK_API_GATEWAY": "1"}, "--student-id", "123456789"),
    ):
        assert done.returncode == 1, done.stdout
        label = GATEWAY_LABELS[api]
        lines = done.stdout.rstrip().splitlines()
        assert lines[-2] == (
            f"{label} is not enabled. Please enable {label} before running this script (v3's "
            "API gateway needs it; `nox -s setup` enables it):"
        )
        assert lines[-1].split() == [
            "gcloud", "services", "enable", *GATEWAY_APIS, f"--project={PROJECT}",
        ]  # fmt: skip
        assert SUCCESS not in done.stdout


def test_without_api_gateway_the_course_checks_are_unchanged(tmp_path):
    # a course project with none of API Gateway's APIs passes as before, the same lines
    _fake, env = gateway_project(tmp_path, without=GATEWAY_APIS)
    done = check(env, "--student-id", "123456789")
    assert done.returncode == 0, done.stdout
    assert done.stdout.rstrip().endswith(SUCCESS)
    assert "API Gateway" not in done.stdout
    checking = [line for line in done.stdout.splitlines() if line.endswith(" is enabled...")]
    assert checking == [
        "Checking if Cloud Run is enabled...",
        "Checking if Cloud Build is enabled...",
        "Checking if Artifact Registry is enabled...",
    ]


def test_the_nox_session_asks_for_the_gateway_apis_when_v3_is_configured(tmp_path):
    _fake, env = gateway_project(tmp_path, without=("servicecontrol.googleapis.com",))
    env = {**env, "PATH": f"{env['PATH']}{os.pathsep}{Path(sys.executable).parent}"}
    with_v3 = pipeline("check-prereq", root=make_repo(tmp_path / "v3"), env=env)
    assert with_v3.returncode == 1
    assert "Service Control is not enabled." in with_v3.stdout
    course = pipeline("check-prereq", root=make_repo(tmp_path / "course", v3=False), env=env)
    assert course.returncode == 0, course.stdout
    assert course.stdout.rstrip().endswith(SUCCESS)


# --- Cloud Build's service account (issue 19) -------------------------------------------------


def no_grants_cloud(tmp_path):
    fake = FakeGcloud(tmp_path / "gcloud-state")
    fake.install(tmp_path / "bin")
    fake.add_project(PROJECT, default_grants=False)
    return fake, fake.env(subprocess_env(tmp_path))


def test_a_build_account_without_roles_is_reported_with_the_grants_to_run(tmp_path):
    fake, env = no_grants_cloud(tmp_path)
    account = f"{fake.project(PROJECT)['number']}-compute@developer.gserviceaccount.com"
    done = check(env, "--student-id", "123456789")
    assert done.returncode == 1, done.stdout
    assert (
        f"Cloud Build's service account {account} lacks roles its builds need. Please grant "
        "them before running this script (`nox -s setup` does):" in done.stdout
    )
    member = f"--member=serviceAccount:{account}"
    grants = [
        f"gcloud projects add-iam-policy-binding {PROJECT} {member} "
        "--role=roles/storage.objectViewer --condition=None",
        f"gcloud projects add-iam-policy-binding {PROJECT} {member} "
        "--role=roles/logging.logWriter --condition=None",
        f"gcloud artifacts repositories add-iam-policy-binding hw5-images --project={PROJECT} "
        f"--location=us-central1 {member} --role=roles/artifactregistry.writer",
    ]
    for grant in grants:
        assert f"  {grant}\n" in done.stdout
    assert SUCCESS not in done.stdout
    # running what it prints makes the check pass
    for grant in grants:
        ran = subprocess.run(grant.split(), env=env, capture_output=True, text=True)
        assert ran.returncode == 0, ran.stderr
    again = check(env, "--student-id", "123456789")
    assert again.returncode == 0 and again.stdout.rstrip().endswith(SUCCESS), again.stdout


@pytest.mark.parametrize(
    "project_role", ["roles/cloudbuild.builds.builder", "roles/editor", "roles/owner"]
)
def test_a_broad_role_covers_every_need_of_the_build_account(tmp_path, project_role):
    fake, env = no_grants_cloud(tmp_path)
    account = f"{fake.project(PROJECT)['number']}-compute@developer.gserviceaccount.com"
    subprocess.run(
        [
            "gcloud",
            "projects",
            "add-iam-policy-binding",
            PROJECT,
            f"--member=serviceAccount:{account}",
            f"--role={project_role}",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    done = check(env, "--student-id", "123456789")
    assert done.returncode == 0, done.stdout


def test_help_shows_the_whole_header_with_the_build_account_and_the_exit_statuses():
    done = subprocess.run(["bash", SCRIPT, "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    assert "Cloud Build's service account has" in done.stdout
    assert done.stdout.rstrip().endswith(
        "Exit status 0 when everything is in place, 1 at the first problem, 2 a bad option."
    )
