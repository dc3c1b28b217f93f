"""deliverables.yaml: its JSON Schema, precise errors for bad files, atomic rewrites."""

import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from hw5kit.pipeline import deliverables

from ..conftest import ROOT

BUILD = "0b5c2e4a-91d3-4f6e-8a7b-2c3d4e5f6a7b"
URL = "https://backendv1-qveyax4pnp-uc.a.run.app"


def filled(url: str = URL, build: str = BUILD) -> dict:
    data = deliverables.empty()
    for version in data["services"].values():
        for entry in version.values():
            entry.update(build_id=build, service_url=url)
    return data


def test_the_schema_is_valid_json_schema_and_accepts_filled_files():
    schema = json.loads(deliverables.SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert deliverables.problems(filled()) == []
    assert deliverables.problems(filled("http://127.0.0.1:8123"), "local") == []
    assert (
        deliverables.problems(filled("https://frontendv2-123456789012.us-central1.run.app")) == []
    )


def test_the_committed_file_is_the_course_template_and_round_trips_byte_for_byte():
    text = (ROOT / "deliverables.yaml").read_text()
    data = yaml.safe_load(text)
    assert deliverables.dump(data) == text
    problems = deliverables.problems(data)
    assert [p.where for p in problems] == [
        f"services.{v}.{part}.{field}"
        for v in ("v1", "v2")
        for part in ("back_end", "front_end")
        for field in ("build_id", "service_url")
    ]
    assert all(p.kind == "empty" for p in problems)
    assert "run `nox -s build -- --target gcp`" in problems[0].fix


@pytest.mark.parametrize(
    ("mutate", "where", "message"),
    [
        (lambda d: d["services"].pop("v2"), "services.v2", "missing"),
        (lambda d: d["services"]["v1"].pop("front_end"), "services.v1.front_end", "missing"),
        (
            lambda d: d["services"]["v1"]["back_end"].pop("build_id"),
            "services.v1.back_end.build_id",
            "missing",
        ),
        (lambda d: d["services"].update(v9={}), "services", "unknown key(s) v9"),
        (
            lambda d: d["services"]["v1"].update(back_end="x"),
            "services.v1.back_end",
            "expected a mapping, found str",
        ),
        (
            lambda d: d["services"]["v1"]["back_end"].update(build_id="12345"),
            "services.v1.back_end.build_id",
            "'12345' is not a build ID",
        ),
        (
            lambda d: d["services"]["v2"]["front_end"].update(service_url="frontendv2.run.app"),
            "services.v2.front_end.service_url",
            "is not a service URL",
        ),
        (
            lambda d: d["services"]["v2"]["front_end"].update(service_url="http://127.0.0.1:80"),
            "services.v2.front_end.service_url",
            "is a local address",
        ),
        (
            lambda d: d["services"]["v1"]["front_end"].update(service_url=None),
            "services.v1.front_end.service_url",
            "empty",
        ),
    ],
)
def test_each_defect_names_the_entry_and_says_what_to_do(mutate, where, message):
    data = filled()
    mutate(data)
    problems = deliverables.problems(data)
    assert len(problems) == 1, problems
    assert problems[0].where == where
    assert message in problems[0].message
    assert problems[0].fix


def test_a_corrupted_file_gives_the_line_and_how_to_restore_it(tmp_path):
    path = tmp_path / "deliverables.yaml"
    path.write_text("services:\n  v1:\n    back_end: {build_id: [\n")
    with pytest.raises(deliverables.DeliverablesError) as info:
        deliverables.read(path)
    message = str(info.value)
    assert "deliverables.yaml (line 4, column 1): not valid YAML" in message
    assert "git checkout deliverables.yaml" in message
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(deliverables.DeliverablesError, match="not a text file"):
        deliverables.read(path)


def test_update_merges_and_keeps_the_course_layout(tmp_path):
    path = tmp_path / "deliverables.yaml"
    path.write_text((ROOT / "deliverables.yaml").read_text())
    deliverables.update(path, {("v1", "back_end"): {"build_id": BUILD}})
    deliverables.update(path, {("v1", "back_end"): {"service_url": URL}})
    text = path.read_text()
    assert f"      build_id: {BUILD}\n      service_url: {URL}\n" in text
    assert "build_id: # Paste the build ID of the Cloud Build for front end V1" in text
    assert deliverables.entry(yaml.safe_load(text), "v1", "back_end") == {
        "build_id": BUILD,
        "service_url": URL,
    }


def test_update_refuses_to_overwrite_a_file_someone_broke(tmp_path):
    path = tmp_path / "deliverables.yaml"
    path.write_text("services:\n  v1: [my notes]\n")
    with pytest.raises(deliverables.DeliverablesError, match="left untouched"):
        deliverables.update(path, {("v1", "back_end"): {"build_id": BUILD}})
    assert path.read_text() == "services:\n  v1: [my notes]\n"


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "deliverables.yaml"
    deliverables.update(path, {("v1", "back_end"): {"build_id": BUILD}})
    before = path.read_text()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        deliverables.update(path, {("v2", "back_end"): {"build_id": BUILD}})
    assert path.read_text() == before
    assert [p.name for p in Path(tmp_path).iterdir()] == ["deliverables.yaml"]


def test_odd_values_are_quoted_so_they_read_back_unchanged(tmp_path):
    path = tmp_path / "d.yaml"
    odd = "12345678-1234-1234-1234-123456789012 # not a comment"
    deliverables.update(path, {("v1", "back_end"): {"build_id": odd, "service_url": "yes"}})
    entry = deliverables.entry(yaml.safe_load(path.read_text()), "v1", "back_end")
    assert entry == {"build_id": odd, "service_url": "yes"}
