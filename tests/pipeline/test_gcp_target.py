"""The gcp target end to end against the fake gcloud: the exact command lines, build IDs and
URLs recorded, SERVING_URL wiring, partial failures, and what verify catches."""

import re
import shutil

import pytest
import yaml

from ..support.pipeline import PROJECT, REGISTRY, RUN_URL, UUID, make_repo, pipeline

APPS = ("backend_v1", "frontend_v1", "backend_v2", "frontend_v2")
RUN_NAMES = {
    "backend_v1": "backendv1",
    "frontend_v1": "frontendv1",
    "backend_v2": "backendv2",
    "frontend_v2": "frontendv2",
}
SLOTS = {
    "backend_v1": ("v1", "back_end"),
    "frontend_v1": ("v1", "front_end"),
    "backend_v2": ("v2", "back_end"),
    "frontend_v2": ("v2", "front_end"),
}
ENV = {
    "backend_v1": "MODEL_NAME=efficientnet_lite0",
    "backend_v2": "^|^MODELS=efficientnet_lite0,efficientnet_lite1,efficientnet_lite2",
}


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo", v3=False)  # the course's v1/v2 (tests/v3 for v3)


def recorded(repo):
    data = yaml.safe_load((repo / "deliverables.yaml").read_text())
    return {app: data["services"][v][p] for app, (v, p) in SLOTS.items()}


def gcp(command, repo, cloud, *extra):
    return pipeline(command, "--target", "gcp", *extra, root=repo, env=cloud.env)


