"""The gcp target against the fake gcloud set to each failure mode of the real cloud (issue 19),
through the CLI in a temporary copy of the repository: gcloud invocations colliding on one
configuration directory, gcloud dying after printing a build ID, builds and deploys that take
long, Cloud Build's service account without roles, and public access refused by an organization
policy. Each ends green, or stops with the documented remedy."""

import http.server
import os
import re
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from hw5kit.gcloud_fake import FakeGcloud
from hw5kit.pipeline.project import Project
from hw5kit.pipeline.verify import Verifier

from ..conftest import subprocess_env
from ..support.pipeline import PROJECT, REGISTRY, UUID, Cloud, make_repo, pipeline

CRASH = "gcloud crashed (OperationalError): database is locked"
FIX = (
    "gcloud run services update {name} --region=us-central1 --project=hw5-123456789 "
    "--no-invoker-iam-check"
)
SLOTS = {
    "backend_v1": ("v1", "back_end"),
    "frontend_v1": ("v1", "front_end"),
    "backend_v2": ("v2", "back_end"),
    "frontend_v2": ("v2", "front_end"),
}


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo", v3=False)


def make_cloud(tmp_path, **project) -> Cloud:
    """A ready fake project; HOME is a folder with a gcloud configuration directory in it."""
    fake = FakeGcloud(tmp_path / "gcloud-state")
    fake.install(tmp_path / "bin")
    fake.add_project(PROJECT, **project)
    home = tmp_path / "home"
    config = home / ".config" / "gcloud"
    (config / "logs" / "2026.01.01").mkdir(parents=True)
    (config / "logs" / "2026.01.01" / "big.log").write_text("x" * 1000)
    (config / "credentials.db").write_text("not really credentials")
    (config / "configurations").mkdir()
    env = fake.env(subprocess_env(tmp_path))
    env["HOME"] = str(home)
    env.pop("CLOUDSDK_CONFIG", None)
    # python3 with PyYAML for setup/check_prereq.sh and the deploy scripts
    env["PATH"] = f"{env['PATH']}{os.pathsep}{Path(sys.executable).parent}"
    return Cloud(fake, env)


@pytest.fixture
def cloud(tmp_path) -> Cloud:
    return make_cloud(tmp_path)


def gcp(command, repo, cloud, *extra, **env):
    return pipeline(command, "--target", "gcp", *extra, root=repo, env={**cloud.env, **env})


def out(done) -> str:
    return done.stdout + done.stderr


def recorded(repo) -> dict:
    data = yaml.safe_load((repo / "deliverables.yaml").read_text())
    return {app: data["services"][v][p] for app, (v, p) in SLOTS.items()}


# --- gcloud in parallel ---------------------------------------------------------------------


def test_concurrent_gcloud_calls_each_get_their_own_configuration(repo, cloud, tmp_path):
    # the real behaviour, made certain: invocations sharing a configuration directory collide
    cloud.fake.configure(config_dir_crash=True, call_seconds=0.3)
    for command in ("build", "deploy"):
        done = gcp(command, repo, cloud)
        assert done.returncode == 0, out(done)
    verified = gcp("verify", repo, cloud, "--skip-http")
    assert verified.returncode == 0, out(verified)
    calls = cloud.fake.calls()
    assert not [c for c in calls if c.get("crash")]
    user_config = str(tmp_path / "home" / ".config" / "gcloud")
    submits = cloud.fake.calls("builds submit")
    assert len(submits) == 4
    dirs = {c["config_dir"] for c in submits}
    assert len(dirs) == 4 and user_config not in dirs  # one private copy per build
    deploys = {c["config_dir"] for c in cloud.fake.calls("run deploy")}
    assert user_config not in deploys and len(deploys) >= 2  # v1 and v2 in parallel
    # the copies (they hold credentials) are gone, and were outside the repository
    assert not any(Path(d).exists() for d in dirs | deploys)
    assert not any(str(repo) in d for d in dirs | deploys)


def test_config_dirs_copy_the_users_configuration_per_thread_without_its_logs(tmp_path):
    from hw5kit.pipeline.gcloud import ConfigDirs

    source = tmp_path / "gcloud"
    (source / "logs").mkdir(parents=True)
    (source / "logs" / "a.log").write_text("log")
    (source / "credentials.db").write_text("secret")
    seen = {}
    with ConfigDirs({"CLOUDSDK_CONFIG": str(source), "HOME": str(tmp_path)}) as dirs:
        assert oct(dirs.root.stat().st_mode & 0o777) == "0o700"

        together = threading.Barrier(3)

        def one(name):  # three threads alive at once (a finished thread's copy may be reused)
            seen[name] = dirs.env({"PATH": "/bin"})["CLOUDSDK_CONFIG"]
            together.wait(timeout=30)

        threads = [threading.Thread(target=one, args=(n,)) for n in "abc"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(seen.values())) == 3
        assert dirs.env()["CLOUDSDK_CONFIG"] == dirs.env()["CLOUDSDK_CONFIG"]  # same thread
        for path in seen.values():
            assert (Path(path) / "credentials.db").read_text() == "secret"
            assert not (Path(path) / "logs").exists()
        root = dirs.root
    assert not root.exists()
    assert (source / "credentials.db").exists()  # the user's own is untouched


