"""templates/ rendered from deployment.yaml: the committed files, the Cloud Build fields, the
shell scripts (shellcheck, and what they really send to gcloud)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml

from hw5kit import lint
from hw5kit.gcloud_fake import cloudbuild
from hw5kit.pipeline import config, render

from ..conftest import ROOT
from ..support.pipeline import PROJECT, REGISTRY, make_repo

BUILD_ID = "0b5c2e4a-91d3-4f6e-8a7b-2c3d4e5f6a7b"


def rendered(cfg=None) -> dict[str, str]:
    cfg = cfg or config.load(ROOT / "deployment.yaml")
    return {f.path: f.text for f in render.render_all(cfg, ROOT / "templates")}


def test_committed_deployment_files_are_a_fresh_render():
    files = render.render_all(config.load(ROOT / "deployment.yaml"), ROOT / "templates")
    assert {f.path for f in files} == {
        "deployment/cloudbuild.yaml",
        "deployment/submit_build.sh",
        "deployment/deploy_backend_v1.sh",
        "deployment/deploy_frontend_v1.sh",
        "deployment/deploy_backend_v2.sh",
        "deployment/deploy_frontend_v2.sh",
        "deployment/cloudbuild_v3.yaml",
        "deployment/deploy_backend_v3_efficientnet_lite0.sh",
        "deployment/deploy_backend_v3_efficientnet_lite1.sh",
        "deployment/deploy_backend_v3_efficientnet_lite2.sh",
        "deployment/deploy_frontend_v3.sh",
        "deployment/openapi_v3.yaml",
    }
    problems = render.differences(ROOT, files)
    assert not problems, "deployment/ is stale; run `nox -s render`:\n" + "\n".join(
        detail for _, detail in problems
    )


def test_a_changed_config_is_detected_and_rewritten(tmp_path):
    repo = make_repo(tmp_path / "repo")
    text = (repo / "deployment.yaml").read_text().replace("memory: 2Gi", "memory: 4Gi", 1)
    (repo / "deployment.yaml").write_text(text)
    cfg = config.load(repo / "deployment.yaml")
    files = render.render_all(cfg, repo / "templates")
    problems = dict(render.differences(repo, files))
    assert set(problems) == {"deployment/deploy_backend_v1.sh"}
    assert "+    --memory=4Gi \\" in problems["deployment/deploy_backend_v1.sh"]
    assert render.write(repo, files) == ["deployment/deploy_backend_v1.sh"]
    assert render.differences(repo, files) == []
    assert os.access(repo / "deployment/deploy_backend_v1.sh", os.X_OK)


def test_undefined_template_values_are_errors_not_empty_strings(tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    path = templates / "cloudbuild.yaml.j2"
    path.write_text(path.read_text() + "timeout: {{ ctx.build_timeout }}\n")
    with pytest.raises(jinja2.UndefinedError, match="build_timeout"):
        render.render_all(config.load(ROOT / "deployment.yaml"), templates)


# --- the Cloud Build config ---------------------------------------------------------------


def cloudbuild_config() -> dict:
    path = ROOT / "deployment" / "cloudbuild.yaml"
    return cloudbuild.load_config(path)  # schema-checked; raises on any unknown field


def test_cloudbuild_yaml_uses_only_cloud_build_config_fields():
    data = cloudbuild_config()
    assert set(data) == {"steps", "images", "substitutions", "options", "timeout"}
    assert (
        cloudbuild.schema_errors(yaml.safe_load((ROOT / "deployment/cloudbuild.yaml").read_text()))
        == []
    )
    # the checker does catch a field Cloud Build does not know
    assert cloudbuild.schema_errors({**data, "step": []}) == [".step: unused"]
    broken = json.loads(json.dumps(data))
    broken["steps"][1]["waitfor"] = ["x"]
    assert cloudbuild.schema_errors(broken) == [".steps[1].waitfor: unused"]
    broken["options"]["substitutionOption"] = "LOOSE"
    assert any("substitutionOption" in e for e in cloudbuild.schema_errors(broken))


def _tags(step: dict) -> list[str]:
    args = step["args"]
    return [args[i + 1] for i, a in enumerate(args) if a in ("-t", "--tag")]


def test_base_tagged_build_id_and_latest_app_only_build_id_all_pushed():
    data = cloudbuild_config()
    steps = {s["id"]: s for s in data["steps"]}
    assert _tags(steps["build-base"]) == [
        "${_BASE_IMAGE_URI}:${BUILD_ID}",
        "${_BASE_IMAGE_URI}:latest",
    ]
    assert _tags(steps["build-app"]) == ["${_APP_URI}:${BUILD_ID}"]
    assert "-f" in steps["build-base"]["args"] and "Dockerfile.base" in steps["build-base"]["args"]
    assert "${_TARGET_DOCKERFILE}" in steps["build-app"]["args"]
    assert "SERVING_PORT=${_SERVING_PORT}" in steps["build-app"]["args"]
    pushed = [s["args"][1] for s in data["steps"] if s["args"][0] == "push"]
    assert sorted(pushed) == sorted(
        ["${_BASE_IMAGE_URI}:${BUILD_ID}", "${_BASE_IMAGE_URI}:latest", "${_APP_URI}:${BUILD_ID}"]
    )
    assert data["options"]["substitutionOption"] == "ALLOW_LOOSE"
    assert set(data["substitutions"]) == {
        "_BASE_IMAGE_URI",
        "_APP_URI",
        "_SERVING_PORT",
        "_TARGET_DOCKERFILE",
    }


def test_the_first_step_fetches_the_previous_base_as_a_layer_cache():
    steps = cloudbuild_config()["steps"]
    first, base = steps[0], steps[1]
    assert first["args"] == ["pull", "${_BASE_IMAGE_URI}:latest"]
    assert first["allowFailure"] is True
    cache = base["args"][base["args"].index("--cache-from") + 1]
    assert cache == "${_BASE_IMAGE_URI}:latest"
    assert base["waitFor"] == [first["id"]]


# --- the shell scripts --------------------------------------------------------------------


def variant_config(tmp_path: Path) -> config.Config:
    """Values a template must quote: commas, spaces, quotes, a dollar sign."""
    data = yaml.safe_load((ROOT / "deployment.yaml").read_text())
    data["student_id"] = "20012345"
    data["region"] = "northamerica-northeast1"
    data["serving_port"] = 8080
    data["services"]["backend_v2"]["env"] = {
        "MODELS": "efficientnet_lite1,efficientnet_lite0",
        "GREETING": 'it\'s a "test" $HOME',
    }
    data["services"]["frontend_v2"]["env"] = {"TITLE": "Classifieur, v2"}
    data["services"]["backend_v3"]["env"]["GREETING"] = "a, b $X"
    data["gateway"]["api_key"] = True
    path = tmp_path / "deployment.yaml"
    path.write_text(yaml.safe_dump(data))
    return config.load(path)


@pytest.mark.parametrize("which", ["reference", "variant"])
def test_rendered_scripts_pass_shellcheck(tmp_path, which):
    cfg = (
        config.load(ROOT / "deployment.yaml") if which == "reference" else variant_config(tmp_path)
    )
    out = tmp_path / "out"
    render.write(out, render.render_all(cfg, ROOT / "templates"))
    scripts = sorted(str(p) for p in (out / "deployment").glob("*.sh"))
    assert len(scripts) == 9  # submit, v1 and v2's four, v3's three backends and frontend
    done = subprocess.run([lint.tool("shellcheck"), *scripts], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def kit_path(env: dict[str, str]) -> dict[str, str]:
    """python3 with PyYAML first on PATH (the course's prerequisite for these scripts)."""
    return {
        **env,
        "PATH": f"{env['PATH'].split(os.pathsep, 1)[0]}{os.pathsep}"
        f"{Path(sys.executable).parent}{os.pathsep}{env['PATH'].split(os.pathsep, 1)[1]}",
    }


def test_deploy_scripts_pass_awkward_env_values_through_to_cloud_run(tmp_path, cloud):
    cfg = variant_config(tmp_path)
    repo = tmp_path / "repo"
    render.write(repo, render.render_all(cfg, ROOT / "templates"))
    cloud.fake.add_project(cfg.project_id, repositories=())
    cloud.fake.configure(require_built_images=False)
    env = kit_path(cloud.env)
    script = repo / "deployment"
    back = subprocess.run(
        ["bash", script / "deploy_backend_v2.sh", BUILD_ID], env=env, capture_output=True, text=True
    )
    assert back.returncode == 0, back.stderr
    front = subprocess.run(
        ["bash", script / "deploy_frontend_v2.sh", BUILD_ID],
        env=env,
        capture_output=True,
        text=True,
    )
    assert front.returncode == 0, front.stderr
    run = cloud.fake.project(cfg.project_id)["run"]
    backend = run["northamerica-northeast1/backendv2"]["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e["value"] for e in backend["env"]} == dict(cfg.service("backend_v2").env)
    assert backend["ports"][0]["containerPort"] == 8080
    assert backend["image"] == f"{cfg.repo_uri}/backend_v2:{BUILD_ID}"
    frontend = run["northamerica-northeast1/frontendv2"]["spec"]["template"]["spec"]["containers"][
        0
    ]
    url = run["northamerica-northeast1/backendv2"]["status"]["url"]
    assert {e["name"]: e["value"] for e in frontend["env"]} == {
        "SERVING_URL": url,
        "TITLE": "Classifieur, v2",
    }


def test_deploy_script_reads_the_build_id_from_deliverables(tmp_path, cloud):
    repo = make_repo(tmp_path / "repo")
    text = (repo / "deliverables.yaml").read_text()
    (repo / "deliverables.yaml").write_text(
        text.replace(
            "build_id: # Paste the build ID of the Cloud Build for back end V1",
            f"build_id: {BUILD_ID}",
        )
    )
    cloud.fake.configure(require_built_images=False)
    env = kit_path(cloud.env)
    done = subprocess.run(
        ["bash", repo / "deployment/deploy_backend_v1.sh"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    [call] = cloud.fake.calls("run deploy")
    assert f"--image={REGISTRY}/backend_v1:{BUILD_ID}" in call["argv"]
    missing = subprocess.run(
        ["bash", repo / "deployment/deploy_backend_v2.sh"], env=env, capture_output=True, text=True
    )
    assert missing.returncode == 2
    assert "fill services.v2.back_end.build_id in deliverables.yaml" in missing.stderr
    assert len(cloud.fake.calls("run deploy")) == 1


def test_frontend_script_needs_its_backend_or_an_https_serving_url(tmp_path, cloud):
    repo = make_repo(tmp_path / "repo")
    script = repo / "deployment/deploy_frontend_v1.sh"
    env = kit_path(cloud.env)
    done = subprocess.run(["bash", script, BUILD_ID], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert "deploy the backend first (deployment/deploy_backend_v1.sh)" in done.stderr
    local = subprocess.run(
        ["bash", script, BUILD_ID],
        env={**env, "SERVING_URL": "http://127.0.0.1:8000"},
        capture_output=True,
        text=True,
    )
    assert local.returncode == 2 and "SERVING_URL='http://127.0.0.1:8000'" in local.stderr
    assert cloud.fake.calls("run deploy") == []


def test_submit_script_refuses_unknown_images_and_missing_dockerfiles(tmp_path, cloud):
    repo = make_repo(tmp_path / "repo")
    script = repo / "deployment/submit_build.sh"
    done = subprocess.run(
        ["bash", script, "backend_v3"], env=cloud.env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "unknown image 'backend_v3'; expected one of: backend_v1 frontend_v1" in done.stderr
    (repo / "Dockerfile.frontend_v1").unlink()
    done = subprocess.run(
        ["bash", script, "frontend_v1"], env=cloud.env, capture_output=True, text=True
    )
    assert done.returncode == 1 and "Dockerfile.frontend_v1 is missing" in done.stderr
    assert cloud.fake.calls() == []
    help_text = subprocess.run(["bash", script, "--help"], capture_output=True, text=True).stdout
    assert "Usage: deployment/submit_build.sh [--async] [APP_IMAGE ...]" in help_text


def test_submit_script_without_arguments_builds_every_image(tmp_path, cloud):
    repo = make_repo(tmp_path / "repo")
    done = subprocess.run(
        ["bash", repo / "deployment/submit_build.sh"],
        env=cloud.env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    calls = cloud.fake.calls("builds submit")
    apps = [c["flags"]["--substitutions"].split("_APP_URI=")[1].split(",")[0] for c in calls]
    course = ("backend_v1", "frontend_v1", "backend_v2", "frontend_v2")
    v3 = [f"backend_v3_efficientnet_lite{i}" for i in range(3)] + ["frontend_v3"]
    assert apps == [f"{REGISTRY}/{name}" for name in (*course, *v3)]
    assert all(c["positionals"] == [f"{repo}/deployment/.."] for c in calls)
    assert len(cloud.fake.project(PROJECT)["builds"]) == 8
    # the course's images use the course's Cloud Build file and its four substitutions; each
    # v3 model's image the v3 file, with its model as a fifth
    for call, name in zip(calls, (*course, *v3), strict=True):
        subs = dict(kv.split("=", 1) for kv in call["flags"]["--substitutions"].split(","))
        if name.startswith("backend_v3_"):
            assert call["flags"]["--config"].endswith("/deployment/cloudbuild_v3.yaml")
            assert subs["_MODEL_NAME"] == name.removeprefix("backend_v3_")
            assert subs["_TARGET_DOCKERFILE"] == "Dockerfile.backend_v3"
        else:
            assert call["flags"]["--config"].endswith("/deployment/cloudbuild.yaml")
            assert "_MODEL_NAME" not in subs and subs["_TARGET_DOCKERFILE"] == f"Dockerfile.{name}"
