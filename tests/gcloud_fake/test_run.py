"""Cloud Run in the fake: deploy and describe, with state kept across calls."""

import json
import re

import pytest

from ..support.pipeline import PROJECT, REGISTRY, RUN_URL

IMAGE = f"{REGISTRY}/backend_v1:0b5c2e4a-91d3-4f6e-8a7b-2c3d4e5f6a7b"


@pytest.fixture
def any_image(cloud):
    cloud.fake.configure(require_built_images=False)
    return cloud


def deploy(cloud, name="backendv1", *extra):
    return cloud.gcloud(
        "run",
        "deploy",
        name,
        "--region=us-central1",
        f"--image={IMAGE}",
        "--port=8000",
        "--memory=2Gi",
        "--cpu=2",
        "--min-instances=1",
        "--max-instances=1",
        "--allow-unauthenticated",
        *extra,
    )


def test_deploy_prints_gcloud_messages_and_describe_reads_them_back(any_image):
    cloud = any_image
    done = deploy(cloud, "backendv1", "--set-env-vars=MODEL_NAME=efficientnet_lite0")
    assert done.returncode == 0, done.stderr
    url = re.search(r"^Service URL: (\S+)$", done.stderr, re.M).group(1)
    assert re.fullmatch(RUN_URL, url) and url.startswith("https://backendv1-")
    assert "revision [backendv1-00001-" in done.stderr
    value = cloud.gcloud(
        "run",
        "services",
        "describe",
        "backendv1",
        "--region=us-central1",
        "--format=value(status.url)",
    )
    assert value.stdout == f"{url}\n"
    resource = json.loads(
        cloud.gcloud(
            "run", "services", "describe", "backendv1", "--region=us-central1", "--format=json"
        ).stdout
    )
    container = resource["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert container["ports"] == [{"name": "http1", "containerPort": 8000}]
    assert container["env"] == [{"name": "MODEL_NAME", "value": "efficientnet_lite0"}]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}
    annotations = resource["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/minScale"] == "1"
    assert annotations["autoscaling.knative.dev/maxScale"] == "1"
    image = cloud.gcloud(
        "run",
        "services",
        "describe",
        "backendv1",
        "--region=us-central1",
        "--format=value(spec.template.spec.containers[0].image)",
    )
    assert image.stdout == f"{IMAGE}\n"


def test_redeploy_keeps_the_url_and_makes_a_new_revision(any_image):
    first = deploy(any_image)
    second = deploy(any_image, "backendv1", "--set-env-vars=A=1")
    url = lambda d: re.search(r"Service URL: (\S+)", d.stderr).group(1)  # noqa: E731
    assert url(first) == url(second)
    assert "revision [backendv1-00002-" in second.stderr
    assert "Deploying..." in second.stderr and "Deploying new service..." in first.stderr


def test_env_vars_with_commas_need_the_alternate_delimiter(any_image):
    done = deploy(any_image, "backendv2", "--set-env-vars=^|^MODELS=a,b,c|DEFAULT_MODEL=b")
    assert done.returncode == 0, done.stderr
    service = any_image.fake.project(PROJECT)["run"]["us-central1/backendv2"]
    env = service["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "MODELS", "value": "a,b,c"}, {"name": "DEFAULT_MODEL", "value": "b"}]
    plain = deploy(any_image, "backendv2", "--set-env-vars=MODELS=a,b")
    assert plain.returncode == 2 and "Bad syntax for dict arg: [b]" in plain.stderr


def test_reserved_env_and_bad_service_names_are_refused(any_image):
    done = deploy(any_image, "backendv1", "--set-env-vars=PORT=8000")
    assert done.returncode == 1 and "reserved env names were provided: PORT" in done.stderr
    done = deploy(any_image, "backend_v1")
    assert done.returncode == 1 and "Invalid resource name [backend_v1]" in done.stderr


def test_an_image_no_build_pushed_is_not_found(cloud):
    done = deploy(cloud)
    assert done.returncode == 1
    assert f"Image '{IMAGE}' not found" in done.stderr
    assert cloud.fake.project(PROJECT)["run"] == {}


def test_region_is_required_and_unknown_services_are_reported(any_image):
    done = any_image.gcloud("run", "deploy", "x", f"--image={IMAGE}")
    assert done.returncode == 1 and "Missing required argument [--region]" in done.stderr
    done = any_image.gcloud("run", "services", "describe", "nope", "--region=us-central1")
    assert done.returncode == 1
    assert done.stderr == "ERROR: (gcloud.run.services.describe) Cannot find service [nope]\n"


def test_disabled_api_is_reported_with_how_to_enable_it(tmp_path, any_image):
    any_image.fake.add_project("hw5-000000001", apis=())
    done = any_image.gcloud(
        "run", "deploy", "x", "--region=us-central1", f"--image={IMAGE}", "--project=hw5-000000001"
    )
    assert done.returncode == 1
    assert "Cloud Run Admin API has not been used in project" in done.stderr
    assert "gcloud services enable run.googleapis.com" in done.stderr


def test_memory_and_cpu_limits(any_image):
    done = deploy(any_image, "big", "--memory=16Gi")  # 16Gi with --cpu=2
    assert done.returncode == 1 and "requires at least 4 CPUs" in done.stderr
