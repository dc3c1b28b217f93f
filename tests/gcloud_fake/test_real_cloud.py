"""The real Google Cloud's documented failures, as the fake models them (issue 19): Cloud Build's
service account without roles, gcloud invocations colliding on one configuration directory, a
build ID printed before gcloud dies, public access refused by an organization policy, API
Gateway's regions, and builds that take time."""

import json
import subprocess
import threading
import time

from hw5kit.gcloud_fake import FakeGcloud

from ..conftest import subprocess_env
from ..support.pipeline import PROJECT, REGISTRY, Cloud
from .test_builds import APP, COURSE_LIKE, build_id_of, submit, write_source

CRASH = "ERROR: gcloud crashed (OperationalError): database is locked"


def fresh_cloud(tmp_path, **project) -> Cloud:
    fake = FakeGcloud(tmp_path / "gcloud-state")
    fake.install(tmp_path / "bin")
    fake.add_project(PROJECT, **project)
    return Cloud(fake, fake.env(subprocess_env(tmp_path)))


def compute_account(cloud) -> str:
    return f"{cloud.fake.project(PROJECT)['number']}-compute@developer.gserviceaccount.com"


def describe(cloud, build_id) -> dict:
    done = cloud.gcloud("builds", "describe", build_id, "--region=us-central1", "--format=json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# --- Cloud Build's identity -----------------------------------------------------------------


def test_builds_run_as_the_compute_account_which_has_editor_unless_grants_are_off(tmp_path):
    cloud = fresh_cloud(tmp_path)
    account = compute_account(cloud)
    done = cloud.gcloud(
        "builds", "get-default-service-account", "--format=value(serviceAccountEmail)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"projects/{PROJECT}/serviceAccounts/{account}"
    policy = json.loads(cloud.gcloud("projects", "get-iam-policy", PROJECT, "--format=json").stdout)
    editors = [b["members"] for b in policy["bindings"] if b["role"] == "roles/editor"]
    assert editors == [[f"serviceAccount:{account}"]]
    src = write_source(tmp_path, COURSE_LIKE)
    assert submit(cloud, src).returncode == 0


def test_without_default_grants_a_build_fails_until_each_minimal_role_is_granted(tmp_path):
    cloud = fresh_cloud(tmp_path, default_grants=False)
    account = compute_account(cloud)
    member = f"--member=serviceAccount:{account}"
    src = write_source(tmp_path, COURSE_LIKE)

    # no role: the uploaded source cannot be fetched, no step runs (and no log is written)
    done = submit(cloud, src)
    assert done.returncode == 1
    assert (
        f"BUILD FAILURE: failed to fetch the build source: {account} does not have "
        "storage.objects.list access to the Google Cloud Storage bucket." in done.stderr
    )
    assert "does not have permission to write logs" in done.stdout
    build = describe(cloud, build_id_of(done))
    assert build["status"] == "FAILURE"
    assert build["failureInfo"]["type"] == "FETCH_SOURCE_FAILED"
    assert all("status" not in step for step in build["steps"])

    # reading the source: the build runs, its push is denied, and its log is not written
    grant = cloud.gcloud(
        "projects",
        "add-iam-policy-binding",
        PROJECT,
        member,
        "--role=roles/storage.objectViewer",
        "--condition=None",
    )
    assert grant.returncode == 0, grant.stderr
    assert f"Updated IAM policy for project [{PROJECT}]." in grant.stderr
    done = submit(cloud, src)
    assert done.returncode == 1 and "BUILD FAILURE: Build step failure" in done.stderr
    assert "does not have permission to write logs" in done.stdout
    assert "roles/logging.logWriter" in describe(cloud, build_id_of(done))["warnings"][0]["text"]

    # writing logs: the denied push shows in the log
    cloud.gcloud(
        "projects",
        "add-iam-policy-binding",
        PROJECT,
        member,
        "--role=roles/logging.logWriter",
        "--condition=None",
    )
    done = submit(cloud, src)
    assert done.returncode == 1
    assert (
        'denied: Permission "artifactregistry.repositories.uploadArtifacts" denied on resource '
        f'"projects/{PROJECT}/locations/us-central1/repositories/hw5-images"' in done.stdout
    )

    # pushing, granted on the repository only: a clean build
    grant = cloud.gcloud(
        "artifacts",
        "repositories",
        "add-iam-policy-binding",
        "hw5-images",
        "--location=us-central1",
        member,
        "--role=roles/artifactregistry.writer",
    )
    assert grant.returncode == 0, grant.stderr
    done = submit(cloud, src)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Starting Step #0" in done.stdout
    assert "warnings" not in describe(cloud, build_id_of(done))


def test_project_bindings_need_an_existing_account_and_a_known_role(tmp_path):
    cloud = fresh_cloud(tmp_path)
    done = cloud.gcloud(
        "projects",
        "add-iam-policy-binding",
        PROJECT,
        "--member=serviceAccount:nobody@hw5-123456789.iam.gserviceaccount.com",
        "--role=roles/logging.logWriter",
    )
    assert done.returncode == 1 and "does not exist" in done.stderr
    done = cloud.gcloud(
        "projects",
        "add-iam-policy-binding",
        PROJECT,
        f"--member=serviceAccount:{compute_account(cloud)}",
        "--role=roles/logging.logwriter",
    )
    assert done.returncode == 1 and "is not supported" in done.stderr


# --- gcloud in parallel ---------------------------------------------------------------------


def run_together(cloud, argvs, envs):
    """Start every gcloud at once; their CompletedProcess in order."""
    results = [None] * len(argvs)

    def one(i):
        results[i] = subprocess.run(
            ["gcloud", *argvs[i]], env=envs[i], capture_output=True, text=True, timeout=120
        )

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(argvs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_invocations_sharing_a_configuration_directory_crash(cloud, tmp_path):
    cloud.fake.configure(config_dir_crash=True, call_seconds=1.0)
    argv = ["config", "get-value", "project"]
    shared = run_together(cloud, [argv, argv], [cloud.env, cloud.env])
    assert sorted(r.returncode for r in shared) == [1, 1]
    # the later one crashed at once; the earlier one did its work, then crashed too
    assert all(CRASH in r.stderr for r in shared)
    assert sorted(r.stdout.strip() for r in shared) == ["", PROJECT]
    assert "gcloud feedback" in shared[0].stderr

    own = [{**cloud.env, "CLOUDSDK_CONFIG": str(tmp_path / f"config-{i}")} for i in range(3)]
    apart = run_together(cloud, [argv] * 3, own)
    assert [r.returncode for r in apart] == [0, 0, 0], [r.stderr for r in apart]


def test_a_build_goes_on_when_gcloud_dies_after_printing_its_id(cloud, tmp_path):
    cloud.fake.configure(crash_after_created=1)
    src = write_source(tmp_path, COURSE_LIKE)
    done = submit(cloud, src)
    assert done.returncode == 1
    assert CRASH in done.stderr
    build_id = build_id_of(done)  # printed before the crash
    assert describe(cloud, build_id)["status"] == "SUCCESS"
    assert build_id in cloud.fake.project(PROJECT)["images"][APP]["tags"]
    assert submit(cloud, src).returncode == 0  # only the next one dies


# --- builds take time -----------------------------------------------------------------------


def test_an_async_build_is_queued_then_working_then_done(cloud, tmp_path):
    cloud.fake.configure(build_seconds=1.5)
    src = write_source(tmp_path, COURSE_LIKE)
    started = time.monotonic()
    done = cloud.gcloud(
        "builds",
        "submit",
        "--async",
        "--region=us-central1",
        "--config=cloudbuild.yaml",
        f"--substitutions=_BASE_IMAGE_URI={REGISTRY}/base_image,_APP_URI={APP},"
        "_TARGET_DOCKERFILE=Dockerfile.app",
        ".",
        cwd=src,
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 1.5  # --async returns at once
    build_id = build_id_of(done)
    assert done.stdout.splitlines()[-1].split()[-1] == "QUEUED"
    working = describe(cloud, build_id)
    if time.monotonic() - started < 1.4:
        assert working["status"] == "WORKING" and "results" not in working
        log = cloud.gcloud("builds", "log", build_id, "--region=us-central1")
        assert "DONE" not in log.stdout
    deadline = time.monotonic() + 30
    while describe(cloud, build_id)["status"] == "WORKING" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert time.monotonic() - started >= 1.5  # not before the build's time
    assert describe(cloud, build_id)["status"] == "SUCCESS"
    log = cloud.gcloud("builds", "log", build_id, "--region=us-central1")
    assert log.returncode == 0 and "Starting Step #4" in log.stdout and "DONE" in log.stdout


# --- public access refused by policy ---------------------------------------------------------


def deploy_public(cloud, service="svc", *extra):
    cloud.fake.configure(require_built_images=False)
    return cloud.gcloud(
        "run",
        "deploy",
        service,
        "--region=us-central1",
        "--image=us-docker.pkg.dev/x/y/z:1",
        "--allow-unauthenticated",
        *extra,
    )


def invokers(cloud, service="svc"):
    done = cloud.gcloud(
        "run", "services", "get-iam-policy", service, "--region=us-central1", "--format=json"
    )
    assert done.returncode == 0, done.stderr
    policy = json.loads(done.stdout)
    return [
        m
        for b in policy.get("bindings", [])
        if b["role"] == "roles/run.invoker"
        for m in b["members"]
    ]


def test_allow_unauthenticated_binds_all_users_where_allowed(cloud):
    done = deploy_public(cloud)
    assert done.returncode == 0 and "Done." in done.stderr
    assert invokers(cloud) == ["allUsers"]


def test_domain_restricted_sharing_turns_allow_unauthenticated_into_a_warning(tmp_path):
    cloud = fresh_cloud(tmp_path, domain_restricted_sharing=True)
    done = deploy_public(cloud)
    assert done.returncode == 0  # only a warning
    assert (
        'Completed with warnings:\n  Setting IAM policy failed, try "gcloud beta run services '
        "add-iam-policy-binding --region=us-central1 --member=allUsers --role=roles/run.invoker "
        'svc"' in done.stderr
    )
    assert "Service URL: https://svc-" in done.stderr
    assert invokers(cloud) == []
    tried = cloud.gcloud(
        "run",
        "services",
        "add-iam-policy-binding",
        "svc",
        "--region=us-central1",
        "--member=allUsers",
        "--role=roles/run.invoker",
    )
    assert tried.returncode == 1
    assert (
        "FAILED_PRECONDITION: One or more users named in the policy do not belong to a "
        "permitted customer." in tried.stderr
    )

    fixed = cloud.gcloud(
        "run", "services", "update", "svc", "--region=us-central1", "--no-invoker-iam-check"
    )
    assert fixed.returncode == 0, fixed.stderr
    annotation = "run.googleapis.com/invoker-iam-disabled"
    service = json.loads(
        cloud.gcloud(
            "run", "services", "describe", "svc", "--region=us-central1", "--format=json"
        ).stdout
    )
    assert service["metadata"]["annotations"][annotation] == "true"
    deploy_public(cloud)  # a redeploy warns again but keeps the check off
    service = cloud.fake.project(PROJECT)["run"]["us-central1/svc"]
    assert service["metadata"]["annotations"][annotation] == "true"
    assert service["fake"]["public"] is True


# --- API Gateway's regions -------------------------------------------------------------------


def gateway_cloud(tmp_path, spec_path):
    from hw5kit.gcloud_fake import GATEWAY_APIS, HW5_APIS

    fake = FakeGcloud(tmp_path / "gcloud-state")
    fake.install(tmp_path / "bin")
    fake.add_project(PROJECT, apis=(*HW5_APIS, *GATEWAY_APIS))
    cloud = Cloud(fake, fake.env(subprocess_env(tmp_path)))
    spec_path.write_text('swagger: "2.0"\ninfo: {title: t, version: "1"}\npaths: {}\n')
    done = cloud.gcloud(
        "api-gateway", "api-configs", "create", "c1", "--api=hw5-api", f"--openapi-spec={spec_path}"
    )
    assert done.returncode == 0, done.stderr
    return cloud


def test_gateways_only_in_the_regions_api_gateway_serves(tmp_path):
    cloud = gateway_cloud(tmp_path, tmp_path / "spec.yaml")
    for refused in ("northamerica-northeast1", "us-west1", "europe-west4", "asia-east1"):
        done = cloud.gcloud(
            "api-gateway",
            "gateways",
            "create",
            "gw",
            "--api=hw5-api",
            "--api-config=c1",
            f"--location={refused}",
        )
        assert done.returncode == 1 and "is not supported by API Gateway" in done.stderr, refused
    for served, code in (
        ("europe-west2", "nw"),
        ("australia-southeast1", "ts"),
        ("us-west2", "wl"),
    ):
        done = cloud.gcloud(
            "api-gateway",
            "gateways",
            "create",
            f"gw-{code}",
            "--api=hw5-api",
            "--api-config=c1",
            f"--location={served}",
        )
        assert done.returncode == 0, done.stderr
        host = cloud.gcloud(
            "api-gateway",
            "gateways",
            "describe",
            f"gw-{code}",
            f"--location={served}",
            "--format=value(defaultHostname)",
        )
        assert host.stdout.strip().endswith(f".{code}.gateway.dev")


def test_the_failure_modes_can_be_set_from_a_shell(tmp_path):
    import sys

    state = tmp_path / "state"

    def fake_cli(*args):
        done = subprocess.run(
            [sys.executable, "-m", "hw5kit.gcloud_fake", *args, "--state", str(state)],
            capture_output=True,
            text=True,
            env=subprocess_env(tmp_path),
        )
        assert done.returncode == 0, done.stderr
        return done

    fake_cli("seed", PROJECT, "--no-default-grants", "--domain-restricted-sharing")
    fake_cli(
        "configure",
        "config_dir_crash=true",
        "call_seconds=0.5",
        "build_seconds=2",
        'slow={"run deploy": 3}',
        "note=plain text",
    )
    fake = FakeGcloud(state)
    settings = fake.state()["settings"]
    assert settings["config_dir_crash"] is True and settings["call_seconds"] == 0.5
    assert settings["slow"] == {"run deploy": 3} and settings["note"] == "plain text"
    project = fake.project(PROJECT)
    assert project["domain_restricted_sharing"] is True
    assert not [
        b
        for b in project["iam"]["bindings"]
        if any(m.endswith("-compute@developer.gserviceaccount.com") for m in b["members"])
    ]
