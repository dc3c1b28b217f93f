"""The Dockerfiles and their inputs, read as text: the contract the images must keep."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib

import pytest

from hw5kit import procs
from hw5kit.containers import images
from hw5kit.containers.wheelhouse import lock_pins

from ..conftest import ROOT

SERVICES = images.services(ROOT)
BACKENDS = [s for s in SERVICES if images.profile_of(s) == "backend"]
FRONTENDS = [s for s in SERVICES if images.profile_of(s) == "frontend"]


def instructions(path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def cmd_of(service: str) -> list[str]:
    cmds = [rest for word, rest in instructions(ROOT / f"Dockerfile.{service}") if word == "CMD"]
    assert len(cmds) == 1
    import json

    return json.loads(cmds[0])


def test_the_v1_and_v2_services_have_dockerfiles():
    assert {"backend_v1", "backend_v2", "frontend_v1", "frontend_v2"} <= set(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_service_dockerfile_keeps_the_course_contract(service):
    ins = instructions(ROOT / f"Dockerfile.{service}")
    assert ins[0] == ("ARG", "BASE_IMAGE_URI"), "BASE_IMAGE_URI must be declared before FROM"
    froms = [rest for word, rest in ins if word == "FROM"]
    assert froms and all(f.split()[0] == "${BASE_IMAGE_URI}" for f in froms)
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM") :]
    assert any(w == "ARG" and r.startswith("SERVING_PORT") for w, r in final)
    assert ("EXPOSE", "${SERVING_PORT}") in final
    env = " ".join(r for w, r in final if w == "ENV")
    assert "SERVING_PORT=${SERVING_PORT}" in env


@pytest.mark.parametrize("service", SERVICES)
def test_service_copies_only_its_own_code_and_the_shared_package(service):
    sources = []
    for word, rest in instructions(ROOT / f"Dockerfile.{service}"):
        if word == "COPY":
            parts = [p for p in rest.split() if not p.startswith("--")]
            if "--from=" not in rest:
                sources += parts[:-1]
    allowed = {f"apps/{service}", "src/hw5kit", "requirements/lock.txt"}
    assert set(sources) <= allowed, sources
    assert f"apps/{service}" in sources and "src/hw5kit" in sources


@pytest.mark.parametrize("service", BACKENDS)
def test_backend_bakes_its_weights_and_runs_gunicorn(service):
    ins = instructions(ROOT / f"Dockerfile.{service}")
    runs = " ".join(r for w, r in ins if w == "RUN")
    assert "python -m hw5kit.containers.bake" in runs and "--torch-home" in runs
    env = " ".join(r for w, r in ins if w == "ENV")
    assert "TORCH_HOME=/opt/torch" in env
    weights = [r for w, r in ins if w == "COPY" and "--from=weights" in r]
    assert len(weights) == 1 and weights[0].endswith("/opt/torch")
    assert "--chown=0:0" in weights[0], "the service must not be able to change its weights"
    cmd = cmd_of(service)
    assert cmd[:3] == ["gunicorn", "-c", "python:hw5kit.serving.gunicorn_conf"]
    assert cmd[3:] == ["--chdir", f"apps/{service}", "app:app"]


@pytest.mark.parametrize("service", FRONTENDS)
def test_frontend_runs_streamlit_with_the_local_flags(service):
    cmd = cmd_of(service)
    assert cmd[:2] == ["sh", "-c"]
    words = shlex.split(cmd[2])
    local = procs.streamlit_command(ROOT / "x.py", port=1, python="python")
    flags = dict(zip(local[5::2], local[6::2], strict=True))
    flags.pop("--server.address")
    flags.pop("--server.port")
    assert words[:4] == ["exec", "streamlit", "run", f"apps/{service}/app.py"]
    got = dict(zip(words[4::2], words[5::2], strict=True))
    assert got.pop("--server.address") == "0.0.0.0"
    assert got.pop("--server.port") == "${PORT:-$SERVING_PORT}"
    # listening on 0.0.0.0, Streamlit looks up its IP addresses at start-up unless this is set
    assert got.pop("--browser.serverAddress") == "localhost"
    assert got == flags


@pytest.mark.parametrize("service", FRONTENDS)
def test_frontend_port_is_port_then_serving_port(service):
    """The CMD's shell line, run by sh with echo in place of streamlit."""
    line = cmd_of(service)[2].replace("exec streamlit", "echo", 1)

    def port(**env):
        out = subprocess.run(["sh", "-c", line], env=env, capture_output=True, text=True).stdout
        return out.split("--server.port ")[1].split()[0]

    assert port(PORT="8123", SERVING_PORT="8000") == "8123"
    assert port(SERVING_PORT="8001") == "8001"


def test_base_holds_dependencies_only_and_a_non_root_user():
    ins = instructions(ROOT / "Dockerfile.base")
    copied = [r for w, r in ins if w in ("COPY", "ADD")]
    assert all("apps" not in c and "src" not in c for c in copied), copied
    args = dict(r.split("=", 1) for w, r in ins if w == "ARG" and "=" in r)
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert args["TORCH_PACKAGES"].strip('"') == "torch torchvision"
    assert args["BASE_PROFILE"] == "all", "the course's single base must stay the default"
    users = [r for w, r in ins if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    runs = [r for w, r in ins if w == "RUN"]
    assert len(runs) == 1, "one RUN: a layer per step would keep deleted files"
    assert "-c /tmp/req/lock.txt" in runs[0] and "rm -rf /tmp/req" in runs[0]


def _names(path) -> set[str]:
    out = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.add(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower())
    return out


def _dep_names(deps: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower() for d in deps}


def test_image_requirements_follow_pyproject_and_are_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    backend = _names(ROOT / "requirements" / "image-backend.txt")
    frontend = _names(ROOT / "requirements" / "image-frontend.txt")
    serving = _dep_names(project["optional-dependencies"]["serving"])
    weights_packages = {n for n in serving if n.endswith("-pytorch-model")}
    assert serving - weights_packages - {"torch"} <= backend, "a serving dependency is missing"
    assert not backend & weights_packages, "weights are baked per service, not in the base"
    assert _dep_names(project["optional-dependencies"]["frontend"]) <= frontend
    assert "torch" not in frontend
    pins = lock_pins(ROOT / "requirements" / "lock.txt")
    for name in backend | frontend | {"torch", "torchvision"}:
        assert name in pins, f"{name} is not pinned in requirements/lock.txt"


def test_dockerignore_lets_in_only_what_the_images_copy():
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "deny everything first, then allow what the Dockerfiles copy"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    needed = set()
    for path in ROOT.glob("Dockerfile.*"):
        for word, rest in instructions(path):
            if word == "COPY" and "--from=" not in rest:
                needed.update(rest.split()[:-1])

    def let_in(source: str) -> bool:
        return any(
            source == a or source.startswith(a + "/") or re.fullmatch(a.replace("*", ".*"), source)
            for a in allowed
        )

    assert needed and all(let_in(source) for source in needed), needed - set(filter(let_in, needed))


def test_the_docs_state_the_measured_figures():
    """The containers page's figures are the committed measurement's, row for row."""
    report = ROOT / "reports" / "containers" / "rebuild.md"
    assert report.exists(), "run `python -m hw5kit.containers measure` and commit its report"
    page = ROOT / "docs" / "maintainer" / "containers.md"
    text = page.read_text()
    assert "## Measured sizes and rebuild times" in text
    rows = [line for line in report.read_text().splitlines() if line.startswith("| ")]
    assert len(rows) >= 8
    missing = [row for row in rows if row not in text]
    assert not missing, f"{page.name} rows differ from {report.name}: {missing[:3]}"
