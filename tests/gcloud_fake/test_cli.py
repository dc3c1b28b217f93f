"""The fake gcloud as a program: the allow-list, gcloud's argument syntax, the call log, and
the installed executable under a scrubbed environment."""

import json
import os
import subprocess
import sys

import pytest

from hw5kit.gcloud_fake import FakeGcloud, commands, spec

from ..support.pipeline import PROJECT


def test_unknown_commands_are_refused_with_exit_2_and_the_allowed_list(cloud):
    for args, where in (
        (["compute", "instances", "list"], "(gcloud)"),
        (["run", "jobs", "list"], "(gcloud.run)"),
        (["builds", "cancel", "x"], "(gcloud.builds)"),
        ([], "(gcloud)"),
    ):
        done = cloud.gcloud(*args)
        assert done.returncode == 2, args
        assert done.stdout == ""
        assert f"ERROR: {where}" in done.stderr
        assert "builds submit" in done.stderr and "run deploy" in done.stderr


def test_unknown_flags_are_refused_naming_the_flag_and_what_is_allowed(cloud):
    done = cloud.gcloud("run", "deploy", "backendv1", "--region=us-central1", "--prot=8000")
    assert done.returncode == 2
    assert "unrecognized arguments: --prot=8000 (did you mean '--port'?)" in done.stderr
    assert "--set-env-vars" in done.stderr
    assert cloud.fake.project(PROJECT)["run"] == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--region=us-centrall"], "is not a Cloud Run region"),
        (["--port=0"], "expected an integer from 1 to 65535"),
        (["--memory=2GB"], "is not a memory size"),
        (["--cpu=3"], "Cloud Run supports fractional values below 1, 1, 2, 4, 6 and 8"),
        (["--min-instances=-1"], "expected an integer from 0 to 1000, got [-1]"),
        (["--platform=gke"], "Invalid choice: 'gke'"),
        (["--allow-unauthenticated=yes"], "ignored explicit argument 'yes'"),
        (["--image"], "expected one argument"),
    ],
)
def test_bad_flag_values_are_refused(cloud, args, message):
    done = cloud.gcloud("run", "deploy", "backendv1", f"--image={PROJECT}", *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_both_flag_forms_global_flags_anywhere_and_negation(cloud):
    cloud.fake.configure(require_built_images=False)
    image = "us-docker.pkg.dev/cloudrun/container/hello:latest"
    done = cloud.gcloud(
        "--quiet",
        "run",
        "deploy",
        "svc",
        "--region",
        "us-central1",
        "--image",
        image,
        "--project",
        PROJECT,
        "--no-allow-unauthenticated",
        "--port",
        "9000",
    )
    assert done.returncode == 0, done.stderr
    service = cloud.fake.project(PROJECT)["run"]["us-central1/svc"]
    assert service["fake"]["public"] is False
    assert service["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 9000
    assert "Setting IAM Policy" not in done.stderr


def test_every_call_is_logged_even_refused_ones(cloud):
    cloud.gcloud("config", "get-value", "project")
    cloud.gcloud("run", "deploy", "x", "--bogus")
    calls = cloud.fake.calls()
    assert [c["command"] for c in calls] == ["config get-value", None]
    assert calls[0]["argv"] == ["config", "get-value", "project"]
    assert calls[0]["exit"] == 0 and calls[0]["stdout"] == f"{PROJECT}\n"
    assert calls[1]["exit"] == 2 and "--bogus" in calls[1]["stderr"]


def test_project_comes_from_flag_then_environment_then_config(cloud, tmp_path):
    fake = FakeGcloud(tmp_path / "other-state")
    fake.install(tmp_path / "other-bin")
    fake.add_project(PROJECT, set_default=False)
    env = fake.env(cloud.env)
    run = lambda *a, **e: subprocess.run(  # noqa: E731
        ["gcloud", *a], env={**env, **e}, capture_output=True, text=True
    )
    unset = run("services", "list")
    assert unset.returncode == 1
    assert "The required property [project] is not currently set." in unset.stderr
    assert run("config", "get-value", "project").stderr == "(unset)\n"
    assert run("services", "list", f"--project={PROJECT}").returncode == 0
    assert run("services", "list", CLOUDSDK_CORE_PROJECT=PROJECT).returncode == 0
    unknown = run("services", "list", "--project=hw5-999999999")
    assert unknown.returncode == 1 and "PERMISSION_DENIED" in unknown.stderr
    setting = run("config", "set", "project", "hw5-999999999")
    assert "do not appear to have access to project [hw5-999999999]" in setting.stderr
    assert run("config", "get-value", "project").stdout == "hw5-999999999\n"


def test_services_list_and_repository_describe(cloud):
    listed = cloud.gcloud("services", "list", "--enabled", "--format=value(config.name)")
    assert listed.stdout.split() == sorted(
        ["run.googleapis.com", "cloudbuild.googleapis.com", "artifactregistry.googleapis.com"]
    )
    repo = cloud.gcloud(
        "artifacts",
        "repositories",
        "describe",
        "hw5-images",
        "--location=us-central1",
        "--format=json",
    )
    assert (
        json.loads(repo.stdout)["registryUri"] == f"us-central1-docker.pkg.dev/{PROJECT}/hw5-images"
    )
    missing = cloud.gcloud(
        "artifacts", "repositories", "describe", "nope", "--location=us-central1"
    )
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_formats_outside_the_supported_set_are_refused(cloud):
    done = cloud.gcloud("services", "list", "--format=table(config.name)")
    assert done.returncode == 1
    assert "supports --format=json, yaml, value(KEY[,KEY...])" in done.stderr


def test_installed_executable_works_from_anywhere_with_a_scrubbed_environment(tmp_path):
    fake = FakeGcloud(tmp_path / "state")
    bin_dir = fake.install(tmp_path / "bin")
    fake.add_project(PROJECT)
    elsewhere = tmp_path / "student"
    elsewhere.mkdir()
    # a module named like a dependency in the caller's folder must not be imported
    (elsewhere / "yaml.py").write_text("raise SystemExit('shadowed')\n")
    done = subprocess.run(
        ["gcloud", "config", "get-value", "project"],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONPATH": str(elsewhere)},
        cwd=elsewhere,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{PROJECT}\n"
    assert fake.calls()[0]["cwd"] == str(elsewhere)


def test_module_cli_installs_and_seeds(tmp_path):
    state, bin_dir = tmp_path / "state", tmp_path / "bin"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hw5kit.gcloud_fake",
            "install",
            str(bin_dir),
            "--state",
            str(state),
            "--project",
            PROJECT,
            "--any-image",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert os.access(bin_dir / "gcloud", os.X_OK)
    fake = FakeGcloud(state)
    assert fake.state()["config"]["core/project"] == PROJECT
    assert fake.state()["settings"]["require_built_images"] is False


def test_every_command_has_a_handler_in_its_groups_module():
    """spec.py names each handler "module:function" in commands/, the module of the command's
    group; a handler that does not resolve would only fail when a script calls it."""
    groups = {"api-gateway": "apigateway"}
    for command in spec.COMMANDS.values():
        module = command.handler.partition(":")[0]
        assert module == groups.get(command.path[0], command.path[0]), command.name
        assert module in commands.GROUPS
        assert callable(commands.handler(command.handler)), command.name
    with pytest.raises(ValueError, match="module:function"):
        commands.handler("run_deploy")


def test_allow_list_is_small_and_documented():
    for command in spec.COMMANDS.values():
        assert command.doc.startswith("https://cloud.google.com/sdk/gcloud/reference/")
        assert command.doc.endswith("/".join(command.path))
    names = {c.name for c in spec.COMMANDS.values()}
    assert names == {
        "config get-value",
        "config set",
        "services list",
        "artifacts repositories describe",
        "builds submit",
        "builds describe",
        "builds log",
        "builds get-default-service-account",
        "run deploy",
        "run services describe",
        "run services get-iam-policy",
        "run services add-iam-policy-binding",
        "run services update",
        "projects get-iam-policy",
        "projects add-iam-policy-binding",
        "projects describe",
        "services enable",
        "artifacts repositories create",
        "artifacts repositories get-iam-policy",
        "artifacts repositories add-iam-policy-binding",
        "api-gateway api-configs create",
        "api-gateway api-configs describe",
        "api-gateway apis describe",
        "api-gateway gateways create",
        "api-gateway gateways update",
        "api-gateway gateways describe",
        # v2's session key (Secret Manager)
        "secrets create",
        "secrets describe",
        "secrets versions add",
        "secrets add-iam-policy-binding",
    }
