"""The gateway document rendered from deployment.yaml, and the v3 config's validation."""

from __future__ import annotations

import pytest
import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from hw5kit.pipeline import config, render

from ..conftest import ROOT

MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def load(tmp_path, **changes):
    data = yaml.safe_load((ROOT / "deployment.yaml").read_text())
    for key, value in changes.items():
        data["gateway"][key] = value
    path = tmp_path / "deployment.yaml"
    path.write_text(yaml.safe_dump(data))
    return config.load(path)


def test_the_committed_document_is_swagger_2_with_a_placeholder_per_backend():
    doc = yaml.safe_load((ROOT / "deployment" / "openapi_v3.yaml").read_text())
    validate(doc)  # raises on anything Swagger 2.0 does not allow
    assert doc["swagger"] == "2.0" and "securityDefinitions" not in doc  # api_key: false
    predict = {p: v["post"] for p, v in doc["paths"].items() if p.endswith("/predict")}
    assert sorted(predict) == [f"/model/{m}/predict" for m in MODELS]
    for model in MODELS:
        backend = predict[f"/model/{model}/predict"]["x-google-backend"]
        run_name = "backendv3-" + model.replace("_", "-")
        assert backend == {
            "address": f"https://{run_name}.DEPLOY-FILLS-IN-THE-CLOUD-RUN-URL.run.app",
            "path_translation": "APPEND_PATH_TO_ADDRESS",
            "deadline": 30.0,
        }
    assert doc["paths"]["/models"]["get"]["x-google-backend"]["address"].startswith(
        "https://backendv3-efficientnet-lite0."
    )


def test_deploy_renders_the_urls_and_the_api_key_into_a_valid_document(tmp_path):
    cfg = load(tmp_path, api_key=True, deadline=12.5)
    urls = {
        f"backend_v3_{m}": f"https://backendv3-{i}-abc-uc.a.run.app/" for i, m in enumerate(MODELS)
    }
    doc = yaml.safe_load(render.render_openapi(cfg, ROOT / "templates", urls))
    validate(doc)
    assert doc["securityDefinitions"] == {
        "api_key": {"type": "apiKey", "name": "key", "in": "query"},
        "api_key_header": {"type": "apiKey", "name": "x-api-key", "in": "header"},
    }
    assert doc["security"] == [{"api_key": []}, {"api_key_header": []}]
    backend = doc["paths"]["/model/efficientnet_lite2/predict"]["post"]["x-google-backend"]
    assert backend["address"] == "https://backendv3-2-abc-uc.a.run.app"
    assert backend["deadline"] == 12.5
    with pytest.raises(ValueError, match="no URL for backend_v3_efficientnet_lite1"):
        render.render_openapi(cfg, ROOT / "templates", {"backend_v3_efficientnet_lite0": "x"})


def test_the_validator_would_catch_a_broken_document():
    doc = yaml.safe_load((ROOT / "deployment" / "openapi_v3.yaml").read_text())
    del doc["paths"]["/models"]["get"]["responses"]
    with pytest.raises(OpenAPIValidationError):
        validate(doc)


def test_backend_v3_expands_to_one_service_per_model():
    cfg = config.load(ROOT / "deployment.yaml")
    backends = cfg.v3_backends()
    assert [b.model for b in backends] == list(MODELS)
    lite1 = cfg.service("backend_v3_efficientnet_lite1")
    assert lite1.env_dict() == {"MODEL_NAME": "efficientnet_lite1", "MODELS": ",".join(MODELS)}
    assert lite1.dockerfile == "Dockerfile.backend_v3" and lite1.app_dir == "apps/backend_v3"
    assert lite1.deliverable_key == ("v3", "backends", "efficientnet_lite1")
    assert [s.name for s in cfg.select(["backend_v3"])] == [b.name for b in backends]
    frontend = cfg.service("frontend_v3")
    assert frontend.url_var == "API_GATEWAY" and frontend.deliverable_key == ("v3", "front_end")
    assert cfg.gateway == config.Gateway("hw5-api", "hw5-gateway", "us-central1", 30.0, False)
    # v1 and v2 are exactly the course's
    assert cfg.service("backend_v1").deliverable_key == ("v1", "back_end")
    assert cfg.service("frontend_v2").url_var == "SERVING_URL"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["gateway"].update(deadline=0),
            "gateway.deadline: expected seconds a backend may take to answer, a number above 0 "
            "and at most 3600, got 0",
        ),
        (
            lambda d: d["gateway"].update(api_key="yes"),
            "gateway.api_key: expected true or false, got 'yes'",
        ),
        (
            lambda d: d["gateway"].update(api_id="HW5_api"),
            "gateway.api_id: expected the API Gateway API ID: lowercase letters, digits and "
            "hyphens, e.g. hw5-api, got 'HW5_api'",
        ),
        (lambda d: d["gateway"].update(keys=1), "gateway.keys: unknown key; expected one of"),
        (
            lambda d: d["services"]["backend_v3"]["env"].update(MODEL_NAME="efficientnet_lite0"),
            "services.backend_v3.env.MODEL_NAME: a v3 backend lists its models in MODELS",
        ),
        (
            lambda d: d["services"]["frontend_v3"].update(backend="backend_v1"),
            "services.frontend_v3.backend: a v3 frontend calls the v3 backends through the API "
            "gateway: name a v3 backend entry (backend_v3), got 'backend_v1'",
        ),
        (
            lambda d: d["services"]["frontend_v3"].update(env={"API_GATEWAY": "x"}),
            "services.frontend_v3.env.API_GATEWAY: API_GATEWAY is wired by deploy",
        ),
    ],
)
def test_v3_config_mistakes_name_the_key_and_what_is_expected(tmp_path, change, message):
    data = yaml.safe_load((ROOT / "deployment.yaml").read_text())
    change(data)
    path = tmp_path / "deployment.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(config.ConfigError) as info:
        config.load(path)
    assert message in str(info.value)
