"""Calling the real gcloud from the pipeline: what its documentation says it needs and what it
only warns about (issue 19).

* **One configuration directory per concurrent caller.** "Parallel execution of multiple gcloud
  CLI commands is not supported" (https://cloud.google.com/sdk/docs/scripting-gcloud): gcloud
  keeps credentials and caches in SQLite files of its configuration directory, and two
  invocations on one directory can crash with ``database is locked``. ``ConfigDirs`` gives every
  thread of the gcp target a private copy of the user's directory (``CLOUDSDK_CONFIG``,
  https://cloud.google.com/sdk/docs/configurations), in a private temporary folder outside the
  repository (it holds credentials: never inside what ``gcloud builds submit`` uploads), removed
  at the end.
* **Bounded waits with progress.** ``call`` runs one gcloud command, notes every ``heartbeat``
  seconds that it is still waiting, and stops it after ``timeout`` with a message saying what to
  check; ``waits`` reads the bounds (defaults sized for the real cloud; the ``HW5_GCP_*``
  variables below shorten them, for tests against the fake gcloud).
* **Public access.** ``gcloud run deploy --allow-unauthenticated`` only warns (exit 0) when the
  IAM binding is refused (domain-restricted sharing); ``public_problem`` reads the service's IAM
  policy and its Invoker IAM check, and ``public_access_fix`` is the remedy deploy and verify
  print (https://cloud.google.com/run/docs/authenticating/public).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .project import PipelineError, stop_group

CONFIG_ENV = "CLOUDSDK_CONFIG"
INVOKER_ROLE = "roles/run.invoker"
INVOKER_IAM_DISABLED = "run.googleapis.com/invoker-iam-disabled"
PUBLIC_DOC = "https://cloud.google.com/run/docs/authenticating/public"


# --- bounds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Waits:
    """How long the gcp target waits, in seconds (environment variable, default)."""

    build: float  # one Cloud Build, queued to done (cloudbuild.yaml's timeout is 3600 s)
    submit: float  # gcloud builds submit --async: archive, upload, create
    deploy: float  # one deploy script (gcloud run deploy waits for the revision)
    gateway: float  # one api-gateway command (a config or a gateway takes minutes)
    look: float  # one read-only gcloud command
    change: float  # one changing command of setup (enabling APIs takes a minute or two)
    poll: float  # between two looks at a running build
    heartbeat: float  # between two "still waiting" notes


WAIT_VARIABLES = {
    "build": ("HW5_GCP_BUILD_WAIT", 70 * 60),
    "submit": ("HW5_GCP_SUBMIT_WAIT", 15 * 60),
    "deploy": ("HW5_GCP_DEPLOY_WAIT", 20 * 60),
    "gateway": ("HW5_GCP_GATEWAY_WAIT", 30 * 60),
    "look": ("HW5_GCP_LOOK_WAIT", 120),
    "change": ("HW5_GCP_CHANGE_WAIT", 10 * 60),
    "poll": ("HW5_GCP_POLL", 10),
    "heartbeat": ("HW5_GCP_HEARTBEAT", 60),
}


def waits(env: Mapping[str, str]) -> Waits:
    values = {}
    for field, (name, default) in WAIT_VARIABLES.items():
        raw = (env.get(name) or "").strip()
        try:
            value = float(raw) if raw else float(default)
        except ValueError:
            value = -1.0
        if not 0 < value <= 24 * 3600:
            raise PipelineError(f"{name}={raw!r}: expected a number of seconds above 0")
        values[field] = value
    return Waits(**values)


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


# --- configuration directories -------------------------------------------------------------------


def user_config_dir(env: Mapping[str, str]) -> Path:
    """Where gcloud keeps its configuration for this user (CLOUDSDK_CONFIG, else the default)."""
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    if os.name == "nt" and env.get("APPDATA"):
        return Path(env["APPDATA"]) / "gcloud"
    return Path(env.get("HOME") or Path.home()) / ".config" / "gcloud"


class ConfigDirs:
    """A private copy of the user's gcloud configuration directory per thread::

    with ConfigDirs(env) as dirs:
        subprocess.run(["gcloud", ...], env=dirs.env())  # in any thread
    """

    def __init__(self, env: Mapping[str, str]):
        self.base = dict(env)
        self.source = user_config_dir(env)
        self.root: Path | None = None
        self._dirs: dict[int, Path] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> ConfigDirs:
        self.root = Path(tempfile.mkdtemp(prefix="hw5-gcloud-config-"))  # mode 0700
        return self

    def __exit__(self, *exc) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def directory(self) -> Path:
        """The calling thread's copy (made on first use; a thread that starts after another
        ended may get the same identity, and so its copy: never two at once)."""
        if self.root is None:
            raise RuntimeError("ConfigDirs is used outside its with block")
        ident = threading.get_ident()
        with self._lock:
            path = self._dirs.get(ident)
            if path is None:
                path = self.root / f"gcloud-{len(self._dirs) + 1}"
                if self.source.is_dir():
                    # its logs are the one large part and are not needed
                    shutil.copytree(
                        self.source, path, symlinks=True, ignore=shutil.ignore_patterns("logs")
                    )
                else:
                    path.mkdir()
                self._dirs[ident] = path
        return path

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(self.base if base is None else base)
        env[CONFIG_ENV] = str(self.directory())
        return env


# --- one bounded gcloud call ---------------------------------------------------------------------


class GcloudTimeout(PipelineError):
    """A gcloud command did not finish in time (it was stopped; what it started goes on)."""


def call(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float,
    heartbeat: float,
    log: Callable[[str], None],
    prefix: str,
    check_hint: str,
) -> subprocess.CompletedProcess:
    """Run one gcloud command, stdout and stderr apart; a note every ``heartbeat`` seconds; after
    ``timeout`` it is stopped and ``GcloudTimeout`` says what to check (``check_hint``)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        while True:
            left = timeout - (time.monotonic() - start)
            try:
                out, err = proc.communicate(timeout=max(0.05, min(heartbeat, left)))
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - start
                if elapsed >= timeout:
                    stop_group(proc)
                    proc.communicate()
                    raise GcloudTimeout(
                        f"`{shlex.join(argv)}` did not finish within {minutes(timeout)}; it was "
                        f"stopped (what it started goes on in the cloud). Check {check_hint}"
                    ) from None
                log(f"{prefix} still waiting for `{' '.join(argv[:4])} ...` ({minutes(elapsed)})")
    finally:
        stop_group(proc)
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


