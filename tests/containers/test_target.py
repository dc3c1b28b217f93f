"""The container target of the pipeline, end to end through its CLI (marks: container, slow):
build, deploy, verify, status and stop of v1, and of v3 (three model backends, the API gateway
on the host, the frontend), in a copy of the repository, with real images.

The copy shares the project's container store (``HW5_CONTAINER_STORE``) with the session's
image build (``images``), so its base is reused and its service layers come from the cache.
"""

from __future__ import annotations

import json
import shutil

import pytest
import requests
import yaml

from hw5kit import photos, procs
from hw5kit.containers import attach
from hw5kit.containers.engine import default_store
from hw5kit.containers.measure import copy_context
from hw5kit.pipeline.targets.container import DEPLOYMENT_LABEL, build_id_of, deployment_label

from ..conftest import ROOT, subprocess_env
from ..support.pipeline import pipeline

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(1200)]

V1 = "backend_v1,frontend_v1"
V3 = "backend_v3,frontend_v3"
MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


@pytest.fixture
def repo(tmp_path, images):
    """A copy of the repository (build context, config, apps) and the pipeline's environment."""
    dest = copy_context(ROOT, tmp_path / "repo")
    for name in ("deployment.yaml", "deliverables.yaml"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "templates", dest / "templates")  # v3's gateway document
    # the session's store and tag: its bases are reused, and this repository's own images
    # (hw5-<service>:local) are left alone
    env = subprocess_env(
        tmp_path, HW5_CONTAINER_STORE=str(default_store(ROOT)), HW5_CONTAINER_TAG="test"
    )
    yield dest, env
    pipeline("stop", "--target", "container", root=dest, env=env)


def run(command, repo, *args):
    dest, env = repo
    done = pipeline(command, "--target", "container", *args, root=dest, env=env)
    print(done.stdout, done.stderr)
    return done


def test_build_deploy_verify_status_and_stop_v1(engine, repo):
    dest = repo[0]
    built = run("build", repo, "--only", V1)
    assert built.returncode == 0, built.stderr
    assert "base hw5-base-backend:test is up to date" in built.stdout
    data = yaml.safe_load((dest / "deliverables.container.yaml").read_text())["services"]
    for part, service in (("back_end", "backend_v1"), ("front_end", "frontend_v1")):
        image_id = engine.image_id(f"hw5-{service}:test")
        assert data["v1"][part]["build_id"] == build_id_of(image_id)
        assert data["v1"][part]["service_url"] is None
    assert data["v2"]["back_end"]["build_id"] is None

    # built, not deployed: verify says so and exits 3, not a schema failure
    partial = run("verify", repo, "--only", V1)
    assert partial.returncode == 3, partial.stdout
    assert "services.v1.back_end (backend_v1): built, not deployed" in partial.stdout

    deployed = run("deploy", repo, "--only", V1)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "isolated network" in deployed.stdout
    data = yaml.safe_load((dest / "deliverables.container.yaml").read_text())["services"]
    back, front = data["v1"]["back_end"]["service_url"], data["v1"]["front_end"]["service_url"]
    assert back.startswith("http://127.0.0.1:") and front.startswith("http://127.0.0.1:")
    # the published port answers on the host, through the relay
    assert requests.get(f"{back}/hello", timeout=10).text == "Hello!"

    checked = run("verify", repo, "--only", V1)
    assert checked.returncode == 0, checked.stdout
    out = checked.stdout
    assert "FAIL" not in out
    assert "classified from inside the container: 'espresso'" in out
    assert out.count("no network call at start-up: network none, interfaces: lo") == 2
    assert "GET SERVING_URL/hello from inside the container: 200 'Hello!'" in out
    assert "not checked (--only): backend_v2, frontend_v2" in out

    # all services: v2 is reported as not deployed, exit 3
    everything = run("verify", repo)
    assert everything.returncode == 3, everything.stdout
    assert "services.v2.back_end (backend_v2): not deployed" in everything.stdout

    status = run("status", repo)
    assert status.stdout.count("running") == 2 and "health 200" in status.stdout
    state = yaml.safe_load((dest / ".hw5" / "container" / "deployment.json").read_text())
    names = [e["container"] for e in state["services"].values()]
    box = attach(engine, state["services"]["frontend_v1"]["container"])
    assert box.env["SERVING_URL"] == back and box.env["PORT"] == "8000"

    # a container removed behind the target's back fails verify, naming it
    engine.call(["rm", "-f", state["services"]["backend_v1"]["container"]])
    broken = run("verify", repo, "--only", V1)
    assert broken.returncode == 1
    assert "FAIL services.v1.back_end (backend_v1): GET" in broken.stdout

    stopped = run("stop", repo)
    assert stopped.returncode == 0 and "frontend_v1: stopped" in stopped.stdout
    assert not any(engine.container_running(n) for n in names)
    label = f"label={DEPLOYMENT_LABEL}={deployment_label(dest)}"
    assert engine.text(["ps", "-a", "-q", "--filter", label]) == ""
    relays = [e.get("relay_pid") for e in state["services"].values()]
    assert all(relays) and not any(_alive(pid) for pid in relays)
    data = yaml.safe_load((dest / "deliverables.container.yaml").read_text())["services"]
    assert data["v1"]["front_end"]["service_url"] is None
    assert data["v1"]["front_end"]["build_id"] is not None


