"""The container target of the pipeline, end to end through its CLI (marks: container, slow):
build, deploy, verify, status and stop of v1 in a copy of the repository, with real images.

The copy shares the project's container store (``HW5_CONTAINER_STORE``) with the session's
image build (``images``), so its base is reused and its service layers come from the cache.
"""

from __future__ import annotations

import shutil

import pytest
import requests
import yaml

from hw5kit.containers import attach
from hw5kit.containers.engine import default_store
from hw5kit.containers.measure import copy_context
from hw5kit.pipeline.targets.container import DEPLOYMENT_LABEL, build_id_of, deployment_label

from ..conftest import ROOT, subprocess_env
from ..support.pipeline import pipeline

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(1200)]

V1 = "backend_v1,frontend_v1"


@pytest.fixture
def repo(tmp_path, images):
    """A copy of the repository (build context, config, apps) and the pipeline's environment."""
    dest = copy_context(ROOT, tmp_path / "repo")
    for name in ("deployment.yaml", "deliverables.yaml"):
        shutil.copy2(ROOT / name, dest / name)
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


def test_deploy_without_a_build_says_what_to_run(repo):
    done = run("deploy", repo, "--only", "backend_v1")
    assert done.returncode == 1
    assert "no container build of backend_v1: run `nox -s build -- --target container`" in (
        done.stderr
    )


def _alive(pid: int) -> bool:
    from hw5kit import procs

    return procs.pid_alive(int(pid))
