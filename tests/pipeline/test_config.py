"""deployment.yaml: the reference values, and a message that names the key for each mistake."""

from pathlib import Path

import pytest
import yaml

from hw5kit.pipeline import config

from ..conftest import ROOT


def reference() -> dict:
    return yaml.safe_load((ROOT / "deployment.yaml").read_text())


def test_the_committed_config_is_the_reference_deployment():
    cfg = config.load(ROOT / "deployment.yaml")
    assert cfg.project_id == "hw5-123456789"
    assert cfg.target == "local"
    assert cfg.repo_uri == "us-central1-docker.pkg.dev/hw5-123456789/hw5-images"
    assert cfg.base_image_uri.endswith("/hw5-images/base_image")
    assert [s.name for s in cfg.services] == [
        "backend_v1",
        "frontend_v1",
        "backend_v2",
        "frontend_v2",
        "backend_v3_efficientnet_lite0",
        "backend_v3_efficientnet_lite1",
        "backend_v3_efficientnet_lite2",
        "frontend_v3",
    ]
    assert [s.cloud_run_name for s in cfg.services] == [
        "backendv1",
        "frontendv1",
        "backendv2",
        "frontendv2",
        "backendv3-efficientnet-lite0",
        "backendv3-efficientnet-lite1",
        "backendv3-efficientnet-lite2",
        "frontendv3",
    ]
    v1 = cfg.service("backend_v1")
    assert v1.resources == config.Resources("2Gi", "2", 1, 1)
    assert v1.models() == ["efficientnet_lite0"]
    assert cfg.service("backend_v2").models() == [
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
    ]
    assert cfg.service("frontend_v2").backend == "backend_v2"
    assert cfg.service("frontend_v1").deliverable_key == ("v1", "front_end")
    assert cfg.image_uri(v1, "abc") == f"{cfg.repo_uri}/backend_v1:abc"


def test_defaults_fill_what_is_left_out():
    data = reference()
    for key in ("region", "repository", "serving_port", "target", "base_image"):
        del data[key]
    del data["services"]["backend_v1"]["resources"]
    del data["services"]["backend_v1"]["cloud_run_name"]
    cfg = config.parse(data)
    assert (cfg.region, cfg.repository, cfg.serving_port, cfg.target) == (
        "us-central1",
        "hw5-images",
        8000,
        "local",
    )
    assert cfg.service("backend_v1").cloud_run_name == "backendv1"
    assert cfg.service("backend_v1").resources == config.Resources()


@pytest.mark.parametrize(
    ("resources", "env", "expected"),
    [
        ({}, {}, 72),  # 2 CPUs: 8 predictions in progress, 64 waiting for a slot
        ({"cpu": "1"}, {}, 36),
        ({"cpu": "500m"}, {}, 36),  # a fraction of a CPU still runs on one
        ({"cpu": "4"}, {}, 144),
        ({}, {"HW5_THREADS": "6"}, 5),  # the queue shrinks to the threads there are
        ({}, {"HW5_MAX_INFLIGHT": "5"}, 69),
        ({}, {"HW5_QUEUE_LENGTH": "0"}, 8),  # no queue: the in-flight limit alone
        ({"concurrency": 12}, {"HW5_MAX_INFLIGHT": "5"}, 12),
    ],
)
def test_backend_concurrency_follows_what_the_instance_admits(resources, env, expected):
    data = reference()
    data["services"]["backend_v1"]["resources"] = {**resources, "memory": "4Gi"}
    data["services"]["backend_v1"]["env"].update(env)
    cfg = config.parse(data)
    assert cfg.service("backend_v1").concurrency == expected
    assert cfg.service("frontend_v1").concurrency == 80


def test_the_concurrency_matches_what_the_serving_code_computes(monkeypatch):
    from hw5kit.serving import settings

    monkeypatch.setattr(settings, "cpu_count", lambda: 2)
    cfg = config.load(ROOT / "deployment.yaml")
    served = settings.ServingSettings.from_env("v1", {})
    assert cfg.service("backend_v1").concurrency == served.max_inflight + served.queue_length
    assert served.max_inflight + served.queue_length < settings.http_threads({})