def test_v3_model_backends_the_gateway_and_the_frontend(engine, repo):
    """v3 as deployment.yaml has it (a backend image per model), with the gateway's API key on:
    the gateway runs on the host between the backend containers and the frontend's."""
    dest = repo[0]
    config = yaml.safe_load((dest / "deployment.yaml").read_text())
    config["gateway"]["api_key"] = True
    (dest / "deployment.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    built = run("build", repo, "--only", V3)
    assert built.returncode == 0, built.stdout + built.stderr
    v3 = yaml.safe_load((dest / "deliverables.container.yaml").read_text())["services"]["v3"]
    for model in MODELS:
        image = f"hw5-backend_v3_{model}:test"
        assert v3["backends"][model]["build_id"] == build_id_of(engine.image_id(image))
        # Dockerfile.backend_v3 with its model as the MODEL_NAME build argument
        inspect = ["image", "inspect", "--format", "{{json .Config.Env}}", image]
        env = json.loads(engine.text(inspect))
        assert f"MODEL_NAME={model}" in env
    assert "building hw5-backend_v3_efficientnet_lite1:test from Dockerfile.backend_v3" in (
        built.stdout
    )

    deployed = run("deploy", repo, "--only", V3)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "deploy: 5 of 5 services running" in deployed.stdout
    v3 = yaml.safe_load((dest / "deliverables.container.yaml").read_text())["services"]["v3"]
    gateway = v3["gateway_url"]
    key = (dest / ".hw5/container/gateway.key").read_text().strip()
    state = _state(dest)
    assert state["gateway_v3"]["url"] == gateway and gateway.startswith("http://127.0.0.1:")
    front = attach(engine, state["frontend_v3"]["container"])
    assert front.env["API_GATEWAY"] == gateway and front.env["API_GATEWAY_KEY"] == key
    assert "SERVING_URL" not in front.env
    spec = yaml.safe_load((dest / ".hw5/container/openapi_v3.yaml").read_text())
    for model in MODELS:
        route = spec["paths"][f"/model/{model}/predict"]["post"]["x-google-backend"]
        assert route["address"] == v3["backends"][model]["service_url"]
    # from the host: the gateway wants its key and routes each model to its own container
    assert requests.get(f"{gateway}/models", timeout=10).status_code == 401
    headers = {"x-api-key": key}
    assert requests.get(f"{gateway}/models", headers=headers, timeout=10).json() == list(MODELS)
    cat = photos.photo("chelsea.png")
    for model in MODELS:
        r = requests.post(
            f"{gateway}/model/{model}/predict",
            files={"file": ("chelsea.png", cat.path.read_bytes())},
            headers=headers,
            timeout=60,
        )
        assert r.status_code == 200, r.text
        assert r.json()["model"] == model and cat.matches(r.json()["category"])

    checked = run("verify", repo, "--only", V3)
    assert checked.returncode == 0, checked.stdout
    out = checked.stdout
    assert "FAIL" not in out
    assert out.count("no network call at start-up: network none, interfaces: lo") == 4
    for model in MODELS:
        assert f"inside the container (POST /model/{model}/predict): 'espresso'" in out
        assert f"POST /model/{model}/predict coffee.png by upload: 'espresso' by {model}" in out
    assert "GET /models without an API key: 401 (refused as expected)" in out
    assert f"API_GATEWAY: '{gateway}'" in out
    assert "GET API_GATEWAY/models from inside the container: 200" in out

    # one model's backend redeployed alone: the gateway restarts on its port, so the frontend
    # (not redeployed) still reaches it
    again = run("deploy", repo, "--only", "backend_v3_efficientnet_lite1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "stopped the previous gateway" in again.stdout
    assert _state(dest)["gateway_v3"]["url"] == gateway
    status = run("status", repo)
    line = next(x for x in status.stdout.splitlines() if x.startswith("gateway_v3"))
    assert "running" in line and "health 200" in line

    # the gateway gone: verify fails on it and on the frontend's view of it
    procs.stop_pid(_state(dest)["gateway_v3"]["pid"])
    broken = run("verify", repo, "--only", V3)
    assert broken.returncode == 1
    assert f"FAIL services.v3.gateway_url (API gateway): GET {gateway}/models" in broken.stdout
    assert "FAIL services.v3.front_end (frontend_v3): GET API_GATEWAY/models" in broken.stdout
    # redeploying the frontend brings the gateway back first
    fixed = run("deploy", repo, "--only", "frontend_v3")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert run("verify", repo, "--only", "frontend_v3").returncode == 0

    state = _state(dest)
    stopped = run("stop", repo)
    assert stopped.returncode == 0 and "gateway_v3: stopped" in stopped.stdout
    assert not _alive(state["gateway_v3"]["pid"])
    assert not any(engine.container_running(e["container"]) for e in _containers(state))
    assert not any(_alive(e["relay_pid"]) for e in _containers(state))
    v3 = yaml.safe_load((dest / "deliverables.container.yaml").read_text())["services"]["v3"]
    assert v3["gateway_url"] is None and v3["front_end"]["service_url"] is None


def _state(dest) -> dict:
    return json.loads((dest / ".hw5/container/deployment.json").read_text())["services"]


def _containers(state: dict) -> list[dict]:
    return [e for name, e in state.items() if name != "gateway_v3"]


def test_deploy_without_a_build_says_what_to_run(repo):
    done = run("deploy", repo, "--only", "backend_v1")
    assert done.returncode == 1
    assert "no container build of backend_v1: run `nox -s build -- --target container`" in (
        done.stderr
    )


def _alive(pid: int) -> bool:
    from hw5kit import procs

    return procs.pid_alive(int(pid))
