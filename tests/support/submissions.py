"""Materializing the grader's test submissions (tests/fixtures/submissions/).

``good/`` is a complete course-style submission whose build IDs and URLs are placeholders
(``@BUILD_ID:backend_v1@``, ``@URL:backend_v1@``), filled here: fresh UUIDs for build IDs (so
nothing invented is committed) and, for URLs, the URL the fake gcloud gives the student's
service, so that a frontend's hard-coded SERVING_URL, deliverables.yaml and the grader's fake
deployment agree, as they would on Google Cloud. ``corpus.yaml`` lists the broken variants.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import yaml

from hw5kit import naming
from hw5kit.gcloud_fake.commands.run import service_url
from hw5kit.gcloud_fake.state import project_number

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "submissions"
GOOD = FIXTURES / "good"
COURSE_TEMPLATE = FIXTURES / "course_template"
STUDENT_ID = "20261234"
PROJECT = f"hw5-{STUDENT_ID}"
APPS = ("backend_v1", "frontend_v1", "backend_v2", "frontend_v2")


def corpus() -> dict[str, dict]:
    return yaml.safe_load((FIXTURES / "corpus.yaml").read_text())


def fake_url(app: str, project: str = PROJECT) -> str:
    """The URL the fake gcloud gives ``app``'s Cloud Run service (good/ names it app-vN)."""
    return service_url(project, project_number(project), "us-central1", app.replace("_", "-"))


OTHER_PROJECT = "hw5-20269999"


def placeholders() -> dict[str, str]:
    """Fresh build IDs, and each service's URLs: ``@URL:app@`` (what the fake's deploy
    gives), and for the URL-form variants the deterministic form (``@DETERMINISTIC_URL:app@``),
    the hash form in another region (``@URL_US_EAST1:app@``) and both forms in another
    project (``@URL_OTHER_PROJECT:app@``, ``@DETERMINISTIC_URL_OTHER_PROJECT:app@``)."""
    values = {f"@BUILD_ID:{app}@": str(uuid.uuid4()) for app in APPS}
    values.update({f"@URL:{app}@": fake_url(app) for app in APPS})
    for app in APPS:
        name = app.replace("_", "-")
        values[f"@DETERMINISTIC_URL:{app}@"] = str(
            naming.deterministic_url(name, project_number(PROJECT), "us-central1")
        )
        values[f"@URL_US_EAST1:{app}@"] = str(
            naming.hash_url(name, naming.project_hash(PROJECT), "us-east1")
        )
        values[f"@URL_OTHER_PROJECT:{app}@"] = fake_url(app, OTHER_PROJECT)
        values[f"@DETERMINISTIC_URL_OTHER_PROJECT:{app}@"] = str(
            naming.deterministic_url(name, project_number(OTHER_PROJECT), "us-central1")
        )
    return values


def fill(root: Path, values: dict[str, str]) -> None:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                text = path.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            new = text
            for key, value in values.items():
                new = new.replace(key, value)
            if new != text:
                path.write_text(new)


def materialize(name: str, dest: Path, spec: dict | None = None) -> Path:
    """``good/`` with the corpus entry ``name`` (or ``spec``) applied, in ``dest``."""
    spec = spec if spec is not None else (corpus()[name] if name != "good" else {})
    shutil.copytree(GOOD, dest)
    values = placeholders()
    for rel, pairs in (spec.get("replace") or {}).items():
        path = dest / rel
        text = path.read_text()
        for old, new in pairs:
            assert old in text, f"{name}: {old!r} not found in {rel}"
            text = text.replace(old, new)
        path.write_text(text)
    for rel in spec.get("delete") or []:
        (dest / rel).unlink()
    for source, target in (spec.get("move") or {}).items():
        (dest / target).parent.mkdir(parents=True, exist_ok=True)
        os.replace(dest / source, dest / target)
    for rel, text in (spec.get("write") or {}).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text)
    fill(dest, values)
    for rel in spec.get("crlf") or []:
        path = dest / rel
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    return dest


def tree_digest(root: Path) -> dict[str, bytes]:
    """Every file (and link target) under ``root``: to prove grading changed nothing."""
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = b"-> " + os.readlink(path).encode()
        elif path.is_file():
            out[rel] = path.read_bytes()
    return out
