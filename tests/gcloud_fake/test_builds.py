"""Cloud Build in the fake: config checks, substitutions, and the docker steps simulated
against the fake Artifact Registry (what is pushed, with which tags)."""

import json
import re
import textwrap

import pytest
import yaml

from hw5kit.gcloud_fake import cloudbuild, docker

from ..support.pipeline import PROJECT, REGISTRY, UUID

BASE = f"{REGISTRY}/base_image"
APP = f"{REGISTRY}/backend_v1"


def write_source(tmp_path, config: str, *, dockerfiles=("Dockerfile.base", "Dockerfile.app")):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "cloudbuild.yaml").write_text(textwrap.dedent(config))
    for name in dockerfiles:
        text = (
            "FROM python:3.11-slim\n"
            if name.endswith("base")
            else ("ARG BASE_IMAGE_URI\nFROM ${BASE_IMAGE_URI}\n")
        )
        (src / name).write_text(text)
    return src


COURSE_LIKE = """
steps:
  - name: gcr.io/cloud-builders/docker
    args: [build, -t, "${_BASE_IMAGE_URI}:${BUILD_ID}", -t, "${_BASE_IMAGE_URI}:latest",
           -f, Dockerfile.base, .]
  - name: gcr.io/cloud-builders/docker
    args: [push, "${_BASE_IMAGE_URI}:${BUILD_ID}"]
  - name: gcr.io/cloud-builders/docker
    args: [push, "${_BASE_IMAGE_URI}:latest"]
  - name: gcr.io/cloud-builders/docker
    args: [build, --build-arg, "BASE_IMAGE_URI=${_BASE_IMAGE_URI}:${BUILD_ID}",
           -t, "${_APP_URI}:${BUILD_ID}", -f, "${_TARGET_DOCKERFILE}", .]
  - name: gcr.io/cloud-builders/docker
    args: [push, "${_APP_URI}:${BUILD_ID}"]
options:
  substitutionOption: ALLOW_LOOSE
"""


def submit(cloud, src, *subs, config="cloudbuild.yaml"):
    substitutions = ",".join(subs) or (
        f"_BASE_IMAGE_URI={BASE},_APP_URI={APP},_TARGET_DOCKERFILE=Dockerfile.app"
    )
    return cloud.gcloud(
        "builds",
        "submit",
        "--region=us-central1",
        f"--config={config}",
        f"--substitutions={substitutions}",
        ".",
        cwd=src,
    )


def build_id_of(done) -> str:
    match = re.search(rf"/locations/us-central1/builds/({UUID})\]", done.stderr)
    assert match, done.stderr
    return match.group(1)


def test_a_course_like_build_pushes_base_twice_and_app_once(cloud, tmp_path):
    src = write_source(tmp_path, COURSE_LIKE)
    done = submit(cloud, src)
    assert done.returncode == 0, done.stderr
    build_id = build_id_of(done)
    images = cloud.fake.project(PROJECT)["images"]
    assert set(images[BASE]["tags"]) == {build_id, "latest"}
    assert set(images[APP]["tags"]) == {build_id}
    assert done.stdout.splitlines()[-1].startswith(build_id)
    assert done.stdout.splitlines()[-1].endswith("SUCCESS")
    described = cloud.gcloud(
        "builds", "describe", build_id, "--region=us-central1", "--format=json"
    )
    build = json.loads(described.stdout)
    assert build["status"] == "SUCCESS" and build["id"] == build_id
    assert build["substitutions"]["_APP_URI"] == APP
    assert "fake" not in build


def test_describe_needs_the_builds_region(cloud, tmp_path):
    build_id = build_id_of(submit(cloud, write_source(tmp_path, COURSE_LIKE)))
    done = cloud.gcloud("builds", "describe", build_id, "--region=europe-west1")
    assert done.returncode == 1 and "NOT_FOUND" in done.stderr
    assert cloud.gcloud("builds", "describe", build_id).returncode == 1  # global


