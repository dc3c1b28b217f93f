"""The naming rules shared by the pipeline, the grader and the fake gcloud (hw5kit.naming)."""

from __future__ import annotations

import re

import pytest

from hw5kit import naming
from hw5kit.gcloud_fake import FakeGcloud
from hw5kit.gcloud_fake import cli as fake_cli
from hw5kit.gcloud_fake.state import project_number
from hw5kit.grading.__main__ import main as grade_main
from hw5kit.pipeline import config as config_mod

PROJECT = "hw5-20261234"
NUMBER = project_number(PROJECT)


@pytest.mark.parametrize(
    ("student_id", "ok"),
    [
        ("20261234", True),
        ("ab", True),  # hw5-ab: 6 characters, the shortest project ID
        ("a", False),  # hw5-a: 5
        ("1" * 26, True),  # hw5- + 26 = 30, the longest
        ("1" * 27, False),
        ("2026-1234", True),
        ("20261234-", False),  # a project ID cannot end with a hyphen
        ("-20261234", False),
        ("Jean Dupont", False),
        ("google42", False),  # a restricted string in project IDs
    ],
)
def test_one_student_id_rule_for_the_config_and_the_grader(student_id, ok, tmp_path):
    assert (naming.student_id_problem(student_id) is None) is ok
    data = {
        "student_id": student_id,
        "services": {"backend_v1": {"kind": "backend", "version": "v1", "env": {"MODELS": "x"}}},
    }
    if ok:
        assert config_mod.parse(data).project_id == f"hw5-{student_id}"
    else:
        with pytest.raises(config_mod.ConfigError):
            config_mod.parse(data)
    # the grader's --student-id says the same (exit status 2 is argparse's refusal)
    if not ok:
        with pytest.raises(SystemExit) as stopped:
            grade_main([str(tmp_path), "--student-id", student_id])
        assert stopped.value.code == 2


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("backendv1", True),
        ("b" * 49, True),
        ("b" * 50, False),  # Cloud Run Admin API: "must contain fewer than 50 characters"
        ("1backend", False),  # must begin with a letter
        ("backend-", False),
        ("backend_v1", False),
    ],
)
def test_one_cloud_run_name_rule_for_the_config_and_the_fake(name, ok, tmp_path):
    assert (naming.cloud_run_name_problem(name) is None) is ok
    data = {
        "student_id": "20261234",
        "services": {
            "backend_v1": {
                "kind": "backend",
                "version": "v1",
                "cloud_run_name": name,
                "env": {"MODELS": "x"},
            }
        },
    }
    if ok:
        config_mod.parse(data)
    else:
        with pytest.raises(config_mod.ConfigError, match="Cloud Run's rule"):
            config_mod.parse(data)
    fake = FakeGcloud(tmp_path / "state")
    fake.add_project(PROJECT)
    fake.configure(require_built_images=False)
    image = f"us-central1-docker.pkg.dev/{PROJECT}/hw5-images/backend_v1:1"
    done = fake_cli.run(
        ["run", "deploy", name, "--region=us-central1", f"--image={image}"],
        state_dir=tmp_path / "state",
        env={},
        cwd=tmp_path,
    )
    assert (done.code == 0) is ok, done.stderr
    if not ok and naming.GCLOUD_SERVICE_NAME_RE.match(name):
        # gcloud's own check lets it through; the API refuses it with its own words
        assert "must be less than 50 characters" in done.stderr
    if ok:  # the longest name still fits whole in both URL forms
        assert f"Service URL: https://{name}-" in done.stderr
        for url in naming.service_urls(PROJECT, NUMBER, "us-central1", name):
            assert naming.parse_run_url(url).service == name


