"""The light environment (.nox/light), made as `nox -s render` makes it, in a temporary folder:
no torch nor anything else heavy is installed, and every light entry point imports and runs in
it without trying to import a heavy module (tests/support/heavyguard records every attempt,
even a caught one). Its wheels install it with no index, as the Gradescope bundle will."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from hw5kit import devenv, procs
from hw5kit.gcloud_fake import GATEWAY_APIS, HW5_APIS, FakeGcloud
from hw5kit.grading.rubric import load as load_rubric

from .conftest import ROOT, SUPPORT
from .support.pipeline import PROJECT, make_repo

pytestmark = pytest.mark.slow

# Distributions the light environment may hold: the core dependencies, theirs, and pip's own.
LIGHT_DISTRIBUTIONS = {
    "hw5kit", "pip", "setuptools",
    "jinja2", "markupsafe", "pyyaml", "requests", "urllib3", "idna", "certifi",
    "charset-normalizer", "jsonschema", "jsonschema-specifications", "referencing",
    "rpds-py", "attrs", "typing-extensions",
}  # fmt: skip
MAX_MB = 150  # the aim for the light environment's size on disk


@dataclass
class Light:
    python: Path
    venv: Path
    seconds: float

    def run(
        self,
        *args: str,
        tmp: Path,
        cwd: Path = ROOT,
        env: dict[str, str] | None = None,
        heavy_ok: bool = False,
    ) -> subprocess.CompletedProcess:
        """``python ARGS`` in the light environment under the heavy-import and network
        guards; fails the test if anything tried to import a heavy module (unless
        ``heavy_ok``: a command of the full environment)."""
        heavy_log = tmp / "heavy.log"
        net_log = tmp / "netguard.log"
        environ = {
            k: v for k, v in (env or os.environ).items() if not k.startswith(("HW5_", "PYTHON"))
        }
        environ.update(
            PYTHONPATH=str(SUPPORT / "heavyguard"),
            HEAVY_MODULES=",".join(devenv.HEAVY_MODULES),
            HEAVY_LOG=str(heavy_log),
            NETGUARD_LOG=str(net_log),
        )
        done = subprocess.run(
            [str(self.python), *args],
            cwd=cwd,
            env=environ,
            capture_output=True,
            text=True,
            timeout=300,
        )
        heavy = heavy_log.read_text() if heavy_log.exists() else ""
        if not heavy_ok:
            assert heavy == "", f"{args}: a light path tried a heavy module:\n{heavy[:3000]}"
        net = net_log.read_text() if net_log.exists() else ""
        assert net == "", f"{args}: tried to reach the network outside loopback:\n{net[:2000]}"
        return done


@pytest.fixture(scope="module")
def light(tmp_path_factory) -> Light:
    venv = tmp_path_factory.mktemp("light") / "env"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(devenv.LIGHT.override, str(venv))
        start = time.monotonic()
        python = devenv.ensure(ROOT, profile=devenv.LIGHT, log=lambda line: None)
        seconds = time.monotonic() - start
        assert devenv.is_current(ROOT, devenv.LIGHT)
    print(f"light environment: created in {seconds:.1f} s, {_megabytes(venv):.0f} MB")
    return Light(python, venv, seconds)


def _megabytes(folder: Path) -> float:
    total = sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    return total / 2**20


def _distributions(python: Path) -> set[str]:
    done = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
    )
    return {d["name"].lower().replace("_", "-") for d in json.loads(done.stdout)}


def test_the_light_environment_holds_only_the_core_and_is_small(light):
    installed = _distributions(light.python)
    assert installed - LIGHT_DISTRIBUTIONS == set(), "the light environment grew"
    assert {"hw5kit", "jinja2", "pyyaml", "jsonschema", "requests"} <= installed
    assert not {"torch", "numpy", "pillow", "flask", "onnxruntime", "streamlit"} & installed
    assert _megabytes(light.venv) < MAX_MB
    # a second ensure finds it current (stamped) and installs nothing
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(devenv.LIGHT.override, str(light.venv))
        lines: list[str] = []
        assert devenv.ensure(ROOT, profile=devenv.LIGHT, log=lines.append) == light.python
        assert lines == []


def test_every_light_entry_point_imports_without_a_heavy_module(light, tmp_path):
    probe = (
        "import importlib, json, sys\n"
        f"for name in {devenv.LIGHT_ENTRY_POINTS!r}: importlib.import_module(name)\n"
        f"heavy = {devenv.HEAVY_MODULES!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.partition('.')[0] in heavy)))\n"
    )
    done = light.run("-c", probe, tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_the_guard_catches_a_heavy_import_even_when_it_is_caught(light, tmp_path):
    """The check above can fail: a module that only tries torch is reported."""
    code = "try:\n    import torch\nexcept ImportError:\n    pass\n"
    with pytest.raises(AssertionError, match="tried a heavy module"):
        light.run("-c", code, tmp=tmp_path)


def test_a_full_environment_command_says_where_to_run_it(light, tmp_path):
    done = light.run("-m", "hw5kit.cli", "weights", "--help", tmp=tmp_path, heavy_ok=True)
    assert done.returncode == 2
    assert "this environment lacks" in done.stderr and ".nox/kit" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def cloud(light, tmp_path) -> FakeGcloud:
    fake = FakeGcloud(tmp_path / "cloud")
    fake.install(tmp_path / "bin", python=str(light.python))
    fake.add_project(PROJECT, apis=(*HW5_APIS, *GATEWAY_APIS))  # what setup provisions
    return fake


def test_the_light_sessions_run_in_the_light_environment(light, cloud, tmp_path):
    """What `nox -s render / setup / check_prereq / build deploy verify status -- --target gcp`
    and `nox -s grade` run, each in the light environment."""
    env = cloud.env(dict(os.environ))
    repo = make_repo(tmp_path / "repo")

    def pipeline(*args: str) -> subprocess.CompletedProcess:
        done = light.run("-m", "hw5kit.pipeline", *args, "--root", str(repo), tmp=tmp_path, env=env)
        assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    assert "matches" in pipeline("render", "--check").stdout
    assert "gcloud services enable" in pipeline("setup", "--dry-run", "--target", "gcp").stdout
    assert "All prerequisites are met" in pipeline("check-prereq").stdout
    for command in ("build", "deploy"):
        pipeline(command, "--target", "gcp")
    verified = pipeline("verify", "--target", "gcp", "--skip-http").stdout
    assert "FAIL" not in verified
    assert "run.app" in pipeline("status", "--target", "gcp").stdout
    data = yaml.safe_load((repo / "deliverables.yaml").read_text())
    assert data["services"]["v1"]["back_end"]["build_id"]
    assert len(cloud.calls("builds submit")) >= 4

    out = tmp_path / "results.json"
    graded = light.run("-m", "hw5kit.grading", str(repo), "--out", str(out), tmp=tmp_path, env=env)
    assert graded.returncode == 0, graded.stderr
    results = json.loads(out.read_text())
    automatic = [t for t in results["tests"] if "automatic" in t["tags"]]
    lost = {t["name"]: t["output"] for t in automatic if t["score"] < t["max_score"]}
    assert lost == {}, "the deployed repository gets every automatic point, as in the kit"
    assert results["score"] == load_rubric().automatic_points


def test_live_grading_sends_a_shipped_photo_from_the_light_environment(
    light, cloud, tmp_path, backend_v1
):
    """`nox -s grade -- SUBMISSION --live`: the builds described by gcloud, and a real backend
    (gunicorn on 127.0.0.1, in the full environment) classifies the photo the light grader
    uploads, which comes from hw5kit's own copy (no scikit-image here)."""
    env = cloud.env(dict(os.environ))
    repo = make_repo(tmp_path / "repo")
    for command in ("build", "deploy"):
        done = light.run(
            "-m", "hw5kit.pipeline", command, "--target", "gcp", "--root", str(repo),
            tmp=tmp_path, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    data = yaml.safe_load((repo / "deliverables.yaml").read_text())
    dead = f"http://127.0.0.1:{procs.free_port()}"  # no frontend runs: only loopback is tried
    maps = [
        f"{data['services'][v][part]['service_url']}={to}"
        for v in ("v1", "v2")
        for part, to in (("back_end", backend_v1.url), ("front_end", dead))
    ]
    out = tmp_path / "results.json"
    graded = light.run(
        "-m", "hw5kit.grading", str(repo), "--live", "--out", str(out),
        *[arg for m in maps for arg in ("--url-map", m)],
        tmp=tmp_path, env=env,
    )  # fmt: skip
    assert graded.returncode == 0, graded.stderr
    tests = {t["name"].split()[0]: t for t in json.loads(out.read_text())["tests"]}
    builds, backend = tests["Q1.11"]["output"], tests["Q3.8"]["output"]
    assert builds.count("exists, SUCCESS, pushed") == 4
    assert "chelsea.png by upload" in backend and "/hello: 200" in backend


def test_the_wheels_install_the_light_environment_with_no_index(tmp_path):
    """What the Gradescope bundle does: collect the wheels here, install them elsewhere with
    no index, and grade from the installed (not editable) package."""
    wheelhouse = devenv.wheels(tmp_path / "wheels", ROOT, log=lambda line: None)
    names = {p.name.split("-")[0].lower() for p in wheelhouse.glob("*.whl")}
    assert "hw5kit" in names and "torch" not in names and "numpy" not in names
    venv = tmp_path / "bundle"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = devenv.pip_environment(venv)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-index", "--find-links",
         str(wheelhouse), "hw5kit"],
        check=True, env=env, timeout=300,
    )  # fmt: skip
    assert _distributions(python) <= LIGHT_DISTRIBUTIONS
    check: Callable[[str], subprocess.CompletedProcess] = lambda code: subprocess.run(  # noqa: E731
        [str(python), "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    done = check(
        "import hw5kit, hw5kit.photos as p, hw5kit.grading.rubric as r; "
        "print(hw5kit.__file__); print(p.photo('chelsea.png').path.stat().st_size); "
        "print(r.load().automatic_points)"
    )
    assert done.returncode == 0, done.stderr
    where, size, points = done.stdout.split()
    assert str(venv) in where, "the bundle must use its installed copy, not this checkout"
    assert int(size) == (ROOT / "src/hw5kit/assets/photos/chelsea.png").stat().st_size
    assert float(points) > 0
