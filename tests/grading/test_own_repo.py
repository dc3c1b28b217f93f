"""The project's own repository as a submission: every automatic item earns its points once
deliverables.yaml is filled (by the pipeline's gcp target against a fake gcloud, in a copy), and
--live checks that deployment: builds described by the fake, services on 127.0.0.1."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading

import pytest
import yaml

from hw5kit import procs
from hw5kit.grading import live, report
from hw5kit.grading.rubric import load

from ..conftest import ROOT, subprocess_env
from ..support.pipeline import PROJECT, deployed_copy
from .conftest import result

RUBRIC = load()
APPS = {
    "backend_v1": ("v1", "back_end"),
    "frontend_v1": ("v1", "front_end"),
    "backend_v2": ("v2", "back_end"),
    "frontend_v2": ("v2", "front_end"),
}


@pytest.fixture
def deployed_repo(tmp_path):
    """A copy of the repository built and deployed with `--target gcp` against a fake gcloud
    (the test's own: the grader creates another one for the scripts it runs)."""
    return deployed_copy(tmp_path, subprocess_env(tmp_path))


def recorded(repo):
    data = yaml.safe_load((repo / "deliverables.yaml").read_text())
    return {app: data["services"][v][p] for app, (v, p) in APPS.items()}


def test_the_repository_gets_every_automatic_point(deployed_repo, grade_submission):
    repo, _ = deployed_repo
    grading = grade_submission(repo)
    failed = {r.item.id: r.output for r in grading.results if not r.manual and not r.passed}
    assert failed == {}
    assert report.score(grading) == RUBRIC.automatic_points
    assert grading.context.student_id == PROJECT.removeprefix("hw5-")
    # the repository's submit script builds all four images when run without arguments
    submitted = result(grading, "Q1.8").output
    assert "4 build(s) submitted" in submitted
    # its frontends look their backend up; SERVING_URL is the URL the backend's deploy gave
    assert "the URL its deploy gave" in result(grading, "Q3.7").output


def test_the_repository_as_committed_loses_only_what_needs_a_deployment(grade_submission):
    """deliverables.yaml is the course's empty template in git: the build IDs and URLs are
    missing, and the deploy scripts (which read the build IDs from it) deploy nothing."""
    grading = grade_submission(ROOT)
    failed = sorted(r.item.id for r in grading.results if not r.manual and not r.passed)
    deploy_items = [f"Q{q}.{i}" for q in (3, 6) for i in range(1, 10)]
    assert failed == sorted(["Q1.11", *deploy_items])
    assert "no Cloud Build ID for backend_v1" in result(grading, "Q3.1").output
    for item in ("Q1.1", "Q1.9", "Q1.10", "Q2.1"):
        assert result(grading, item).passed


# --- --live -----------------------------------------------------------------------------------


@contextlib.contextmanager
def url_only_backend():
    """A course-style backend: /hello, and /predict taking only JSON {"url": ...}."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, status, body, kind="application/json"):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/hello":
                self._send(200, "Hello!", "text/plain")
            else:
                self._send(404, "{}")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            try:
                url = json.loads(body)["url"]
            except (ValueError, KeyError, TypeError):
                self._send(500, '{"error": "expected JSON with a url"}')
                return
            self._send(200, json.dumps({"category": "tabby", "url": url}))

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def frontend(tmp_path, backend_v1):
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    process = procs.start(
        "frontend_v1",
        procs.streamlit_command(ROOT / "apps" / "frontend_v1" / "app.py", port=port),
        log_path=tmp_path / "frontend.log",
        env=subprocess_env(tmp_path, SERVING_URL=backend_v1.url),
        url=url,
    )
    try:
        procs.wait_http(f"{url}{procs.STREAMLIT_HEALTH}", timeout=120, process=process)
        yield url
    finally:
        process.stop()


@pytest.mark.slow
def test_live_checks_builds_with_gcloud_and_services_on_loopback(
    deployed_repo, grade_submission, backend_v1, backend_v2, frontend, monkeypatch
):
    repo, fake = deployed_repo
    urls = {app: entry["service_url"] for app, entry in recorded(repo).items()}
    url_map = {
        urls["backend_v1"]: backend_v1.url,
        urls["backend_v2"]: backend_v2.url,
        urls["frontend_v1"]: frontend,
        urls["frontend_v2"]: frontend,
    }
    # `gcloud builds describe` answers from the fake that ran the builds
    monkeypatch.setenv("PATH", f"{fake.bin_dir}:/usr/bin:/bin")
    before = len(fake.calls("builds describe"))  # the pipeline's build followed each build
    grading = grade_submission(repo, live=True, url_map=url_map)
    failed = {r.item.id: r.output for r in grading.results if not r.manual and not r.passed}
    assert failed == {}
    builds = result(grading, "Q1.11").output
    assert builds.count("exists, SUCCESS, pushed") == 4
    backend = result(grading, "Q3.8").output
    assert "GET" in backend and "/hello: 200" in backend
    assert "chelsea.png by upload" in backend
    assert "a Streamlit page" in result(grading, "Q3.9").output
    describes = fake.calls("builds describe")[before:]
    assert len(describes) == 4


@pytest.mark.slow
def test_live_failures_are_reported_per_entry(deployed_repo, grade_submission, monkeypatch):
    repo, fake = deployed_repo
    data = yaml.safe_load((repo / "deliverables.yaml").read_text())
    data["services"]["v2"]["front_end"]["build_id"] = data["services"]["v1"]["front_end"][
        "build_id"
    ]  # a real build, of another image
    data["services"]["v1"]["back_end"]["build_id"] = "0b5c2e4a-91d3-4f6e-8a7b-2c3d4e5f6a7b"
    (repo / "deliverables.yaml").write_text(yaml.safe_dump(data))
    urls = recorded(repo)
    dead = f"http://127.0.0.1:{procs.free_port()}"
    monkeypatch.setenv("PATH", f"{fake.bin_dir}:/usr/bin:/bin")
    grading = grade_submission(
        repo, live=True, url_map={entry["service_url"]: dead for entry in urls.values()}
    )
    builds = result(grading, "Q1.11")
    assert builds.score == 2
    assert "not found in hw5-123456789: ERROR: (gcloud.builds.describe) NOT_FOUND" in builds.output
    assert "did not push" in builds.output and "frontend_v2" in builds.output
    backend = result(grading, "Q3.8")
    assert not backend.passed and "no answer" in backend.output


def test_a_backend_that_takes_only_urls_is_classified_by_url_on_loopback_else_left_to_a_person(
    tmp_path,
):
    from hw5kit import photos

    photo = photos.photo("chelsea.png")
    with url_only_backend() as backend, photos.serve_photos(tmp_path / "photos") as base:
        ok, lines = live.check_backend(backend, photo, base)
        assert ok is True and "by URL" in lines[-1]
        ok, lines = live.check_backend(backend, photo, None)  # as for a public backend
        assert ok is None
        assert "classification NOT checked" in lines[-1]
        assert "cannot serve a photo on a public URL" in lines[-1]


def test_without_gcloud_the_live_build_check_is_skipped_and_says_so(
    deployed_repo, grade_submission, monkeypatch
):
    repo, _ = deployed_repo
    dead = f"http://127.0.0.1:{procs.free_port()}"
    url_map = {entry["service_url"]: dead for entry in recorded(repo).values()}
    monkeypatch.setenv("PATH", "/nonexistent")
    grading = grade_submission(repo, live=True, url_map=url_map)
    builds = result(grading, "Q1.11")
    assert builds.passed
    assert builds.output.count("not checked: gcloud is not on PATH") == 4
    assert not result(grading, "Q3.9").passed  # the services were checked, and are down