def change(path: str, value):
    data = reference()
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("student_id", 123456789, 'student_id: write it as a quoted string, e.g. student_id: "1'),
        ("student_id", KeyError, "student_id: missing; expected your student ID"),
        ("student_id", "Jean Dupont", "student_id: expected your student ID"),
        ("student_id", "1" * 30, "is not a valid Google Cloud project ID"),
        ("region", "us_central1", "region: expected a region like us-central1, got 'us_central1'"),
        ("repository", "HW5", "repository: expected lowercase letters"),
        ("serving_port", 70000, "serving_port: expected 1 to 65535, got 70000"),
        ("target", "cloud", "target: expected one of local, container, gcp, got 'cloud'"),
        ("servces", {}, "servces: unknown key; expected one of: student_id"),
        ("services.backend_v1.kind", "api", "services.backend_v1.kind: expected backend"),
        ("services.backend_v1.version", "v9", "services.backend_v1.version: expected one of"),
        ("services.backend_v1.cloud_run_name", "backend_v1", "Cloud Run's rule"),
        ("services.backend_v1.resources.memory", "2GB", "resources.memory: expected a size"),
        ("services.backend_v1.resources.cpu", "3", "resources.cpu: expected 1, 2, 4, 8"),
        ("services.backend_v1.resources.min_instances", 3, "larger than max_instances (1)"),
        ("services.backend_v1.resources.gpu", 1, "resources.gpu: unknown key"),
        ("services.backend_v1.resources.concurrency", 0, "concurrency: expected 1 to 1000"),
        ("services.backend_v1.env.PORT", "8000", "PORT is set by Cloud Run itself"),
        ("services.backend_v1.env", {}, "a backend sets MODEL_NAME (v1) or MODELS"),
        ("services.backend_v1.env.MODEL_NAME", ["a"], "expected a string value, got ['a']"),
        ("services.frontend_v1.env", {"SERVING_URL": "x"}, "SERVING_URL is wired by deploy"),
        ("services.frontend_v1.backend", KeyError, "a frontend names its backend service"),
        ("services.frontend_v1.backend", "frontend_v2", "is not a backend service; backends:"),
        ("services.backend_v2.version", "v1", "backend_v1 is already the back_end of v1"),
        ("services.backend_v2.cloud_run_name", "backendv1", "'backendv1' is also used by"),
        ("services.backend_v1.backend", "backend_v2", "only frontends name a backend"),
    ],
)
def test_each_mistake_names_its_key_and_what_is_expected(path, value, expected):
    with pytest.raises(config.ConfigError) as info:
        config.parse(change(path, value), Path("deployment.yaml"))
    message = str(info.value)
    assert message.startswith("deployment.yaml: ")
    assert expected in message, message


def test_bad_service_names_are_refused():
    data = reference()
    data["services"]["Backend-V1"] = data["services"].pop("backend_v1")
    with pytest.raises(config.ConfigError, match=r"services\.Backend-V1: a service name is"):
        config.parse(data)


def test_invalid_yaml_and_missing_file(tmp_path):
    broken = tmp_path / "deployment.yaml"
    broken.write_text("student_id: '1'\nservices:\n  backend_v1: [\n")
    with pytest.raises(config.ConfigError, match=r"deployment\.yaml: line \d+, column \d+: not"):
        config.load(broken)
    with pytest.raises(config.ConfigError, match="not found; the deployment config lives"):
        config.load(tmp_path / "missing.yaml")


def test_the_autograder_account_defaults_to_the_course_test_account():
    cfg = config.load(ROOT / "deployment.yaml")
    assert cfg.autograder_service_account == config.DEFAULT_AUTOGRADER
    assert config.DEFAULT_AUTOGRADER == (
        "ift6758-ta-hw5-gcp-autograder@hw5-12345.iam.gserviceaccount.com"
    )
    data = reference()
    del data["autograder_service_account"]
    assert config.parse(data).autograder_service_account == config.DEFAULT_AUTOGRADER
    data["autograder_service_account"] = (
        " ta-autograder@ift6758-hw5-gcp-24.iam.gserviceaccount.com "
    )
    assert config.parse(data).autograder_service_account == config.COURSE_AUTOGRADER


