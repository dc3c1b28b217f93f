"""verify on partial deployments (every target): services whose entries are empty are "not
deployed" (exit 3), not a schema failure; ``--only`` checks just the named services."""

from __future__ import annotations

import pytest

from hw5kit.pipeline import deliverables
from hw5kit.pipeline.verify import PARTIAL

from ..conftest import subprocess_env
from ..support.pipeline import make_repo, pipeline

BACK = "0b5c2e4a-91d3-4f6e-8a7b-2c3d4e5f6a7b"
FRONT = "1c6d3f5b-a2e4-4a7f-9b8c-3d4e5f6a7b8c"
URLS = {
    "gcp": (
        "https://backendv1-abcdefghij-uc.a.run.app",
        "https://frontendv1-abcdefghij-uc.a.run.app",
    ),
    "local": ("http://127.0.0.1:40001", "http://127.0.0.1:40002"),
    "container": ("http://127.0.0.1:40001", "http://127.0.0.1:40002"),
}


def write(repo, target, changes):
    path = deliverables.path_for(repo, target)
    deliverables.update(path, changes, target=target)


def verify(repo, tmp_path, target, *args):
    return pipeline(
        "verify", "--target", target, "--skip-http", "--skip-gcloud", *args,
        root=repo, env=subprocess_env(tmp_path),
    )  # fmt: skip


def v1_only(repo, target):
    back, front = URLS[target]
    write(
        repo,
        target,
        {
            ("v1", "back_end"): {"build_id": BACK, "service_url": back},
            ("v1", "front_end"): {"build_id": FRONT, "service_url": front},
        },
    )


def test_v1_deployed_and_v2_empty_reports_v2_not_deployed(tmp_path):
    repo = make_repo(tmp_path / "repo", v3=False)
    v1_only(repo, "gcp")
    done = verify(repo, tmp_path, "gcp")
    assert done.returncode == PARTIAL, done.stdout
    out = done.stdout
    assert "ok   deliverables.yaml: schema: passes deliverables.schema.json (with 2" in out
    assert "--   services.v2.back_end (backend_v2): not deployed" in out
    assert "--   services.v2.front_end (frontend_v2): not deployed" in out
    assert "a partial deployment (exit 3)" in out
    assert "--only backend_v1,frontend_v1" in out
    assert "does not pass its schema" not in out and "FAIL" not in out
    only = verify(repo, tmp_path, "gcp", "--only", "backend_v1,frontend_v1")
    assert only.returncode == 0, only.stdout
    assert "not checked (--only): backend_v2, frontend_v2" in only.stdout
    assert "not deployed" not in only.stdout


@pytest.mark.parametrize("target", ["local", "container"])
def test_partial_on_the_machine_targets_still_checks_their_records(tmp_path, target):
    # with no HTTP, the local and container targets still check their own records: the builds
    # written here were never made, so v1 fails (exit 1), and v2 is "not deployed"
    repo = make_repo(tmp_path / "repo", v3=False)
    v1_only(repo, target)
    done = verify(repo, tmp_path, target)
    assert done.returncode == 1, done.stdout
    assert f"FAIL services.v1.back_end (backend_v1): build {BACK}" in done.stdout
    assert "--   services.v2.back_end (backend_v2): not deployed" in done.stdout
    assert "does not pass its schema" not in done.stdout


def test_a_build_only_state_is_built_not_deployed(tmp_path):
    repo = make_repo(tmp_path / "repo", v3=False)
    write(
        repo,
        "gcp",
        {("v1", "back_end"): {"build_id": BACK}, ("v1", "front_end"): {"build_id": FRONT}},
    )
    done = verify(repo, tmp_path, "gcp", "--only", "backend_v1,frontend_v1")
    assert done.returncode == PARTIAL, done.stdout
    assert "services.v1.back_end (backend_v1): built, not deployed (no service_url)" in done.stdout
    assert "services.v1.front_end (frontend_v1): built, not deployed" in done.stdout


def test_a_url_without_a_build_id_still_fails_the_schema(tmp_path):
    repo = make_repo(tmp_path / "repo", v3=False)
    write(repo, "gcp", {("v1", "back_end"): {"service_url": URLS["gcp"][0]}})
    done = verify(repo, tmp_path, "gcp")
    assert done.returncode == 1
    assert "FAIL services.v1.back_end.build_id: empty" in done.stdout
    assert "does not pass its schema (1 problem(s))" in done.stdout
    # the other, untouched entries are not deployed, not schema problems
    assert "--   services.v2.back_end" not in done.stdout  # it stops at the schema


def test_the_empty_template_is_still_a_failure(tmp_path):
    repo = make_repo(tmp_path / "repo", v3=False)
    done = verify(repo, tmp_path, "gcp")
    assert done.returncode == 1
    assert "holds no build ID and no URL yet" in done.stdout


def test_only_v3_recorded_is_a_partial_deployment_not_an_empty_file(tmp_path):
    """v3 deployed alone (``--only backend_v3,frontend_v3``) leaves the course's eight v1/v2
    fields empty: that is a partial deployment, not "nothing built or deployed"."""
    repo = make_repo(tmp_path / "repo")
    models = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
    run = "https://backendv3-{}-abcdefghij-uc.a.run.app"
    changes = {
        ("v3", "backends", m): {"build_id": BACK, "service_url": run.format(m.replace("_", "-"))}
        for m in models
    }
    changes[("v3", "front_end")] = {
        "build_id": FRONT,
        "service_url": "https://frontendv3-abcdefghij-uc.a.run.app",
    }
    deliverables.update(
        deliverables.path_for(repo, "gcp"),
        changes,
        target="gcp",
        gateway_url=("v3", "https://hw5-gateway-a1b2c3d4.uc.gateway.dev"),
    )
    done = verify(repo, tmp_path, "gcp")
    assert done.returncode == PARTIAL, done.stdout
    assert "holds no build ID and no URL yet" not in done.stdout
    assert "--   services.v1.back_end (backend_v1): not deployed" in done.stdout
    assert "--only backend_v3_efficientnet_lite0," in done.stdout
    only = verify(repo, tmp_path, "gcp", "--only", "backend_v3,frontend_v3")
    assert only.returncode == 0, only.stdout
