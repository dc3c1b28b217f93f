"""v3 is an optional extra the rubric does not cover: the same submission graded with and
without v3 services and deliverables gets exactly the same v1/v2 results, item by item.

Two submissions: the project's own repository built and deployed with the pipeline's gcp target
(with v3: eight Cloud Builds, the per-model backends, the API gateway and the v3 block of
deliverables.yaml; without: the course's four services), and course-style fixture submissions
(the good one and broken ones) with v3 files and a v3 deliverables block added.
"""

from __future__ import annotations

import shutil
import uuid

import pytest
import yaml

from hw5kit.gcloud_fake import GATEWAY_APIS, HW5_APIS, FakeGcloud
from hw5kit.grading import report
from hw5kit.grading.rubric import load

from ..conftest import subprocess_env
from ..support import submissions
from ..support.pipeline import PROJECT, make_repo, pipeline
from .conftest import result

RUBRIC = load()


def by_item(grading) -> dict[str, tuple[bool, float | None]]:
    """Every automatic item's outcome and score."""
    return {r.item.id: (r.passed, r.score) for r in grading.results if not r.manual}


def deployed(repo_dir, state_dir, bin_dir, *, v3: bool):
    repo = make_repo(repo_dir, v3=v3)
    fake = FakeGcloud(state_dir)
    fake.install(bin_dir)
    fake.add_project(PROJECT, apis=(*HW5_APIS, *GATEWAY_APIS))
    env = fake.env(subprocess_env(bin_dir.parent))
    for command in ("build", "deploy"):
        done = pipeline(command, "--target", "gcp", root=repo, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
    return repo, fake


def test_the_repository_scores_the_same_with_and_without_v3(tmp_path, grade_submission):
    with_v3, fake_v3 = deployed(
        tmp_path / "v3" / "repo", tmp_path / "v3" / "cloud", tmp_path / "v3" / "bin", v3=True
    )
    course, fake_course = deployed(
        tmp_path / "course" / "repo",
        tmp_path / "course" / "cloud",
        tmp_path / "course" / "bin",
        v3=False,
    )
    # the two submissions really differ by v3: services, scripts, builds and deliverables
    v3_data = yaml.safe_load((with_v3 / "deliverables.yaml").read_text())
    assert v3_data["services"]["v3"]["gateway_url"].startswith("https://hw5-gateway-")
    assert "v3" not in yaml.safe_load((course / "deliverables.yaml").read_text())["services"]
    assert (with_v3 / "deployment" / "deploy_frontend_v3.sh").exists()
    assert not (course / "deployment" / "deploy_frontend_v3.sh").exists()
    assert len(fake_v3.calls("builds submit")) == 8
    assert len(fake_course.calls("builds submit")) == 4

    graded_v3 = grade_submission(with_v3)
    graded_course = grade_submission(course)
    assert by_item(graded_v3) == by_item(graded_course)
    assert report.score(graded_v3) == report.score(graded_course) == RUBRIC.automatic_points
    # the grader ran the v3 repository's submit script, which builds the v3 images too: only
    # the course's four count
    for grading in (graded_v3, graded_course):
        assert "4 build(s) submitted" in result(grading, "Q1.8").output


def add_v3(root) -> None:
    """A student's v3 on top of a course-style submission: Dockerfiles, a Cloud Build file,
    deploy scripts, the gateway document and the v3 block of deliverables.yaml (build IDs made
    here, URLs in the fake's shape)."""
    for name in ("backend_v3", "frontend_v3"):
        shutil.copy2(root / "Dockerfile.backend_v2", root / f"Dockerfile.{name}")
    deployment = root / "deployment"
    shutil.copy2(deployment / "cloudbuild.yaml", deployment / "cloudbuild_v3.yaml")
    for service in ("backend_v3_efficientnet_lite0", "frontend_v3"):
        cloud_run = service.replace("_", "-")
        (deployment / f"deploy_{service}.sh").write_text(
            "#!/bin/bash\n"
            f'gcloud run deploy {cloud_run} --image="us-central1-docker.pkg.dev/'
            f'{submissions.PROJECT}/hw5-images/{service}:$1" --region=us-central1 '
            f"--project={submissions.PROJECT}\n"
        )
    (deployment / "openapi_v3.yaml").write_text(
        'swagger: "2.0"\ninfo: {title: hw5-api, version: "1.0.0"}\npaths: {}\n'
    )
    data = yaml.safe_load((root / "deliverables.yaml").read_text())
    data["services"]["v3"] = {
        "gateway_url": "https://hw5-gateway-0123abcd.uc.gateway.dev",
        "backends": {
            "efficientnet_lite0": {
                "build_id": str(uuid.uuid4()),
                "service_url": submissions.fake_url("backendv3_efficientnet_lite0"),
            }
        },
        "front_end": {
            "build_id": str(uuid.uuid4()),
            "service_url": submissions.fake_url("frontend_v3"),
        },
    }
    (root / "deliverables.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize(
    "name", ["good", "base_not_tagged_latest", "serving_url_of_the_other_version"]
)
def test_a_fixture_submission_scores_the_same_with_a_v3_added(
    name, tmp_path, materialize, grade_submission
):
    course = materialize(name)
    with_v3 = tmp_path / "with_v3"
    shutil.copytree(course, with_v3)
    add_v3(with_v3)
    assert "v3" in yaml.safe_load((with_v3 / "deliverables.yaml").read_text())["services"]
    graded_course = grade_submission(course)
    graded_v3 = grade_submission(with_v3)
    assert by_item(graded_v3) == by_item(graded_course)
    assert report.score(graded_v3) == report.score(graded_course)
    if name != "good":  # a broken submission loses the same points either way
        assert report.score(graded_course) < RUBRIC.automatic_points
