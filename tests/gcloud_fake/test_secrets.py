"""Secret Manager in the fake gcloud, and the secrets `gcloud run deploy` hands a service: the
API must be on, a secret exists once, the runtime service account needs the accessor role, and
the secret's value is never printed nor logged."""

import json
import subprocess

from ..support.pipeline import PROJECT
from .test_run import deploy

VALUE = "s3cr3t-session-key-value"


def gcloud_in(cloud, *args, data=None):
    return subprocess.run(
        ["gcloud", *args], env=cloud.env, capture_output=True, text=True, input=data
    )


def number(cloud) -> str:
    return cloud.gcloud(
        "projects", "describe", PROJECT, "--format=value(projectNumber)"
    ).stdout.strip()


def test_secrets_need_the_api_then_exist_once(cloud):
    off = gcloud_in(cloud, "secrets", "create", "hw5-session-key", "--data-file=-", data=VALUE)
    assert off.returncode == 1 and "Secret Manager API has not been used" in off.stderr
    assert cloud.gcloud("services", "enable", "secretmanager.googleapis.com").returncode == 0
    missing = cloud.gcloud("secrets", "describe", "hw5-session-key")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    made = gcloud_in(
        cloud,
        "secrets", "create", "hw5-session-key", "--replication-policy=automatic", "--data-file=-",
        data=VALUE,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "Created version [1] of the secret [hw5-session-key]" in made.stderr
    again = gcloud_in(cloud, "secrets", "create", "hw5-session-key", "--data-file=-", data="x")
    assert again.returncode == 1 and "ALREADY_EXISTS" in again.stderr
    described = cloud.gcloud("secrets", "describe", "hw5-session-key", "--format=json")
    resource = json.loads(described.stdout)
    assert resource["name"] == f"projects/{number(cloud)}/secrets/hw5-session-key"
    assert resource["replication"] == {"automatic": {}}
    added = gcloud_in(
        cloud, "secrets", "versions", "add", "hw5-session-key", "--data-file=-", data="v2"
    )
    assert "Created version [2]" in added.stderr
    user = cloud.gcloud("secrets", "create", "other", "--replication-policy=user-managed")
    assert user.returncode == 1 and "--locations must also be provided" in user.stderr
    unknown = cloud.gcloud("secrets", "create", "other", "--ttl=1d")
    assert unknown.returncode == 2 and "unrecognized arguments" in unknown.stderr
    log = (cloud.fake.state_dir / "calls.jsonl").read_text()
    assert VALUE not in log and VALUE not in described.stdout


def test_a_service_gets_a_secret_only_when_its_account_may_read_it(cloud):
    cloud.fake.configure(require_built_images=False)
    cloud.gcloud("services", "enable", "secretmanager.googleapis.com")
    flag = "--set-secrets=SECRET_KEY=hw5-session-key:latest"
    absent = deploy(cloud, "backendv2", flag)
    assert absent.returncode == 1
    assert "secrets/hw5-session-key/versions/latest was not found" in absent.stderr
    gcloud_in(cloud, "secrets", "create", "hw5-session-key", "--data-file=-", data=VALUE)
    denied = deploy(cloud, "backendv2", flag)
    account = f"{number(cloud)}-compute@developer.gserviceaccount.com"
    assert denied.returncode == 1
    assert "Permission denied on secret" in denied.stderr and account in denied.stderr
    granted = cloud.gcloud(
        "secrets", "add-iam-policy-binding", "hw5-session-key",
        f"--member=serviceAccount:{account}", "--role=roles/secretmanager.secretAccessor",
    )  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    done = deploy(cloud, "backendv2", flag, "--set-env-vars=MODELS=efficientnet_lite0")
    assert done.returncode == 0, done.stderr
    assert deploy(cloud, "backendv2", "--set-secrets=SECRET_KEY=hw5-session-key:9").returncode == 1
    bad = deploy(cloud, "backendv2", "--set-secrets=SECRET_KEY=hw5-session-key")
    assert bad.returncode == 2 and "KEY=SECRET_NAME:SECRET_VERSION" in bad.stderr

    def env():
        resource = json.loads(
            cloud.gcloud(
                "run", "services", "describe", "backendv2", "--region=us-central1", "--format=json"
            ).stdout
        )
        return resource["spec"]["template"]["spec"]["containers"][0]["env"]

    secret = {
        "name": "SECRET_KEY",
        "valueFrom": {"secretKeyRef": {"name": "hw5-session-key", "key": "latest"}},
    }
    assert env() == [{"name": "MODELS", "value": "efficientnet_lite0"}, secret]
    # a later deploy without the flag keeps the secret (a new revision of the same service)
    assert deploy(cloud, "backendv2", "--update-env-vars=X=1").returncode == 0
    assert secret in env() and {"name": "X", "value": "1"} in env()
    clash = deploy(cloud, "backendv2", "--update-secrets=X=hw5-session-key:1")
    assert clash.returncode == 1 and "already been set with a different type" in clash.stderr
    assert VALUE not in json.dumps(env())
