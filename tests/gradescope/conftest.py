"""Fixtures of the Gradescope bundle's tests: the bundle built once per session from this
checkout (its wheels collected by pip, as `nox -s gradescope` does), a Gradescope-like
autograder folder, and grading a folder the way `nox -s grade` does."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hw5kit.gradescope import bundle as bundle_mod
from hw5kit.gradescope import local

from ..support import submissions


@pytest.fixture(scope="session")
def bundle_zip(tmp_path_factory) -> Path:
    """autograder.zip built from this checkout (about 30 s: pip collects the wheels)."""
    out = tmp_path_factory.mktemp("bundle") / "autograder.zip"
    bundle_mod.build(out)
    return out


@pytest.fixture(scope="session")
def bundle_dir(bundle_zip, tmp_path_factory) -> Path:
    return bundle_mod.extract(bundle_zip, tmp_path_factory.mktemp("bundle-source"))


def grade_directly(
    folder: Path, out: Path, *, meta: dict | None, sandbox: str, tmp: Path, extra=()
) -> dict:
    """``python -m hw5kit.grading FOLDER --gradescope-metadata META --out OUT`` (what `nox -s
    grade` runs), with the bundle's default options."""
    cmd = [sys.executable, "-m", "hw5kit.grading", str(folder), "--out", str(out)]
    if meta is not None:
        meta_path = tmp / "submission_metadata.json"
        meta_path.write_text(json.dumps(meta))
        cmd += ["--gradescope-metadata", str(meta_path)]
    cmd += ["--visibility", "visible", "--timeout", "30", "--sandbox", sandbox, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text())


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SECONDS = re.compile(r"\b(after|in) \d+(\.\d+)? s\b")


def comparable(results: dict, origin: str) -> dict:
    """results.json without what differs between two gradings of the same folder: the time
    taken (in all, by each script), the folder's path, and the build IDs the fake Cloud Build
    gives each grading."""
    text = SECONDS.sub(r"\1 <t> s", UUID.sub("<build id>", json.dumps(results)))
    data = json.loads(text)
    data.pop("execution_time", None)
    lines = []
    for line in data.get("output", "").splitlines():
        if line.startswith("graded in "):
            continue
        lines.append(line.replace(origin, "<submission>"))
    data["output"] = "\n".join(lines)
    return data


META = local.metadata(submissions.STUDENT_ID)


def assert_same_grading(got: dict, direct: dict, origin: str) -> None:
    """Two results.json of the same folder agree (``comparable``); else the differences."""
    a, b = comparable(got, origin), comparable(direct, origin)
    if a == b:
        return
    lines = []
    for key in sorted(set(a) | set(b)):
        if key == "tests":
            continue
        if a.get(key) != b.get(key):
            lines.append(f"{key}: {a.get(key)!r}\n   != {b.get(key)!r}")
    for x, y in zip(a.get("tests", []), b.get("tests", []), strict=False):
        if x != y:
            lines.append(f"test {x.get('number')}: {json.dumps(x)}\n   != {json.dumps(y)}")
    if len(a.get("tests", [])) != len(b.get("tests", [])):
        lines.append("the numbers of tests differ")
    raise AssertionError("the gradings differ:\n" + "\n".join(lines)[:6000])
