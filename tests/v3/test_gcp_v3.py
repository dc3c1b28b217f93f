"""v3 on the gcp target against the fake gcloud: per-model Cloud Builds and Cloud Run services,
the exact api-gateway command lines, the gateway URL recorded, the frontend wired to it."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from hw5kit.gcloud_fake import GATEWAY_APIS, FakeGcloud
from hw5kit.pipeline import config, deliverables

from ..conftest import subprocess_env
from ..support.pipeline import PROJECT, RUN_URL, UUID, Cloud, make_repo, pipeline

MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo")


def gcp(command, repo, cloud, *extra):
    return pipeline(command, "--target", "gcp", *extra, root=repo, env=cloud.env)


def test_v3_build_deploy_creates_the_gateway_and_records_its_url(repo, cloud):
    built = gcp("build", repo, cloud)
    assert built.returncode == 0, built.stdout + built.stderr
    submits = cloud.fake.calls("builds submit")
    assert len(submits) == 8
    by_image = {
        c["flags"]["--substitutions"].split("_APP_URI=")[1].split(",")[0].rsplit("/", 1)[1]: c
        for c in submits
    }  # the builds run in parallel: any order
    for model in MODELS:
        call = by_image[f"backend_v3_{model}"]
        assert call["flags"]["--config"] == f"{repo}/deployment/cloudbuild_v3.yaml"
        assert f"_MODEL_NAME={model}" in call["flags"]["--substitutions"]
    assert by_image["frontend_v3"]["flags"]["--config"] == f"{repo}/deployment/cloudbuild.yaml"

    deployed = gcp("deploy", repo, cloud)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    data = yaml.safe_load((repo / "deliverables.yaml").read_text())
    v3 = data["services"]["v3"]
    assert set(v3["backends"]) == set(MODELS)
    for model in MODELS:
        entry = v3["backends"][model]
        assert re.fullmatch(UUID, entry["build_id"]) and re.fullmatch(RUN_URL, entry["service_url"])
        assert entry["service_url"].startswith(f"https://backendv3-{model.replace('_', '-')}-")
    gateway = v3["gateway_url"]
    assert re.fullmatch(r"https://hw5-gateway-[0-9a-f]{8}\.uc\.gateway\.dev", gateway)
    assert deliverables.problems(data, "gcp") == []
    # v1 and v2 keep exactly the course's shape
    for v in ("v1", "v2"):
        assert list(data["services"][v]) == ["back_end", "front_end"]
        assert all(list(e) == ["build_id", "service_url"] for e in data["services"][v].values())

    cfg = config.load(repo / "deployment.yaml")
    config_id = cfg.gateway.config_id((repo / ".hw5/gcp/openapi_v3.yaml").read_text())
    gateway_calls = [c["argv"] for c in cloud.fake.calls() if c["argv"][:1] == ["api-gateway"]]
    spec = f"{repo}/.hw5/gcp/openapi_v3.yaml"
    describe_gateway = [
        "api-gateway", "gateways", "describe", "hw5-gateway", "--location=us-central1",
        f"--project={PROJECT}", "--format=value(defaultHostname)",
    ]  # fmt: skip
    assert gateway_calls == [
        ["api-gateway", "api-configs", "describe", config_id, "--api=hw5-api",
         f"--project={PROJECT}", "--format=value(name)"],
        ["api-gateway", "api-configs", "create", config_id, "--api=hw5-api",
         f"--openapi-spec={spec}", f"--project={PROJECT}"],
        describe_gateway,
        ["api-gateway", "gateways", "create", "hw5-gateway", "--api=hw5-api",
         f"--api-config={config_id}", "--location=us-central1", f"--project={PROJECT}"],
        describe_gateway,
    ]  # fmt: skip
    # the config the gateway got routes each model to that model's Cloud Run service
    sent = yaml.safe_load(
        cloud.fake.project(PROJECT)["apigateway"]["configs"][f"hw5-api/{config_id}"]["openapi_spec"]
    )
    for model in MODELS:
        backend = sent["paths"][f"/model/{model}/predict"]["post"]["x-google-backend"]
        assert backend["address"] == v3["backends"][model]["service_url"]
    # the frontend calls the gateway
    frontend = next(c for c in cloud.fake.calls("run deploy") if c["argv"][2] == "frontendv3")
    assert frontend["flags"]["--set-env-vars"] == f"API_GATEWAY={gateway}"
    assert v3["front_end"]["service_url"].startswith("https://frontendv3-")

    verified = gcp("verify", repo, cloud, "--skip-http")
    assert verified.returncode == 0, verified.stdout
    v3_lines = [line for line in verified.stdout.splitlines() if "services.v3" in line]
    assert v3_lines and all(line.strip().startswith("ok") for line in v3_lines), verified.stdout
    assert "API_GATEWAY: " + repr(gateway) in verified.stdout

    # a second deploy with the same backends reuses the config and updates the gateway
    again = gcp("deploy", repo, cloud, "backend_v3")
    assert again.returncode == 0, again.stdout + again.stderr
    verbs = [c["argv"][1:3] for c in cloud.fake.calls() if c["argv"][:1] == ["api-gateway"]]
    assert verbs[5:] == [
        ["api-configs", "describe"],
        ["gateways", "describe"],
        ["gateways", "update"],
        ["gateways", "describe"],
    ]


def test_the_fake_refuses_unknown_api_gateway_flags(cloud, tmp_path):
    done = cloud.gcloud(
        "api-gateway", "gateways", "create", "gw", "--api=a", "--api-config=c",
        "--region=us-central1", f"--project={PROJECT}",
    )  # fmt: skip
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr
    missing = cloud.gcloud(
        "api-gateway", "gateways", "describe", "gw", "--location=us-central1",
        f"--project={PROJECT}",
    )  # fmt: skip
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


GATEWAY_COMMANDS = [
    ["api-gateway", "api-configs", "create", "cfg-1", "--api=hw5-api", "--openapi-spec=spec.yaml"],
    ["api-gateway", "api-configs", "describe", "cfg-1", "--api=hw5-api"],
    ["api-gateway", "gateways", "create", "hw5-gateway", "--api=hw5-api", "--api-config=cfg-1",
     "--location=us-central1"],
    ["api-gateway", "gateways", "update", "hw5-gateway", "--api=hw5-api", "--api-config=cfg-1",
     "--location=us-central1"],
    ["api-gateway", "gateways", "describe", "hw5-gateway", "--location=us-central1"],
]  # fmt: skip


@pytest.mark.parametrize("argv", GATEWAY_COMMANDS, ids=lambda a: " ".join(a[1:3]))
def test_api_gateway_commands_are_refused_while_the_api_is_off(tmp_path, argv):
    fake = FakeGcloud(tmp_path / "state")
    fake.install(tmp_path / "bin")
    fake.add_project(PROJECT)  # the course's three APIs: a student who skipped setup for v3
    number = fake.project(PROJECT)["number"]
    cloud = Cloud(fake, fake.env(subprocess_env(tmp_path)))
    (tmp_path / "spec.yaml").write_text('swagger: "2.0"\n')
    done = cloud.gcloud(*argv, f"--project={PROJECT}", cwd=tmp_path)
    assert done.returncode == 1
    dotted = "gcloud." + ".".join(argv[:3])
    assert done.stderr.startswith(
        f"ERROR: ({dotted}) PERMISSION_DENIED: API Gateway API has not been used in project "
        f"{number} before or it is disabled. Enable it by visiting https://console.developers."
        f"google.com/apis/api/apigateway.googleapis.com/overview?project={number} then retry. "
        "If you enabled this API recently, wait a few minutes for the action to propagate to "
        "our systems and retry."
    ), done.stderr
    assert "apigateway" not in fake.project(PROJECT)  # nothing was created
    # once enabled (what `nox -s setup` does for v3), the same command gets past the check
    enabled = cloud.gcloud("services", "enable", *GATEWAY_APIS, f"--project={PROJECT}")
    assert enabled.returncode == 0, enabled.stderr
    again = cloud.gcloud(*argv, f"--project={PROJECT}", cwd=tmp_path)
    assert "PERMISSION_DENIED" not in again.stderr


def test_a_v3_deploy_without_the_gateway_apis_says_to_enable_them(repo, tmp_path):
    fake = FakeGcloud(tmp_path / "state")
    fake.install(tmp_path / "bin")
    fake.add_project(PROJECT)  # set up for the course only
    cloud = Cloud(fake, fake.env(subprocess_env(tmp_path)))
    assert gcp("build", repo, cloud, "backend_v3").returncode == 0
    deployed = gcp("deploy", repo, cloud, "backend_v3")
    assert deployed.returncode == 1
    assert "FAILED gateway_v3" in deployed.stdout
    assert "API Gateway API has not been used in project" in deployed.stdout
    assert "The API Gateway API is not enabled in hw5-123456789: run `nox -s setup" in (
        deployed.stdout
    )


# --- gateway.api_key on gcp: the key reaches frontend_v3 at deploy time, nowhere else ---------

KEY = "AIzaSyFakeKeyForTests_0123456789abcdefg"


def keyed_repo(repo, cloud):
    path = repo / "deployment.yaml"
    data = yaml.safe_load(path.read_text())
    data["gateway"]["api_key"] = True
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    rendered = pipeline("render", root=repo, env=cloud.env)
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    built = gcp("build", repo, cloud, "backend_v3", "frontend_v3")
    assert built.returncode == 0, built.stdout + built.stderr
    return repo


def test_without_a_key_deploy_stops_before_anything_and_says_how_to_make_one(repo, cloud):
    keyed_repo(repo, cloud)
    before = len(cloud.fake.calls())
    done = gcp("deploy", repo, cloud, "backend_v3", "frontend_v3")
    assert done.returncode == 1
    assert cloud.fake.calls()[before:] == []  # nothing deployed, nothing asked
    err = done.stderr
    assert "gateway.api_key is true" in err and "frontend_v3 needs an API key" in err
    assert (
        f"gcloud services api-keys create --key-id=hw5-gateway-key --display-name='HW5 API "
        f"gateway' --api-target=service=$MANAGED --project={PROJECT}"
    ) in err
    assert "gcloud api-gateway apis describe hw5-api" in err
    assert "export API_GATEWAY_KEY=$(gcloud services api-keys get-key-string" in err
    assert ".hw5/gcp/gateway.key" in err


def test_the_key_from_the_environment_reaches_frontend_v3_only(repo, cloud):
    keyed_repo(repo, cloud)
    env = {**cloud.env, "API_GATEWAY_KEY": KEY}
    done = pipeline("deploy", "--target", "gcp", "backend_v3", "frontend_v3", root=repo, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    gateway = yaml.safe_load((repo / "deliverables.yaml").read_text())["services"]["v3"][
        "gateway_url"
    ]
    deploys = {c["argv"][2]: c for c in cloud.fake.calls("run deploy")}
    assert deploys["frontendv3"]["flags"]["--set-env-vars"] == (
        f"API_GATEWAY={gateway},API_GATEWAY_KEY={KEY}"
    )
    for name, call in deploys.items():
        if name != "frontendv3":
            assert KEY not in " ".join(call["argv"])
    # keys work once the API's managed service is enabled: deploy enabled it
    managed = cloud.fake.project(PROJECT)["apigateway"]["apis"]["hw5-api"]["managedService"]
    assert managed in cloud.fake.project(PROJECT)["apis"]
    assert ["services", "enable", managed, f"--project={PROJECT}"] in [
        c["argv"] for c in cloud.fake.calls()
    ]
    # never written into a committed file or the deliverables
    for path in [repo / "deliverables.yaml", *(repo / "deployment").iterdir()]:
        assert KEY not in path.read_text(), path


def test_the_key_file_is_read_and_a_malformed_key_refused(repo, cloud):
    keyed_repo(repo, cloud)
    assert gcp("deploy", repo, cloud, "backend_v3").returncode == 0  # no key needed yet
    key_file = repo / ".hw5" / "gcp" / "gateway.key"
    key_file.write_text(f"{KEY}\n")
    done = gcp("deploy", repo, cloud, "frontend_v3")
    assert done.returncode == 0, done.stdout + done.stderr
    frontend = cloud.fake.calls("run deploy")[-1]
    assert frontend["flags"]["--set-env-vars"].endswith(f",API_GATEWAY_KEY={KEY}")
    key_file.write_text("not a key; rm -rf /\n")
    bad = gcp("deploy", repo, cloud, "frontend_v3")
    assert bad.returncode == 1
    assert "is not an API key" in bad.stderr


def test_the_rendered_frontend_script_needs_the_key_from_its_environment(repo, cloud):
    keyed_repo(repo, cloud)
    script = repo / "deployment" / "deploy_frontend_v3.sh"
    assert "API_GATEWAY_KEY=${API_GATEWAY_KEY}" in script.read_text()
    env = {**cloud.env, "API_GATEWAY": "https://hw5-gateway-0123abcd.uc.gateway.dev"}
    build_id = yaml.safe_load((repo / "deliverables.yaml").read_text())["services"]["v3"][
        "front_end"
    ]["build_id"]
    refused = subprocess.run(
        ["bash", str(script), build_id], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert "the gateway requires an API key (gateway.api_key): set API_GATEWAY_KEY" in (
        refused.stderr
    )