def test_a_build_id_printed_before_gcloud_dies_is_followed_and_recorded(repo, cloud):
    cloud.fake.configure(crash_after_created=4)
    done = gcp("build", repo, cloud)
    assert done.returncode == 0, out(done)
    submits = cloud.fake.calls("builds submit")
    assert [c["exit"] for c in submits] == [1, 1, 1, 1]
    assert all(CRASH in c["stderr"] for c in submits)
    assert {recorded(repo)[app]["build_id"] for app in SLOTS} == {c["build_id"] for c in submits}
    assert done.stdout.count("the build goes on in the cloud: following it") == 4
    assert gcp("deploy", repo, cloud).returncode == 0


# --- long waits -----------------------------------------------------------------------------


def test_a_build_is_followed_with_progress(repo, cloud):
    cloud.fake.configure(build_seconds=4)
    done = gcp("build", repo, cloud, "backend_v1", HW5_GCP_POLL="0.2", HW5_GCP_HEARTBEAT="0.5")
    assert done.returncode == 0, out(done)
    build_id = recorded(repo)["backend_v1"]["build_id"]
    assert f"[backend_v1] build {build_id}: WORKING" in done.stdout
    assert f"[backend_v1] build {build_id} still WORKING" in done.stdout
    assert len(cloud.fake.calls("builds describe")) >= 3


def test_a_build_that_does_not_end_in_time_stops_the_wait_with_what_to_check(repo, cloud):
    assert gcp("build", repo, cloud, "backend_v1").returncode == 0
    before = recorded(repo)["backend_v1"]["build_id"]
    cloud.fake.configure(build_seconds=3600)
    started = time.monotonic()
    done = gcp("build", repo, cloud, "backend_v1", HW5_GCP_POLL="0.2", HW5_GCP_BUILD_WAIT="1.5")
    assert done.returncode == 1
    assert time.monotonic() - started < 60
    build_id = cloud.fake.calls("builds submit")[-1]["build_id"]
    text = " ".join(out(done).split())
    assert (
        f"build {build_id}: still WORKING after 2 s: stopped waiting (the build goes on in "
        "the cloud)" in text
    )
    assert f"gcloud builds describe {build_id} --region=us-central1 --project={PROJECT}" in text
    assert recorded(repo)["backend_v1"]["build_id"] == before  # nothing recorded for it


def test_a_deploy_that_hangs_is_stopped_with_what_to_check(repo, cloud):
    assert gcp("build", repo, cloud, "backend_v1").returncode == 0
    cloud.fake.configure(slow={"run deploy": 120})
    started = time.monotonic()
    done = gcp(
        "deploy", repo, cloud, "backend_v1", HW5_GCP_DEPLOY_WAIT="2", HW5_GCP_HEARTBEAT="0.5"
    )
    assert done.returncode == 1
    assert time.monotonic() - started < 60  # the script and its gcloud were stopped
    text = " ".join(out(done).split())
    assert "the deploy did not finish within 2 s and was stopped (Cloud Run goes on)" in text
    assert "gcloud run services describe backendv1 --region=us-central1" in text
    assert "[backend_v1] still running" in done.stdout
    assert recorded(repo)["backend_v1"]["service_url"] is None


def test_a_gateway_that_takes_too_long_is_stopped_with_what_to_check(tmp_path):
    from hw5kit.gcloud_fake import GATEWAY_APIS, HW5_APIS

    repo = make_repo(tmp_path / "repo")  # with v3
    cloud = make_cloud(tmp_path, apis=(*HW5_APIS, *GATEWAY_APIS))
    assert gcp("build", repo, cloud, "backend_v3").returncode == 0
    cloud.fake.configure(slow={"api-gateway gateways create": 120})
    done = gcp(
        "deploy", repo, cloud, "backend_v3", HW5_GCP_GATEWAY_WAIT="2", HW5_GCP_HEARTBEAT="0.5"
    )
    assert done.returncode == 1
    text = " ".join(out(done).split())
    assert "gateways create hw5-gateway" in text and "did not finish within 2 s" in text
    assert "gcloud api-gateway gateways describe hw5-gateway --location=us-central1" in text
    assert "[gateway_v3] still waiting for `gcloud api-gateway gateways create ...`" in done.stdout


# --- Cloud Build's service account ----------------------------------------------------------