def test_both_cloud_run_url_forms_are_read_into_their_parts():
    hashed = naming.parse_run_url("https://backend-v1-abcdefghij-uc.a.run.app/")
    assert (hashed.form, hashed.service, hashed.region, hashed.project_hash) == (
        "hash",
        "backend-v1",
        "us-central1",
        "abcdefghij",
    )
    det = naming.parse_run_url(f"https://backend-v1-{NUMBER}.us-central1.run.app")
    assert (det.form, det.service, det.region, det.project_number) == (
        "deterministic",
        "backend-v1",
        "us-central1",
        NUMBER,
    )
    tagged = naming.parse_run_url("https://green---backend-abcdefghij-ew.a.run.app")
    assert tagged.tag == "green" and tagged.region == "europe-west1"
    assert naming.parse_run_url("https://example.com") is None
    # "only available for DNS segments of 63 characters or less"
    assert naming.deterministic_url("b" * 50, NUMBER, "us-central1") is not None
    assert naming.deterministic_url("b" * 51, NUMBER, "us-central1") is None


def test_two_urls_are_one_service_only_when_name_region_and_project_agree():
    h = naming.project_hash(PROJECT)
    same_hash = f"https://backend-v1-{h}-uc.a.run.app"
    deterministic = f"https://backend-v1-{NUMBER}.us-central1.run.app"
    assert naming.compare_run_urls(same_hash + "/", same_hash).same is True
    assert naming.compare_run_urls(deterministic, deterministic).same is True

    def differs(found: str, expected: str, evidence=None) -> str:
        result = naming.compare_run_urls(found, expected, evidence)
        assert result.same is False
        return result.describe()

    assert "service name 'backend-v2'" in differs(f"https://backend-v2-{h}-uc.a.run.app", same_hash)
    assert "region us-east1 (ue), not us-central1 (uc)" in differs(
        f"https://backend-v1-{h}-ue.a.run.app", same_hash
    )
    assert "project hash" in differs("https://backend-v1-zzzzzzzzzz-uc.a.run.app", same_hash)
    assert "project number 999999999999" in differs(
        "https://backend-v1-999999999999.us-central1.run.app", deterministic
    )
    assert "region europe-west1" in differs(
        f"https://backend-v1-{NUMBER}.europe-west1.run.app", same_hash
    )
    # across the two forms the hash names no project: name and region agree, project unknown
    across = naming.compare_run_urls(deterministic, same_hash)
    assert across.same is None and "carries no project" in across.note
    # ... unless the submission's other URLs show the project's number
    known = naming.ProjectEvidence.of([f"https://frontend-v1-{NUMBER}.us-central1.run.app"])
    assert naming.compare_run_urls(deterministic, same_hash, known).same is None
    assert "another project" in differs(
        "https://backend-v1-999999999999.us-central1.run.app", same_hash, known
    )
    # against a stand-in project's URL (the fake's), the project is not compared
    stand_in = naming.compare_run_urls(
        "https://backend-v1-zzzzzzzzzz-uc.a.run.app", same_hash, ignore_project=True
    )
    assert stand_in.same is None


def test_image_uris_are_read_into_their_parts():
    uri = naming.image_uri("us-central1", PROJECT, "hw5-images", "backend_v1", "abc")
    assert uri == f"us-central1-docker.pkg.dev/{PROJECT}/hw5-images/backend_v1:abc"
    parts = naming.parse_image_uri(uri)
    assert (parts.location, parts.project, parts.repository, parts.image, parts.tag) == (
        "us-central1",
        PROJECT,
        "hw5-images",
        "backend_v1",
        "abc",
    )
    assert parts.uri == uri.rsplit(":", 1)[0]
    assert naming.parse_image_uri("gcr.io/p/x:1") is None
    assert naming.is_build_id("0b5c2e4a-91d3-4f6e-8a7b-2c3d4e5f6a7b")
    assert not naming.is_build_id("backend_v1-build-3")


def test_the_deliverables_schema_follows_the_same_rules():
    from hw5kit.pipeline import deliverables

    defs = deliverables.schema()["$defs"]
    assert defs["build_id"]["pattern"] == naming.BUILD_ID_RE.pattern
    h = naming.project_hash(PROJECT)
    for url in naming.service_urls(PROJECT, NUMBER, "us-central1", "backend-v1"):
        assert naming.parse_run_url(url) is not None
        assert re.match(defs["service_url"]["pattern"], url), url
    assert f"https://backend-v1-{h}-uc.a.run.app" in naming.service_urls(
        PROJECT, NUMBER, "us-central1", "backend-v1"
    )