# --- public access -----------------------------------------------------------------------------


def public_access_fix(service: str, region: str, project: str) -> str:
    """The remedy when Cloud Run refuses public access (deploy stops with it, verify prints it
    on a 403)."""
    return (
        f"Cloud Run service {service} is not public: its IAM policy does not let allUsers invoke "
        "it, so the frontends, the gateway and the autograder get 403. `gcloud run deploy "
        "--allow-unauthenticated` only warns when the binding is refused, which an "
        "organization policy does (domain-restricted sharing, common on university accounts). "
        "Make it public without that binding by turning its Invoker IAM check off "
        f"({PUBLIC_DOC}):\n"
        f"  gcloud run services update {service} --region={region} --project={project} "
        "--no-invoker-iam-check\n"
        "then run `nox -s deploy -- --target gcp` again (a redeploy keeps the setting), or let "
        "deploy do that for every service it deploys: `nox -s deploy -- --target gcp "
        "--no-invoker-iam-check`. If your account may not do that either, use a project outside "
        "the organization."
    )


def is_public(policy: dict | None, service: dict | None) -> bool:
    """allUsers holds roles/run.invoker (without a condition), or the Invoker IAM check is off."""
    annotations = ((service or {}).get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(INVOKER_IAM_DISABLED, "")).lower() == "true":
        return True
    return any(
        b.get("role") == INVOKER_ROLE
        and "allUsers" in b.get("members", [])
        and not b.get("condition")
        for b in (policy or {}).get("bindings", [])
    )


def parse_json(text: str) -> dict | None:
    with contextlib.suppress(ValueError):
        value = json.loads(text or "null")
        return value if isinstance(value, dict) else None
    return None