def test_a_build_account_without_roles_fails_with_the_setup_remedy_until_setup_runs(tmp_path):
    repo = make_repo(tmp_path / "repo", v3=False)
    cloud = make_cloud(tmp_path, default_grants=False)
    done = gcp("build", repo, cloud, "backend_v1")
    assert done.returncode == 1
    text = " ".join(out(done).split())
    assert "ended FAILURE: failed to fetch the build source" in text
    assert "does not have storage.objects.list access" in text
    assert "Cloud Build's service account lacks a role it needs" in text
    assert "run `nox -s setup -- --target gcp`" in text
    assert recorded(repo)["backend_v1"]["build_id"] is None

    setup = gcp("setup", repo, cloud)
    assert setup.returncode == 0, out(setup)
    for command in ("build", "deploy"):
        done = gcp(command, repo, cloud)
        assert done.returncode == 0, out(done)
    verified = gcp("verify", repo, cloud, "--skip-http")
    assert verified.returncode == 0, out(verified)


# --- public access refused by policy ----------------------------------------------------------


def test_public_access_refused_by_policy_stops_deploy_with_the_remedy(tmp_path):
    repo = make_repo(tmp_path / "repo", v3=False)
    cloud = make_cloud(tmp_path, domain_restricted_sharing=True)
    assert gcp("build", repo, cloud).returncode == 0
    done = gcp("deploy", repo, cloud)
    assert done.returncode == 1
    text = " ".join(out(done).split())
    for name in ("backendv1", "backendv2"):
        assert FIX.format(name=name) in text
    assert (
        'gcloud said: Setting IAM policy failed, try "gcloud beta run services '
        "add-iam-policy-binding" in text
    )
    assert "skipped: backend_v1 failed" in text and "skipped: backend_v2 failed" in text
    assert all(entry["service_url"] is None for entry in recorded(repo).values())

    # the printed remedy, then deploy again: the backends pass, the frontends need it in turn
    for name in ("backendv1", "backendv2"):
        fixed = cloud.gcloud(*FIX.format(name=name).split()[1:])
        assert fixed.returncode == 0, fixed.stderr
    again = gcp("deploy", repo, cloud)
    assert again.returncode == 1
    assert recorded(repo)["backend_v1"]["service_url"].startswith("https://backendv1-")
    assert FIX.format(name="frontendv1") in " ".join(out(again).split())
    # or let deploy turn the check off for every service it keeps private
    opened = gcp("deploy", repo, cloud, "--no-invoker-iam-check")
    assert opened.returncode == 0, out(opened)
    assert "public with its Invoker IAM check off" in opened.stdout
    verified = gcp("verify", repo, cloud, "--skip-http")
    assert verified.returncode == 0, out(verified)
    assert "public access: its Invoker IAM check is off" in verified.stdout


def test_verify_reports_a_service_that_is_not_public_with_the_remedy(repo, cloud):
    assert gcp("build", repo, cloud).returncode == 0
    assert gcp("deploy", repo, cloud).returncode == 0
    build_id = recorded(repo)["backend_v2"]["build_id"]
    private = cloud.gcloud(
        "run",
        "deploy",
        "backendv2",
        f"--project={PROJECT}",
        "--region=us-central1",
        f"--image={REGISTRY}/backend_v2:{build_id}",
        "--no-allow-unauthenticated",
    )
    assert private.returncode == 0, private.stderr
    done = gcp("verify", repo, cloud, "--skip-http")
    assert done.returncode == 1
    assert "FAIL services.v2.back_end (backend_v2): public access" in done.stdout
    assert FIX.format(name="backendv2") in done.stdout
    assert "ok   services.v1.back_end (backend_v1): public access: allUsers may invoke it" in (
        done.stdout
    )


class Forbidden(http.server.BaseHTTPRequestHandler):
    """What Cloud Run answers a request to a private service."""

    def _refuse(self):
        body = b"<html><body><h1>Error: Forbidden</h1></body></html>"
        self.send_response(403)
        self.send_header("Content-Type", "text/html; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse

    def log_message(self, *args):
        pass


def test_verify_gives_a_403_from_cloud_run_the_same_remedy(repo, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forbidden)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        lines = []
        project = Project.load(repo, target="gcp", env=subprocess_env(tmp_path), log=lines.append)
        verifier = Verifier(project, gcloud=False)
        config = project.config
        verifier.backend_http(config.service("backend_v1"), url)
        verifier.frontend_http(config.service("frontend_v1"), url)
    finally:
        server.shutdown()
    backend, frontend = verifier.checks
    assert not backend.ok and backend.detail.startswith("403")
    assert FIX.format(name="backendv1") in backend.fix
    assert "is not public" in backend.fix
    assert not frontend.ok and FIX.format(name="frontendv1") in frontend.fix


def test_deploy_refuses_no_invoker_iam_check_outside_gcp(repo, cloud):
    done = pipeline(
        "deploy", "--target", "local", "--no-invoker-iam-check", root=repo, env=cloud.env
    )
    assert done.returncode == 2
    assert "--no-invoker-iam-check is for the gcp target" in done.stderr


def test_build_ids_come_from_the_created_line_only(repo, cloud):
    done = gcp("build", repo, cloud, "frontend_v1")
    assert done.returncode == 0, out(done)
    assert re.fullmatch(UUID, recorded(repo)["frontend_v1"]["build_id"])
