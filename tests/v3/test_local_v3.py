"""v3 on the local target, end to end: `nox -s build deploy verify` as the README runs it
brings up v1, v2 and v3 (for v3 three per-model backends, the gateway and the frontend); real
photos are classified with each model through the gateway and through the frontend (Streamlit
AppTest); `verify` checks it; a stopped backend answers 502 at once while the other models keep
working; `stop` ends it.
One deployment is shared by the module."""

from __future__ import annotations

import json
import time

import pytest
import requests
import yaml
from streamlit.testing.v1 import AppTest

from hw5kit import procs
from hw5kit.pipeline.targets.local import process_environ

from ..conftest import ROOT, subprocess_env
from ..support.pipeline import make_repo, pipeline

pytestmark = pytest.mark.slow
MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def running(repo):
    return json.loads((repo / ".hw5/local/deployment.json").read_text())["services"]


@pytest.fixture(scope="module")
def v3(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("v3")
    repo = make_repo(tmp / "repo")
    env = subprocess_env(tmp)
    try:
        built = pipeline("build", root=repo, env=env)
        assert built.returncode == 0, built.stdout + built.stderr
        deployed = pipeline("deploy", root=repo, env=env)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        data = yaml.safe_load((repo / "deliverables.local.yaml").read_text())
        yield repo, env, data["services"]["v3"]
    finally:
        stopped = pipeline("stop", root=repo, env=env)
        for entry in running(repo).values() if (repo / ".hw5/local").exists() else ():
            procs.stop_pid(entry["pid"])
        assert stopped.returncode == 0, stopped.stderr


def test_deploy_brings_up_three_backends_the_gateway_and_the_frontend(v3):
    repo, _, recorded = v3
    state = running(repo)
    v3_services = {f"backend_v3_{m}" for m in MODELS} | {"gateway_v3", "frontend_v3"}
    course = {"backend_v1", "frontend_v1", "backend_v2", "frontend_v2"}
    assert set(state) == v3_services | course
    for model in MODELS:
        env = process_environ(state[f"backend_v3_{model}"]["pid"])
        assert env["MODEL_NAME"] == model and env["MODELS"] == ",".join(MODELS)
        assert recorded["backends"][model]["service_url"] == state[f"backend_v3_{model}"]["url"]
    assert recorded["gateway_url"] == state["gateway_v3"]["url"]
    frontend = process_environ(state["frontend_v3"]["pid"])
    assert frontend["API_GATEWAY"] == recorded["gateway_url"] and "SERVING_URL" not in frontend
    spec = yaml.safe_load((repo / ".hw5/local/openapi_v3.yaml").read_text())
    for model in MODELS:
        backend = spec["paths"][f"/model/{model}/predict"]["post"]["x-google-backend"]
        assert backend["address"] == recorded["backends"][model]["service_url"]


def test_each_model_classifies_a_photo_through_the_gateway(v3, photo_url):
    gateway = v3[2]["gateway_url"]
    assert requests.get(f"{gateway}/models", timeout=10).json() == list(MODELS)
    for model in MODELS:
        r = requests.post(
            f"{gateway}/model/{model}/predict", json={"url": photo_url("chelsea.png")}, timeout=60
        )
        assert r.status_code == 200, r.text
        assert r.json()["model"] == model and r.json()["category"] in (
            "tabby",
            "tiger cat",
            "Egyptian cat",
        )
    other = requests.post(
        f"{gateway}/model/efficientnet_lite0/predict",
        json={"url": photo_url("coffee.png"), "model": "efficientnet_lite1"},
        timeout=60,
    )
    assert other.status_code == 400  # the backend's own error, passed through as JSON
    assert other.json()["error"]["code"]


def test_the_frontend_classifies_with_each_model_through_the_gateway(v3, photo_url, monkeypatch):
    gateway = v3[2]["gateway_url"]
    monkeypatch.setenv("API_GATEWAY", gateway)
    monkeypatch.setenv("UI_LANG", "en")
    monkeypatch.delenv("SERVING_URL", raising=False)
    at = AppTest.from_file(str(ROOT / "apps/frontend_v3/app.py"), default_timeout=90).run()
    picker = at.selectbox(key="model_picker")
    assert picker.options == list(MODELS)
    at.text_input(key="url_text").input(photo_url("coffee.png"))
    at.form_submit_button[0].click().run()
    for model in MODELS:
        at.selectbox(key="model_picker").select(model).run()
        assert not at.exception, [e.value for e in at.exception]
        answer = at.success[0].value
        assert "espresso" in answer and model.replace("_", "\\_") in answer


def test_verify_checks_v3_through_the_gateway(v3):
    repo, env, _ = v3
    done = pipeline("verify", root=repo, env=env)
    assert done.returncode == 0, done.stdout
    lines = [line for line in done.stdout.splitlines() if "v3" in line]
    assert all(line.strip().startswith("ok") for line in lines if "services.v3" in line), (
        done.stdout
    )
    for model in MODELS:
        assert f"POST /model/{model}/predict coffee.png by upload" in done.stdout
    assert "API_GATEWAY" in done.stdout


def test_a_stopped_backend_is_502_at_once_and_the_others_keep_working(v3, photo_url):
    repo, _, recorded = v3
    gateway = recorded["gateway_url"]
    procs.stop_pid(running(repo)["backend_v3_efficientnet_lite1"]["pid"])
    start = time.monotonic()
    r = requests.post(
        f"{gateway}/model/efficientnet_lite1/predict",
        json={"url": photo_url("coffee.png")},
        timeout=60,
    )
    elapsed = time.monotonic() - start
    assert r.status_code == 502 and r.json()["error"]["code"] == "bad_gateway"
    assert elapsed < 2.0  # the deadline is 30 s: a refused connection is not waited on
    for model in ("efficientnet_lite0", "efficientnet_lite2"):
        ok = requests.post(
            f"{gateway}/model/{model}/predict", json={"url": photo_url("coffee.png")}, timeout=60
        )
        assert ok.status_code == 200 and ok.json()["category"] == "espresso"