def test_missing_dockerfile_fails_the_build_and_records_it(cloud, tmp_path):
    src = write_source(tmp_path, COURSE_LIKE, dockerfiles=("Dockerfile.base",))
    done = submit(cloud, src)
    assert done.returncode == 1
    build_id = build_id_of(done)
    assert f'ERROR: (gcloud.builds.submit) build {build_id} completed with status "FAILURE"' in (
        done.stderr
    )
    assert "lstat /workspace/Dockerfile.app: no such file or directory" in done.stdout
    build = cloud.fake.project(PROJECT)["builds"][build_id]
    assert build["status"] == "FAILURE"
    assert [s["status"] for s in build["steps"]] == ["SUCCESS"] * 3 + ["FAILURE", "CANCELLED"]
    assert APP not in cloud.fake.project(PROJECT)["images"]


def test_a_service_image_from_a_base_that_was_never_pushed_fails(cloud, tmp_path):
    config = """
    steps:
      - name: gcr.io/cloud-builders/docker
        args: [build, --build-arg, "BASE_IMAGE_URI=${_BASE_IMAGE_URI}:latest",
               -t, "${_APP_URI}:${BUILD_ID}", -f, Dockerfile.app, .]
    substitutions: {_BASE_IMAGE_URI: "", _APP_URI: ""}
    """
    src = write_source(tmp_path, config)
    done = submit(cloud, src, f"_BASE_IMAGE_URI={BASE}", f"_APP_URI={APP}")
    assert done.returncode == 1
    assert f"manifest for {BASE}:latest not found" in done.stdout


def test_must_match_rejects_unused_and_undefined_substitutions(cloud, tmp_path):
    strict = COURSE_LIKE.replace("options:\n  substitutionOption: ALLOW_LOOSE\n", "")
    src = write_source(tmp_path, strict)
    extra = submit(
        cloud,
        src,
        f"_BASE_IMAGE_URI={BASE}",
        f"_APP_URI={APP}",
        "_TARGET_DOCKERFILE=Dockerfile.app",
        "_SERVING_PORT=8000",
    )
    assert extra.returncode == 1
    assert 'key "_SERVING_PORT" in the substitution data is not matched in the template' in (
        extra.stderr
    )
    missing = submit(cloud, src, f"_BASE_IMAGE_URI={BASE}", f"_APP_URI={APP}")
    assert 'key in the template "_TARGET_DOCKERFILE" is not matched' in missing.stderr
    assert cloud.fake.project(PROJECT)["builds"] == {}


def test_allow_loose_turns_a_missing_substitution_into_an_empty_string(cloud, tmp_path):
    src = write_source(tmp_path, COURSE_LIKE)
    done = submit(cloud, src, f"_BASE_IMAGE_URI={BASE}", f"_APP_URI={APP}")
    assert done.returncode == 1  # -f "" : no Dockerfile named ""
    assert "unable to prepare context" in done.stdout


def test_misspelt_or_lowercase_substitution_keys_are_refused(cloud, tmp_path):
    src = write_source(tmp_path, COURSE_LIKE)
    done = submit(cloud, src, f"BASE_IMAGE_URI={BASE}")
    assert done.returncode == 1 and "is not a valid substitution key" in done.stderr


def test_unknown_config_fields_are_reported_like_gcloud(cloud, tmp_path):
    config = COURSE_LIKE.replace("options:", "optoins:")
    src = write_source(tmp_path, config)
    done = submit(cloud, src)
    assert done.returncode == 1
    assert "as build config: .optoins: unused" in done.stderr


def test_yaml_errors_and_missing_config(cloud, tmp_path):
    src = write_source(tmp_path, "steps: [\n")
    done = submit(cloud, src)
    assert done.returncode == 1 and "parsing" in done.stderr
    gone = submit(cloud, src, config="nope.yaml")
    assert gone.returncode == 1 and "Unable to read file" in gone.stderr