def test_the_fake_gcloud_knows_the_same_course_accounts():
    from hw5kit import gcloud_fake

    assert gcloud_fake.COURSE_TEST_AUTOGRADER == config.DEFAULT_AUTOGRADER
    assert gcloud_fake.COURSE_AUTOGRADER == config.COURSE_AUTOGRADER


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "serviceAccount:ta-autograder@ift6758-hw5-gcp-24.iam.gserviceaccount.com",
            "write the e-mail alone, without 'serviceAccount:'",
        ),
        ("ta-autograder@gmail.com", "expected a service account e-mail ACCOUNT@PROJECT.iam"),
        ("TA-Autograder@ift6758-hw5-gcp-24.iam.gserviceaccount.com", "(lowercase)"),
        ("ta@ift6758-hw5-gcp-24.iam.gserviceaccount.com", "got 'ta@ift6758"),
        ("", "expected a service account e-mail such as the course's test account"),
        (12, "expected a service account e-mail such as the course's test account"),
    ],
)
def test_a_bad_autograder_account_names_the_key_and_both_course_accounts(value, expected):
    data = reference()
    data["autograder_service_account"] = value
    with pytest.raises(config.ConfigError) as caught:
        config.parse(data)
    message = str(caught.value)
    assert message.startswith("deployment.yaml: autograder_service_account: ")
    assert expected in message
    assert config.DEFAULT_AUTOGRADER in message or "serviceAccount:" in message


# --- API Gateway's regions (issue 19) ---------------------------------------------------------

SERVED = (
    "asia-northeast1, australia-southeast1, europe-west1, europe-west2, us-east1, us-east4, "
    "us-central1, us-west2, us-west3, us-west4"
)


def test_a_region_api_gateway_does_not_serve_is_refused_for_the_gateway():
    data = reference()
    data["region"] = "northamerica-northeast1"  # Montréal: Cloud Run yes, API Gateway no
    data["gateway"].pop("location")
    with pytest.raises(config.ConfigError) as err:
        config.parse(data)
    message = str(err.value)
    assert (
        "gateway.location: API Gateway does not serve 'northamerica-northeast1' (the "
        "config's region, which the gateway uses when gateway.location is not set)" in message
    )
    assert f"it serves {SERVED}" in message
    assert "https://cloud.google.com/api-gateway/docs/deployment-model" in message
    assert "e.g. us-east4" in message and "Cloud Run services stay in northamerica-northeast1" in (
        message
    )
    data["gateway"]["location"] = "us-east4"  # the fix: a served location near the region
    cfg = config.parse(data)
    assert (cfg.region, cfg.gateway_location) == ("northamerica-northeast1", "us-east4")


@pytest.mark.parametrize("location", ["us-west1", "europe-west4", "asia-east1"])
def test_an_explicit_gateway_location_must_be_served(location):
    data = reference()
    data["gateway"]["location"] = location
    with pytest.raises(config.ConfigError, match=f"API Gateway does not serve '{location}'"):
        config.parse(data)


@pytest.mark.parametrize(
    "location", ["europe-west2", "australia-southeast1", "us-west2", "us-west3", "us-west4"]
)
def test_every_served_location_is_accepted(location):
    data = reference()
    data["gateway"]["location"] = location
    assert config.parse(data).gateway_location == location


def test_without_v3_the_region_need_not_be_served_by_api_gateway():
    data = reference()
    data["services"] = {k: v for k, v in data["services"].items() if v["version"] != "v3"}
    data["region"] = "northamerica-northeast1"
    data["gateway"].pop("location")
    assert config.parse(data).region == "northamerica-northeast1"
    data["gateway"]["location"] = "us-west1"  # an explicit mistake is reported all the same
    with pytest.raises(config.ConfigError, match="does not serve 'us-west1'"):
        config.parse(data)


def test_every_command_stops_on_an_unserved_gateway_region_before_any_cloud_call(tmp_path):
    from ..conftest import subprocess_env
    from ..support.pipeline import make_repo, pipeline

    repo = make_repo(tmp_path / "repo")
    path = repo / "deployment.yaml"
    path.write_text(
        path.read_text()
        .replace("region: us-central1", "region: northamerica-northeast1", 1)
        .replace("  location: us-central1\n", "")
    )
    for command in ("render", "build", "deploy", "verify"):
        done = pipeline(command, "--target", "gcp", root=repo, env=subprocess_env(tmp_path))
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "API Gateway does not serve 'northamerica-northeast1'" in done.stderr


# --- one validation method: deployment.schema.json (issue 20) ---------------------------------


