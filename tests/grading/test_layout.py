"""The older layouts of the course, read with a note (hw5kit.grading.layout)."""

from __future__ import annotations

from hw5kit.grading import layout
from hw5kit.grading.submission import Snapshot
from hw5kit.pipeline import deliverables as dl

URL = "https://backend-v1-abcdefghij-uc.a.run.app"


def test_bare_urls_are_read_as_service_urls_with_no_build_ids():
    data = {
        "services": {
            "v1": {"back_end": URL, "front_end": URL.replace("backend", "frontend")},
            "v2": {"back_end": {"build_id": None, "service_url": None}, "front_end": None},
        }
    }
    out, notes = layout.normalize_deliverables(data)
    assert out["services"]["v1"]["back_end"] == {"build_id": None, "service_url": URL}
    assert "bare URL" in notes[0] and "services.v1.back_end" in notes[0]
    wheres = {p.where: p.kind for p in dl.problems(out)}
    assert "services.v1.back_end.build_id" in wheres  # no build ID to read
    assert "services.v1.back_end.service_url" not in wheres  # the URL is read


def test_flat_keys_per_service_are_read_too():
    out, notes = layout.normalize_deliverables({"backend_v1": URL, "frontend_v2": URL})
    assert out == {
        "services": {
            "v1": {"back_end": {"build_id": None, "service_url": URL}},
            "v2": {"front_end": {"build_id": None, "service_url": URL}},
        }
    }
    assert "backend_v1" in notes[0]


def test_the_course_layout_is_left_alone():
    data = dl.empty()
    assert layout.normalize_deliverables(data) == (data, [])
    assert layout.normalize_deliverables("text") == ("text", [])


def test_per_service_files_are_each_found_with_a_note(tmp_path):
    root = tmp_path / "sub"
    (root / "deployment").mkdir(parents=True)
    for app in ("backend_v1", "frontend_v1"):
        (root / f"cloudbuild_{app}.yaml").write_text("steps: []\n")
        (root / "deployment" / f"submit_{app}.sh").write_text("#!/bin/bash\n")
    (root / "deliverables.yaml").write_text("steps: []\n")  # never taken for a Cloud Build file
    snap = Snapshot.take(root, tmp_path / "snap")
    configs, notes = layout.locate_configs(snap)
    assert configs == ["cloudbuild_backend_v1.yaml", "cloudbuild_frontend_v1.yaml"]
    assert "one per service" in notes[0]
    submits, notes = layout.locate_submits(snap)
    assert submits == ["deployment/submit_backend_v1.sh", "deployment/submit_frontend_v1.sh"]
    assert "one per service" in notes[0]
    assert layout.app_named_in("cloudbuild-frontend-v1.yaml", ["backend_v1", "frontend_v1"]) == (
        "frontend_v1"
    )