def test_push_to_a_missing_repository_or_another_project_fails(cloud, tmp_path):
    src = write_source(tmp_path, COURSE_LIKE)
    other = f"us-central1-docker.pkg.dev/{PROJECT}/no-such-repo/backend_v1"
    done = submit(
        cloud,
        src,
        f"_BASE_IMAGE_URI={BASE}",
        f"_APP_URI={other}",
        "_TARGET_DOCKERFILE=Dockerfile.app",
    )
    assert done.returncode == 1 and 'Repository "no-such-repo" not found' in done.stdout
    foreign = "us-central1-docker.pkg.dev/hw5-000000000/hw5-images/base_image"
    done = submit(
        cloud,
        src,
        f"_BASE_IMAGE_URI={foreign}",
        f"_APP_URI={APP}",
        "_TARGET_DOCKERFILE=Dockerfile.app",
    )
    assert done.returncode == 1 and "uploadArtifacts" in done.stdout
    # an Artifact Registry host with a repository ID Artifact Registry refuses (hw5kit.naming)
    bad = f"us-central1-docker.pkg.dev/{PROJECT}/hw5_images/backend_v1"
    done = submit(
        cloud,
        src,
        f"_BASE_IMAGE_URI={BASE}",
        f"_APP_URI={bad}",
        "_TARGET_DOCKERFILE=Dockerfile.app",
    )
    assert done.returncode == 1 and "is not an Artifact Registry image name" in done.stdout
    assert bad not in cloud.fake.project(PROJECT)["images"]


def test_cache_pull_fails_first_then_finds_the_previous_base(cloud, tmp_path):
    config = COURSE_LIKE.replace(
        "steps:\n",
        "steps:\n  - name: gcr.io/cloud-builders/docker\n"
        '    args: [pull, "${_BASE_IMAGE_URI}:latest"]\n'
        "    allowFailure: true\n",
    ).replace(
        'args: [build, -t, "${_BASE_IMAGE_URI}',
        'args: [build, --cache-from, "${_BASE_IMAGE_URI}:latest", -t, "${_BASE_IMAGE_URI}',
    )
    src = write_source(tmp_path, config)
    first = submit(cloud, src)
    assert first.returncode == 0, first.stderr
    assert "manifest unknown" in first.stdout and "not found locally, ignored" in first.stdout
    second = submit(cloud, src)
    assert second.returncode == 0
    assert f"using cache from {BASE}:latest" in second.stdout


def test_waitfor_must_name_an_earlier_step(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {"steps": [{"name": "x", "waitFor": ["later"]}, {"name": "y", "id": "later"}]}
        )
    )
    with pytest.raises(cloudbuild.ConfigProblem, match='waits for a later step "later"'):
        cloudbuild.load_config(path)


def test_snake_case_keys_are_accepted_as_gcloud_converts_them(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "steps:\n- name: x\n  wait_for: ['-']\noptions:\n  substitution_option: ALLOW_LOOSE\n"
    )
    config = cloudbuild.load_config(path)
    assert config["steps"][0]["waitFor"] == ["-"]
    assert config["options"]["substitutionOption"] == "ALLOW_LOOSE"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$$BUILD_ID", "$BUILD_ID"),
        ("${_A}-$_A-${BUILD_ID}", "x-x-id"),
        ("$PROJECT_ID/$_UNSET/", "p//"),
    ],
)
def test_substitution_syntax(text, expected):
    assert cloudbuild.substitute(text, {"_A": "x", "BUILD_ID": "id", "PROJECT_ID": "p"}) == expected


@pytest.mark.parametrize(
    ("reference", "parts"),
    [
        (f"{APP}:abc", ("us-central1", ("hw5-123456789", "hw5-images", "backend_v1"), "abc")),
        ("python:3.11-slim", (None, None, "3.11-slim")),
        ("gcr.io/p/x", (None, None, None)),
        # on an Artifact Registry host, but not a name it accepts: no parts (naming's rule)
        (f"us-central1-docker.pkg.dev/{PROJECT}/hw5_images/x:1", ("us-central1", None, "1")),
        (
            f"us-docker.pkg.dev/{PROJECT}/r/a/b@sha256:{'0' * 64}",
            ("us", (PROJECT, "r", "a/b"), None),
        ),
    ],
)
def test_image_references(reference, parts):
    ref = docker.parse_reference(reference)
    assert (ref.ar_location, ref.ar_parts(), ref.tag) == parts
    assert docker.parse_reference(":latest") is None
    assert docker.parse_reference("Upper/case") is None