def test_the_schema_is_valid_json_schema_and_follows_the_naming_rules():
    import jsonschema

    from hw5kit import naming
    from hw5kit.gcp_regions import API_GATEWAY_LOCATIONS

    schema = config.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    top, defs = schema["properties"], schema["$defs"]
    service, resources = defs["service"]["properties"], defs["resources"]["properties"]
    gateway = defs["gateway"]["properties"]
    same = [
        (top["region"], naming.REGION_RE),
        (top["repository"], naming.REPOSITORY_RE),
        (top["base_image"], naming.IMAGE_COMPONENT_RE),
        (top["autograder_service_account"], naming.SERVICE_ACCOUNT_RE),
        (top["services"]["propertyNames"], naming.SERVICE_NAME_RE),
        (service["cloud_run_name"], naming.CLOUD_RUN_NAME_RE),
        (service["backend"], naming.SERVICE_NAME_RE),
        (service["env"]["propertyNames"], naming.ENV_NAME_RE),
        (resources["memory"], naming.CLOUD_RUN_MEMORY_RE),
        (resources["cpu"], naming.CLOUD_RUN_CPU_RE),
        (gateway["api_id"], naming.GATEWAY_ID_RE),
        (gateway["gateway_id"], naming.GATEWAY_ID_RE),
    ]
    for node, rule in same:
        assert node["pattern"] == rule.pattern
    assert set(service["env"]["propertyNames"]["not"]["enum"]) == naming.CLOUD_RUN_RESERVED_ENV
    assert top["autograder_service_account"]["default"] == config.DEFAULT_AUTOGRADER
    assert gateway["location"]["description"].endswith(", ".join(API_GATEWAY_LOCATIONS))
    assert top["target"]["enum"] == list(config.TARGETS)


def test_every_schema_problem_is_reported_at_once_in_file_order():
    data = reference()
    data["region"] = "us_central1"
    data["services"]["backend_v1"]["resources"]["memory"] = "2GB"
    data["services"]["frontend_v1"]["colour"] = "blue"
    with pytest.raises(config.ConfigError) as info:
        config.parse(data, Path("deployment.yaml"))
    assert str(info.value).splitlines() == [
        "deployment.yaml: region: expected a region like us-central1, got 'us_central1'",
        "deployment.yaml: services.backend_v1.resources.memory: expected a size such as 512Mi "
        "or 2Gi, got '2GB'",
        "deployment.yaml: services.frontend_v1.colour: unknown key; expected one of: kind "
        "(backend | frontend); version (v1 | v2 | v3); cloud_run_name (the Cloud Run service "
        "name, e.g. backendv1); backend (frontends: the backend service they call, e.g. "
        "backend_v1 (v3: backend_v3, reached through the API gateway)); resources (memory, "
        "cpu, min_instances, max_instances, concurrency); env (environment variables set on "
        "the service (strings))",
    ]


@pytest.mark.parametrize(
    ("path", "value", "read"),
    [
        ("services.backend_v1.resources.cpu", 2, "2"),  # YAML's number for "2"
        ("services.backend_v1.resources.cpu", 0.5, "0.5"),
        ("services.backend_v1.resources.cpu", " 500m ", "500m"),
        ("services.backend_v1.resources.max_instances", "3", 3),
        ("serving_port", " 8080 ", 8080),
        ("region", " us-east1 ", "us-east1"),
        ("services.backend_v1.env.HW5_THREADS", 4, "4"),
    ],
)
def test_a_value_written_in_another_yaml_type_is_read_as_the_schema_says(path, value, read):
    cfg = config.parse(change(path, value))
    backend = cfg.service("backend_v1")
    found = {
        "services.backend_v1.resources.cpu": lambda: backend.resources.cpu,
        "services.backend_v1.resources.max_instances": lambda: backend.resources.max_instances,
        "serving_port": lambda: cfg.serving_port,
        "region": lambda: cfg.region,
        "services.backend_v1.env.HW5_THREADS": lambda: backend.env_dict()["HW5_THREADS"],
    }[path]()
    assert found == read


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("student_id", None, "student_id: missing; expected your student ID"),
        ("student_id", "", "student_id: missing; expected your student ID"),
        ("services", None, "services: expected a mapping of services"),
        ("services.backend_v1", "x", "services.backend_v1: expected a mapping (kind, version"),
        ("services.backend_v1.env.1BAD", "x", "env.1BAD: not a valid environment variable name"),
        ("services.backend_v1.env.X", True, "env.X: expected a string value, got True"),
        ("services.backend_v1.resources.cpu", 2.0, "resources.cpu: expected 1, 2, 4, 8"),
        ("serving_port", "eighty", "serving_port: expected 1 to 65535, got 'eighty'"),
        ("gateway.deadline", "30", "gateway.deadline: expected seconds a backend may take"),
        ("autograder_service_account", None, "e-mail such as the course's test account"),
    ],
)
def test_more_mistakes_name_their_key(path, value, expected):
    with pytest.raises(config.ConfigError) as info:
        config.parse(change(path, value), Path("deployment.yaml"))
    assert expected in str(info.value), str(info.value)
