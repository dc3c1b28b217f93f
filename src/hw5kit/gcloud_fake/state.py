"""The fake gcloud's persistent state: one JSON file in a state directory, plus the call log.

Every invocation holds an exclusive lock on ``state.lock`` while it reads, changes and writes
``state.json``, so concurrent calls (parallel builds) see each other's effects as a real
project would. ``calls.jsonl`` gets one JSON line per invocation.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
CALLS_FILE = "calls.jsonl"

# The APIs the HW5 assignment enables (step 2 of the assignment).
HW5_APIS = ("artifactregistry.googleapis.com", "cloudbuild.googleapis.com", "run.googleapis.com")
# The APIs Google API Gateway needs (v3; https://cloud.google.com/api-gateway/docs/
# configure-dev-env): `nox -s setup` enables them when the config has v3 services.
GATEWAY_APIS = (
    "apigateway.googleapis.com",
    "servicemanagement.googleapis.com",
    "servicecontrol.googleapis.com",
)
API_TITLES = {
    "artifactregistry.googleapis.com": "Artifact Registry API",
    "cloudbuild.googleapis.com": "Cloud Build API",
    "run.googleapis.com": "Cloud Run Admin API",
    "apigateway.googleapis.com": "API Gateway API",
    "servicemanagement.googleapis.com": "Service Management API",
    "servicecontrol.googleapis.com": "Service Control API",
    "iam.googleapis.com": "Identity and Access Management (IAM) API",
    "compute.googleapis.com": "Compute Engine API",
    "storage.googleapis.com": "Cloud Storage API",
    "logging.googleapis.com": "Cloud Logging API",
    "cloudresourcemanager.googleapis.com": "Cloud Resource Manager API",
    "serviceusage.googleapis.com": "Service Usage API",
    "apikeys.googleapis.com": "API Keys API",
    "secretmanager.googleapis.com": "Secret Manager API",
}
# APIs Google refuses to enable on a project without a billing account (FAILED_PRECONDITION).
BILLED_APIS = frozenset(
    {
        "artifactregistry.googleapis.com",
        "cloudbuild.googleapis.com",
        "run.googleapis.com",
        "apigateway.googleapis.com",
        "compute.googleapis.com",
    }
)
# The autograder service accounts the course names: its test account (the default in
# deployment.yaml) and the production one. They exist, so IAM bindings to them succeed;
# a binding to any other account succeeds only after ``FakeGcloud.add_service_account``.
COURSE_TEST_AUTOGRADER = "ift6758-ta-hw5-gcp-autograder@hw5-12345.iam.gserviceaccount.com"
COURSE_AUTOGRADER = "ta-autograder@ift6758-hw5-gcp-24.iam.gserviceaccount.com"


def now() -> str:
    """RFC 3339 with microseconds, as Google APIs print times."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def project_number(project_id: str) -> str:
    """A stable 12-digit project number for a project ID."""
    digest = int(hashlib.sha256(project_id.encode()).hexdigest(), 16)
    return str(100000000000 + digest % 900000000000)


def empty_state() -> dict[str, Any]:
    return {
        "config": {},
        "projects": {},
        "settings": {"require_built_images": True},
        "service_accounts": [COURSE_TEST_AUTOGRADER, COURSE_AUTOGRADER],
    }


def new_project(project_id: str) -> dict[str, Any]:
    return {
        "number": project_number(project_id),
        "apis": [],
        "repositories": {},  # "<location>/<name>" -> repository resource
        "images": {},  # "<host>/<project>/<repo>/<image>" -> {"tags": {tag: digest}, ...}
        "builds": {},  # build id -> build resource
        "run": {},  # "<region>/<service>" -> Knative service resource
        "lifecycleState": "ACTIVE",
        "createTime": now(),
        "billing": True,  # a billing account is linked (needed to enable BILLED_APIS)
        "repository_iam": {},  # "<location>/<name>" -> IAM policy {bindings, etag, version}
    }


class Store:
    """The state directory. Use ``with store.locked() as state:`` to read and change it."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    @property
    def state_path(self) -> Path:
        return self.directory / STATE_FILE

    @property
    def calls_path(self) -> Path:
        return self.directory / CALLS_FILE

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """The state, exclusively; written back when the block ends without an exception."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / LOCK_FILE, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self.read()
                yield state
                self._write(state)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return empty_state()
        base = empty_state()
        base.update(state)
        return base

    def _write(self, state: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".state.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh, indent=1, sort_keys=True)
        os.replace(tmp, self.state_path)

    def log_call(self, record: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True) + "\n"
        with open(self.calls_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(line)
            fcntl.flock(fh, fcntl.LOCK_UN)

    def calls(self) -> list[dict[str, Any]]:
        if not self.calls_path.exists():
            return []
        return [json.loads(line) for line in self.calls_path.read_text().splitlines() if line]
