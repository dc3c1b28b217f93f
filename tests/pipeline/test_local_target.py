"""The default target end to end, as the README's main command runs it: build, deploy and
verify on a fresh copy, with real gunicorn and Streamlit processes on 127.0.0.1."""

import json
import re

import pytest
import requests
import yaml

from hw5kit import procs
from hw5kit.pipeline.targets.local import process_environ

from ..conftest import subprocess_env
from ..support.pipeline import UUID, make_repo, pipeline

pytestmark = pytest.mark.slow
LITE = (
    "efficientnet-lite0-57934424.pth",
    "efficientnet-lite1-77cc7160.pth",
    "efficientnet-lite2-9656183e.pth",
)


def recorded(repo):
    data = yaml.safe_load((repo / "deliverables.local.yaml").read_text())
    return {f"{v}.{p}": e for v, parts in data["services"].items() for p, e in parts.items()}


def running(repo):
    return json.loads((repo / ".hw5/local/deployment.json").read_text())["services"]


def test_build_deploy_verify_redeploy_and_stop(tmp_path):
    repo = make_repo(tmp_path / "repo", v3=False)  # v1 and v2; tests/v3 deploys v3
    template = (repo / "deliverables.yaml").read_text()
    env = subprocess_env(tmp_path)
    netguard = tmp_path / "netguard.log"
    try:
        built = pipeline("build", root=repo, env=env)
        assert built.returncode == 0, built.stdout + built.stderr
        for name in LITE:
            assert (repo / "weights/hub/checkpoints" / name).stat().st_size > 1_000_000
        assert all(re.fullmatch(UUID, e["build_id"]) for e in recorded(repo).values())

        deployed = pipeline("deploy", root=repo, env=env)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        entries = recorded(repo)
        urls = {k: e["service_url"] for k, e in entries.items()}
        assert all(re.fullmatch(r"http://127\.0\.0\.1:\d+", u) for u in urls.values()), urls
        state = running(repo)
        assert procs.http_status(urls["v1.back_end"] + "/readyz") == 200
        for version in ("v1", "v2"):
            frontend_env = process_environ(state[f"frontend_{version}"]["pid"])
            assert frontend_env["SERVING_URL"] == urls[f"{version}.back_end"]
            backend_env = process_environ(state[f"backend_{version}"]["pid"])
            assert backend_env["HW5_ALLOW_LOOPBACK"] == "1"
            assert backend_env["TORCH_HOME"] == str(repo / "weights")
        assert process_environ(state["backend_v2"]["pid"])["MODELS"] == (
            "efficientnet_lite0,efficientnet_lite1,efficientnet_lite2"
        )
        # v2's session key: made once, private, the same for every backend process
        key_file = repo / ".hw5/local/session.key"
        key = key_file.read_text().strip()
        assert len(key) == 64 and key_file.stat().st_mode & 0o077 == 0
        for backend in ("backend_v1", "backend_v2"):
            assert process_environ(state[backend]["pid"])["SECRET_KEY"] == key
        chosen = requests.put(f"{urls['v2.back_end']}/model/efficientnet_lite1", timeout=10)
        assert chosen.status_code == 200 and "Secure" not in chosen.headers["Set-Cookie"]
        cookies = chosen.cookies

        verified = pipeline("verify", root=repo, env=env)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "verify: all 25 checks passed" in verified.stdout
        assert "'espresso' by efficientnet_lite2" in verified.stdout

        old_pid = state["backend_v1"]["pid"]
        again = pipeline("deploy", "backend_v1", "backend_v2", root=repo, env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert recorded(repo)["v1.back_end"]["service_url"] == urls["v1.back_end"]
        assert not procs.pid_alive(old_pid)
        # the caller's session survives the v2 backend's restart
        session = requests.get(f"{urls['v2.back_end']}/model", cookies=cookies, timeout=10)
        assert session.json() == {"model": "efficientnet_lite1", "source": "session"}
        assert pipeline("verify", root=repo, env=env).returncode == 0

        procs.stop_pid(running(repo)["backend_v2"]["pid"])
        broken = pipeline("verify", root=repo, env=env)
        assert broken.returncode == 1
        assert f"FAIL services.v2.back_end (backend_v2): GET {urls['v2.back_end']}/hello" in (
            broken.stdout
        )
        assert (
            "-> read " in broken.stdout and "backend_v2.log, then `nox -s deploy`" in broken.stdout
        )
    finally:
        stopped = pipeline("stop", root=repo, env=env)
        for entry in running(repo).values() if (repo / ".hw5/local").exists() else ():
            procs.stop_pid(entry["pid"])
    assert stopped.returncode == 0, stopped.stderr
    for entry in state.values():
        assert not procs.pid_alive(entry["pid"])
    assert running(repo) == {}
    assert all(e["service_url"] is None for e in recorded(repo).values())
    assert (repo / "deliverables.yaml").read_text() == template
    assert not netguard.exists() or netguard.read_text() == ""
    with pytest.raises(requests.ConnectionError):
        requests.get(urls["v1.front_end"], timeout=2)


def test_deploy_before_build_and_stop_with_nothing_running(tmp_path):
    repo = make_repo(tmp_path / "repo", v3=False)  # v1 and v2; tests/v3 deploys v3
    env = subprocess_env(tmp_path)
    done = pipeline("deploy", root=repo, env=env)
    assert done.returncode == 1
    assert "no local build of backend_v1, frontend_v1, backend_v2, frontend_v2" in done.stderr
    assert "run `nox -s build` first" in done.stderr
    stopped = pipeline("stop", root=repo, env=env)
    assert stopped.returncode == 0
    assert "nothing to stop" in stopped.stdout
    verify = pipeline("verify", root=repo, env=env)
    assert verify.returncode == 1
    assert "deliverables.local.yaml: not found; run the build and deploy first" in verify.stdout