def test_build_deploy_verify_issue_exactly_the_expected_gcloud_commands(repo, cloud):
    built = gcp("build", repo, cloud)
    assert built.returncode == 0, built.stdout + built.stderr
    submits = cloud.fake.calls("builds submit")
    assert len(submits) == 4
    by_app = {}
    for call in submits:
        app = re.search(r"_APP_URI=\S+/(\w+),", call["flags"]["--substitutions"]).group(1)
        by_app[app] = call
        assert call["argv"] == [
            "builds",
            "submit",
            f"--project={PROJECT}",
            "--region=us-central1",
            f"--config={repo}/deployment/cloudbuild.yaml",
            f"--substitutions=_BASE_IMAGE_URI={REGISTRY}/base_image,_APP_URI={REGISTRY}/{app},"
            f"_SERVING_PORT=8000,_TARGET_DOCKERFILE=Dockerfile.{app}",
            "--async",
            f"{repo}/deployment/..",
        ]
        assert call["exit"] == 0
        # each build followed until it ended, with its own gcloud configuration directory
        follows = [
            c for c in cloud.fake.calls("builds describe") if c["positionals"] == [call["build_id"]]
        ]
        assert follows and all(c["flags"]["--format"] == "json" for c in follows)
    assert sorted(by_app) == sorted(APPS)
    ids = {app: recorded(repo)[app]["build_id"] for app in APPS}
    for app, build_id in ids.items():
        assert re.fullmatch(UUID, build_id)
        assert by_app[app]["build_id"] == build_id
    images = cloud.fake.project(PROJECT)["images"]
    for app, build_id in ids.items():
        assert set(images[f"{REGISTRY}/{app}"]["tags"]) == {build_id}
    assert set(images[f"{REGISTRY}/base_image"]["tags"]) == {*ids.values(), "latest"}
    assert all(recorded(repo)[app]["service_url"] is None for app in APPS)

    deployed = gcp("deploy", repo, cloud)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    urls = {app: recorded(repo)[app]["service_url"] for app in APPS}
    assert all(re.fullmatch(RUN_URL, url) for url in urls.values()), urls
    calls = cloud.fake.calls()
    deploys = {
        c["positionals"][0]: (i, c) for i, c in enumerate(calls) if c["command"] == "run deploy"
    }
    assert sorted(deploys) == sorted(RUN_NAMES.values())
    for app, name in RUN_NAMES.items():
        _, call = deploys[name]
        env = (
            f"SERVING_URL={urls[app.replace('frontend', 'backend')]}"
            if app.startswith("front")
            else ENV[app]
        )
        assert call["argv"] == [
            "run",
            "deploy",
            name,
            f"--project={PROJECT}",
            "--region=us-central1",
            f"--image={REGISTRY}/{app}:{ids[app]}",
            "--port=8000",
            "--memory=2Gi",
            "--cpu=2",
            "--min-instances=1",
            "--max-instances=1",
            f"--concurrency={72 if app.startswith('backend') else 80}",
            *(["--set-secrets=SECRET_KEY=hw5-session-key:latest"] if app == "backend_v2" else []),
            "--allow-unauthenticated",
            f"--set-env-vars={env}",
        ]
        assert call["service_url"] == urls[app]
    # v2's session key: a Secret Manager secret made once, readable by Cloud Run's runtime
    # account, passed as SECRET_KEY; a second deploy reuses it
    data = cloud.fake.project(PROJECT)
    secret = data["secretmanager"]["hw5-session-key"]
    assert len(secret["versions"]) == 1
    account = f"serviceAccount:{data['number']}-compute@developer.gserviceaccount.com"
    assert any(account in b["members"] for b in secret["bindings"])
    assert "secretmanager.googleapis.com" in data["apis"]
    container = data["run"]["us-central1/backendv2"]["spec"]["template"]["spec"]["containers"][0]
    assert {
        "name": "SECRET_KEY",
        "valueFrom": {"secretKeyRef": {"name": "hw5-session-key", "key": "latest"}},
    } in container["env"]
    value = __import__("base64").b64decode(secret["versions"][0]["data"]).decode()
    assert len(value) == 64 and value not in (cloud.fake.state_dir / "calls.jsonl").read_text()
    assert value not in deployed.stdout + deployed.stderr
    for version in ("1", "2"):
        backend_at = deploys[f"backendv{version}"][0]
        frontend_at = deploys[f"frontendv{version}"][0]
        describes = [
            i
            for i, c in enumerate(calls)
            if c["command"] == "run services describe"
            and c["positionals"] == [f"backendv{version}"]
        ]
        assert backend_at < describes[0] < frontend_at
        assert calls[describes[0]]["flags"]["--format"] == "value(status.url)"

    again = gcp("deploy", repo, cloud, "--only", "backend_v2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(cloud.fake.project(PROJECT)["secretmanager"]["hw5-session-key"]["versions"]) == 1
    assert len(cloud.fake.calls("secrets create")) == 1

    verified = gcp("verify", repo, cloud, "--skip-http")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "verify: all 23 checks passed" in verified.stdout
    assert len(cloud.fake.calls("builds describe")) == 4 + len(submits)


def test_verify_catches_a_wrong_serving_url_and_a_build_id_of_another_image(repo, cloud):
    assert gcp("build", repo, cloud).returncode == 0
    assert gcp("deploy", repo, cloud).returncode == 0
    ids = {app: recorded(repo)[app]["build_id"] for app in APPS}
    wrong = cloud.gcloud(
        "run",
        "deploy",
        "frontendv1",
        "--region=us-central1",
        f"--image={REGISTRY}/frontend_v1:{ids['frontend_v1']}",
        "--set-env-vars=SERVING_URL=https://backendv2-qveyax4pnp-uc.a.run.app",
    )
    assert wrong.returncode == 0, wrong.stderr
    text = (repo / "deliverables.yaml").read_text()
    (repo / "deliverables.yaml").write_text(text.replace(ids["backend_v2"], ids["backend_v1"], 1))
    done = gcp("verify", repo, cloud, "--skip-http")
    assert done.returncode == 1
    out = done.stdout
    assert "FAIL services.v1.front_end (frontend_v1): SERVING_URL: " in out
    assert "but backend_v1 is at" in out
    assert f"FAIL services.v2.back_end (backend_v2): build {ids['backend_v1']}" in out
    assert f"did not push {REGISTRY}/backend_v2:{ids['backend_v1']}" in out
    assert "FAIL services.v2.back_end (backend_v2): Cloud Run service backendv2 image" in out
    assert "verify: 3 of 23 checks failed" in out


def test_a_failed_build_keeps_the_previous_entry_and_records_the_others(repo, cloud):
    old = "11111111-2222-4333-8444-555555555555"
    text = (repo / "deliverables.yaml").read_text()
    (repo / "deliverables.yaml").write_text(
        text.replace(
            "build_id: # Paste the build ID of the Cloud Build for front end V2", f"build_id: {old}"
        )
    )
    (repo / "Dockerfile.frontend_v2").write_text(f"FROM {REGISTRY}/never-pushed:1\n")
    done = gcp("build", repo, cloud)
    assert done.returncode == 1
    assert "build: 3 of 4 succeeded" in done.stdout
    assert "FAILED frontend_v2:" in done.stdout and "build-frontend_v2.log" in done.stdout
    entries = recorded(repo)
    assert entries["frontend_v2"]["build_id"] == old
    for app in ("backend_v1", "frontend_v1", "backend_v2"):
        assert re.fullmatch(UUID, entries[app]["build_id"])
    log = (repo / ".hw5/gcp/logs/build-frontend_v2.log").read_text()
    assert f"manifest for {REGISTRY}/never-pushed:1 not found" in log


def test_deploy_needs_build_ids_and_skips_a_frontend_whose_backend_failed(repo, cloud):
    refused = gcp("deploy", repo, cloud)
    assert refused.returncode == 1
    assert "no build ID recorded for backend_v1 (services.v1.back_end.build_id)" in refused.stderr
    assert "run `nox -s build -- --target gcp` first" in refused.stderr
    assert cloud.fake.calls("run deploy") == []

    assert gcp("build", repo, cloud).returncode == 0
    ids = {app: recorded(repo)[app]["build_id"] for app in APPS}
    never = "99999999-9999-4999-8999-999999999999"
    text = (repo / "deliverables.yaml").read_text().replace(ids["backend_v2"], never)
    (repo / "deliverables.yaml").write_text(text)
    done = gcp("deploy", repo, cloud)
    assert done.returncode == 1
    assert "deploy: 2 of 4 succeeded" in done.stdout
    assert "FAILED frontend_v2: skipped: backend_v2 failed" in done.stdout
    entries = recorded(repo)
    assert re.fullmatch(RUN_URL, entries["frontend_v1"]["service_url"])
    assert entries["backend_v2"]["service_url"] is None
    assert [c["positionals"][0] for c in cloud.fake.calls("run deploy")].count("frontendv2") == 0


def test_stale_deployment_files_or_no_gcloud_stop_before_any_cloud_call(repo, cloud, tmp_path):
    text = (
        (repo / "deployment.yaml").read_text().replace("serving_port: 8000", "serving_port: 9000")
    )
    (repo / "deployment.yaml").write_text(text)
    done = gcp("build", repo, cloud)
    assert done.returncode == 1
    assert "deployment/ does not match deployment.yaml" in done.stderr
    assert "run `nox -s render`" in done.stderr
    assert cloud.fake.calls() == []
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    (bare / "bash").symlink_to(shutil.which("bash"))
    done = pipeline("build", "--target", "gcp", root=repo, env={**cloud.env, "PATH": str(bare)})
    assert done.returncode == 1 and "gcloud is not on PATH" in done.stderr
    (repo / "deliverables.yaml").write_text(
        (repo / "deliverables.yaml")
        .read_text()
        .replace("build_id: #", "build_id: 0b5c2e4a-91d3-4f6e-8a7b-2c3d4e5f6a7b #")
        .replace("service_url: #", "service_url: https://x-qveyax4pnp-uc.a.run.app #")
    )
    done = pipeline(
        "verify", "--target", "gcp", "--skip-http", root=repo, env={**cloud.env, "PATH": str(bare)}
    )
    assert done.returncode == 0, done.stdout
    assert "note: gcloud is not on PATH: the Cloud Build and Cloud Run checks were skipped" in (
        done.stdout
    )


def test_verify_on_the_course_template_and_on_a_corrupted_file(repo, cloud):
    done = gcp("verify", repo, cloud)
    assert done.returncode == 1
    assert "deliverables.yaml holds no build ID and no URL yet" in done.stdout
    assert "FAIL services.v1.back_end.build_id: empty" in done.stdout
    (repo / "deliverables.yaml").write_text("services:\n  v1:\n    back_end: {build_id: [\n")
    done = gcp("verify", repo, cloud)
    assert done.returncode == 1
    assert "not valid YAML" in done.stdout and "git checkout deliverables.yaml" in done.stdout
    assert cloud.fake.calls() == []
