"""backend_v1 and backend_v2 under real gunicorn on 127.0.0.1, classifying real photos."""

import itertools
import subprocess
import sys
import threading

import pytest
import requests

from hw5kit import procs
from hw5kit.photos import CORE_PHOTOS, photo

from ..conftest import ROOT, subprocess_env

pytestmark = pytest.mark.slow
LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def classify_upload(base, name, session=None, **fields):
    with photo(name).path.open("rb") as fh:
        return (session or requests).post(
            f"{base}/predict", files={"file": (name, fh)}, data=fields, timeout=60
        )


def test_v1_answers_hello_and_classifies_core_photos_by_url_and_upload(backend_v1, photo_url):
    assert requests.get(f"{backend_v1.url}/hello", timeout=5).text == "Hello!"
    for name in CORE_PHOTOS:
        by_url = requests.post(
            f"{backend_v1.url}/predict", json={"url": photo_url(name)}, timeout=60
        )
        by_upload = classify_upload(backend_v1.url, name)
        for r in (by_url, by_upload):
            assert r.status_code == 200, r.text
            assert r.json()["model"] == "efficientnet_lite0"
            assert photo(name).matches(r.json()["category"]), (name, r.json()["predictions"][:3])
        assert by_url.json()["predictions"] == by_upload.json()["predictions"]


@pytest.mark.parametrize("model", LITE)
def test_v2_each_model_classifies_core_photos(backend_v2, photo_url, model):
    for name in CORE_PHOTOS:
        by_url = requests.post(
            f"{backend_v2.url}/predict", json={"url": photo_url(name), "model": model}, timeout=60
        )
        by_upload = classify_upload(backend_v2.url, name, model=model)
        for r in (by_url, by_upload):
            assert r.status_code == 200, r.text
            assert r.json()["model"] == model
            assert photo(name).matches(r.json()["category"]), (model, name, r.json())


def test_missing_url_is_400_from_gunicorn(backend_v2):
    r = requests.post(f"{backend_v2.url}/predict", json={}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_input"
    r = requests.post(
        f"{backend_v2.url}/predict",
        data=b"{oops",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_concurrent_callers_with_different_models_never_mix(backend_v2):
    """Two clients, 50 interleaved requests each: A names its model in the body, B chose its
    model once with PUT (session cookie). Every answer must be its own model's prediction."""
    base = backend_v2.url
    reference = {}
    for model, name in itertools.product(("efficientnet_lite1", "efficientnet_lite2"), CORE_PHOTOS):
        r = classify_upload(base, name, model=model)
        reference[model, name] = r.json()["predictions"]
    assert (
        reference["efficientnet_lite1", "chelsea.png"]
        != reference["efficientnet_lite2", "chelsea.png"]
    )

    bob = requests.Session()
    assert bob.put(f"{base}/model/efficientnet_lite2", timeout=10).json()["scope"] == "session"
    alice = requests.Session()
    barrier = threading.Barrier(2)
    errors: list[str] = []
    seen = {"alice": 0, "bob": 0}

    def run(who, session, model, body_model):
        for i in range(50):
            name = CORE_PHOTOS[i % len(CORE_PHOTOS)]
            if i % 10 == 0:
                barrier.wait(timeout=60)  # line the two callers up again
            fields = {"model": body_model} if body_model else {}
            r = classify_upload(base, name, session=session, **fields)
            body = r.json()
            if r.status_code != 200 or body["model"] != model:
                errors.append(f"{who} #{i}: {r.status_code} {body.get('model')}")
            elif body["predictions"] != reference[model, name]:
                errors.append(f"{who} #{i}: predictions differ from {model}'s")
            else:
                seen[who] += 1

    threads = [
        threading.Thread(
            target=run, args=("alice", alice, "efficientnet_lite1", "efficientnet_lite1")
        ),
        threading.Thread(target=run, args=("bob", bob, "efficientnet_lite2", None)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == []
    assert seen == {"alice": 50, "bob": 50}
    # a third caller with no session still gets the default
    assert classify_upload(base, "coffee.png").json()["model"] == "efficientnet_lite0"


def test_torchvision_model_served_offline_from_torch_home(backend_factory, tmp_path):
    import torch
    import torchvision

    from hw5kit.serving.models import get_spec

    torch_home = tmp_path / "baked"
    target = torch_home / "hub" / "checkpoints" / get_spec("mobilenet_v3_small").weights_file
    target.parent.mkdir(parents=True)
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), target)
    backend = backend_factory(
        "backend_v1", MODEL_NAME="mobilenet_v3_small", TORCH_HOME=str(torch_home)
    )
    r = classify_upload(backend.url, "coffee.png", top_k="3")
    assert r.status_code == 200 and r.json()["model"] == "mobilenet_v3_small"
    assert len(r.json()["predictions"]) == 3
    ready = requests.get(f"{backend.url}/readyz", timeout=5).json()
    assert ready["models"] == {"mobilenet_v3_small": "loaded"}
    assert backend.blocked_network() == ""


def test_missing_weights_stop_start_up_with_a_useful_message(backend_factory):
    backend = backend_factory("backend_v1", wait=False, MODEL_NAME="resnet152")
    try:
        backend.process.popen.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("gunicorn kept running without its model's weights")
    assert backend.process.popen.returncode != 0
    log = backend.process.log_path.read_text()
    assert "resnet152-f82ba261.pth" in log
    assert "python -m hw5kit.serving.models.weights bake resnet152" in log
    assert backend.blocked_network() == ""


def test_the_documented_gunicorn_command_works_from_the_repo_root(tmp_path):
    """`gunicorn --chdir apps/backend_v2 app:app`, as the design card says, from the root."""
    port = procs.free_port()
    env = subprocess_env(tmp_path)
    process = procs.start(
        "plain-gunicorn",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--chdir",
            "apps/backend_v2",
            "-b",
            f"127.0.0.1:{port}",
            "app:app",
        ],
        log_path=tmp_path / "gunicorn.log",
        env=env,
        cwd=ROOT,
    )
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=120, process=process)
        assert requests.get(f"http://127.0.0.1:{port}/models", timeout=5).json() == list(LITE)
    finally:
        process.stop()


def test_port_comes_from_PORT_then_SERVING_PORT(tmp_path):
    """Cloud Run sets PORT; the course's images use SERVING_PORT: both reach gunicorn's bind."""
    port, other = procs.free_port(), procs.free_port()
    env = subprocess_env(
        tmp_path, PORT=str(port), SERVING_PORT=str(other), HW5_BIND_HOST="127.0.0.1"
    )
    process = procs.start(
        "port-test",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:hw5kit.serving.gunicorn_conf",
            "--chdir",
            str(ROOT / "apps" / "backend_v1"),
            "app:app",
        ],
        log_path=tmp_path / "port.log",
        env=env,
    )
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/hello", timeout=120, process=process)
        assert procs.http_status(f"http://127.0.0.1:{other}/hello", timeout=1) is None
    finally:
        process.stop()
