"""v2's session key: one ``SECRET_KEY`` for every instance of a v2 backend and across restarts.

The v2 backend keeps each caller's model choice in a cookie signed with ``SECRET_KEY``. A key
picked at random per process (the backend's fallback) drops every session at a restart, and
two instances would refuse each other's cookies. So each target keeps one key:

* local and container: made once, kept in ``.hw5/<target>/session.key`` (mode 0600,
  git-ignored), given to the backends' processes or containers as ``SECRET_KEY``;
* gcp: a Secret Manager secret, ``hw5-session-key``, made once by ``nox -s deploy`` (the API
  enabled if needed, 32 random bytes as its first version, read access for the Cloud Run
  runtime service account), which ``deploy_backend_v2.sh`` passes with
  ``--set-secrets=SECRET_KEY=hw5-session-key:latest``: the value never appears in a script, a
  command line or the service's configuration.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from ... import naming
from ..context import SESSION_SECRET as SECRET_NAME
from ..deployment import Service
from ..project import PipelineError, Project

KEY_FILE = "session.key"
API = "secretmanager.googleapis.com"
ACCESSOR = "roles/secretmanager.secretAccessor"


def needs_session_key(service: Service) -> bool:
    """Backends get the key (v2 signs its session cookie with it; the others ignore it)."""
    return service.kind == "backend"


_KEY_LOCK = threading.Lock()  # services deploy in parallel threads: one key for all of them


def local_key(state_dir: Path) -> str:
    """The key of a local or container deployment, made once in ``state_dir/session.key``
    (exclusively: a second process that races this one reads the first one's key)."""
    path = state_dir / KEY_FILE
    with _KEY_LOCK:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_hex(32) + "\n")
        return path.read_text().strip()


class CloudSessionSecret:
    """Makes sure ``hw5-session-key`` exists in Secret Manager and that Cloud Run's runtime
    service account may read it; at most once per deploy run."""

    def __init__(
        self,
        project: Project,
        name: str = SECRET_NAME,
        env: Callable[[], dict[str, str]] | None = None,
    ):
        self.project = project
        self.name = name
        self.env = env or (lambda: dict(self.project.env))
        self._lock = threading.Lock()
        self._done = False

    def _gcloud(self, *args: str, data: str | None = None) -> subprocess.CompletedProcess:
        argv = ["gcloud", *args, f"--project={self.project.config.project_id}"]
        self.project.log(f"[session key] {subprocess.list2cmdline(argv)}")
        return subprocess.run(
            argv,
            env=self.env(),
            cwd=self.project.root,
            capture_output=True,
            text=True,
            input=data,
            timeout=120,
        )

    def _fail(self, what: str, done: subprocess.CompletedProcess) -> PipelineError:
        said = (done.stderr or done.stdout).strip()[-600:]
        return PipelineError(
            f"v2's session key: {what} failed: {said}\n(the v2 backend signs its session "
            f"cookies with the Secret Manager secret {self.name}; fix the problem above and "
            "deploy again)"
        )

    def ensure(self) -> None:
        with self._lock:
            if self._done:
                return
            done = self._gcloud("secrets", "describe", self.name, "--format=value(name)")
            if done.returncode != 0 and API in done.stderr:  # the API is not enabled yet
                enabled = self._gcloud("services", "enable", API)
                if enabled.returncode != 0:
                    raise self._fail(f"enabling {API}", enabled)
                done = self._gcloud("secrets", "describe", self.name, "--format=value(name)")
            if done.returncode != 0:
                if "NOT_FOUND" not in done.stderr:
                    raise self._fail(f"looking up the secret {self.name}", done)
                made = self._gcloud(
                    "secrets",
                    "create",
                    self.name,
                    "--replication-policy=automatic",
                    "--data-file=-",
                    data=secrets.token_hex(32),
                )
                if made.returncode != 0:
                    raise self._fail(f"creating the secret {self.name}", made)
            number = self._gcloud(
                "projects", "describe", self.project.config.project_id,
                "--format=value(projectNumber)",
            )  # fmt: skip
            if number.returncode != 0 or not number.stdout.strip():
                raise self._fail("reading the project number", number)
            account = naming.compute_service_account(number.stdout.strip())
            granted = self._gcloud(
                "secrets",
                "add-iam-policy-binding",
                self.name,
                f"--member=serviceAccount:{account}",
                f"--role={ACCESSOR}",
                "--format=json",
            )
            if granted.returncode != 0:
                raise self._fail(f"letting {account} read {self.name}", granted)
            self._done = True
