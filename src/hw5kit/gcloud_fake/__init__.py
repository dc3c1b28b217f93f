"""A fake ``gcloud`` for tests and for grading: the only stand-in the project allows.

It records every call (``calls.jsonl``), keeps a project's state across calls in a state
directory (builds, images in Artifact Registry, Cloud Run services, enabled APIs), answers
like gcloud 528 (UUID build IDs, ``https://<service>-<hash>-uc.a.run.app`` URLs,
``--format='value(status.url)'``), and refuses every command and flag outside an explicit
allow-list (``spec.py``), with a message on stderr and a non-zero exit.

Use from Python::

    fake = FakeGcloud(tmp / "gcloud-state")
    fake.add_project("hw5-123456789")            # APIs enabled, repository hw5-images that
                                                  # the course's test autograder can read
    fake.add_project("hw5-1", apis=(), repositories=())   # a fresh project (nothing set up)
    bin_dir = fake.install(tmp / "bin")           # bin_dir/gcloud; put bin_dir first on PATH
    ... run scripts ...
    fake.calls("run deploy")                      # what they asked for

or from a shell: ``python -m hw5kit.gcloud_fake install BIN_DIR --state DIR --project P``.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import paths
from .cli import STATE_ENV
from .state import COURSE_AUTOGRADER, COURSE_TEST_AUTOGRADER, GATEWAY_APIS, HW5_APIS, Store

PACKAGE_PARENT = paths.PACKAGE.parent  # the folder holding hw5kit/ (src/ in a checkout)

__all__ = [
    "COURSE_AUTOGRADER",
    "COURSE_TEST_AUTOGRADER",
    "GATEWAY_APIS",
    "HW5_APIS",
    "READER_ROLE",
    "FakeGcloud",
    "write_executable",
]

READER_ROLE = "roles/artifactregistry.reader"


def write_executable(bin_dir: Path, state_dir: Path, python: str = sys.executable) -> Path:
    """Write ``bin_dir/gcloud``: a shell script that runs the fake on ``state_dir``.

    The script names the interpreter, the package and the state directory by absolute path,
    so it works under a scrubbed environment; ``-I`` keeps the caller's directory and
    PYTHON* variables from changing what it imports."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "gcloud"
    bootstrap = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from hw5kit.gcloud_fake.cli import main; sys.exit(main())"
    )
    path.write_text(
        "#!/bin/sh\n"
        "# fake gcloud (hw5kit.gcloud_fake): records calls, refuses what the kit does not use\n"
        f"{STATE_ENV}={shlex.quote(str(Path(state_dir).resolve()))}\n"
        f"export {STATE_ENV}\n"
        f"exec {shlex.quote(python)} -I -c {shlex.quote(bootstrap)} "
        f'{shlex.quote(str(PACKAGE_PARENT))} "$@"\n'
    )
    path.chmod(0o755)
    return path


class FakeGcloud:
    """A state directory plus helpers to seed it and read what happened."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.store = Store(self.state_dir)
        self.bin_dir: Path | None = None

    def install(self, bin_dir: Path, python: str = sys.executable) -> Path:
        """Write the ``gcloud`` executable into ``bin_dir`` and return ``bin_dir``."""
        write_executable(bin_dir, self.state_dir, python)
        self.bin_dir = Path(bin_dir)
        return self.bin_dir

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: os.environ) with the fake's folder first on PATH."""
        if self.bin_dir is None:
            raise RuntimeError("call install() first")
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    # -- seeding -- #
    def add_project(
        self,
        project_id: str,
        *,
        apis: Iterable[str] = HW5_APIS,
        repositories: Iterable[tuple[str, ...]] = (("us-central1", "hw5-images"),),
        readers: Iterable[str] = (COURSE_TEST_AUTOGRADER,),
        billing: bool = True,
        lifecycle_state: str = "ACTIVE",
        set_default: bool = True,
        default_grants: bool = True,
        domain_restricted_sharing: bool = False,
    ) -> None:
        """Seed a project. The defaults make it ready for HW5 (what `nox -s setup` provisions):
        the three APIs enabled, the Docker repository ``us-central1/hw5-images``, and
        ``roles/artifactregistry.reader`` on it for each service account in ``readers``.
        A repository is ``(location, name)`` or ``(location, name, format)`` (``"python"``,
        ...). ``billing=False``: no billing account, so enabling a billed API fails as on
        Google. ``lifecycle_state``: ``ACTIVE`` or ``DELETE_REQUESTED``.

        Organization policies (iam.py): ``default_grants=False`` (the policy
        ``iam.automaticIamGrantsForDefaultServiceAccounts``): Cloud Build's service account, the
        Compute Engine default one, has no role, so builds fail until it is granted
        roles/storage.objectViewer, roles/logging.logWriter and roles/artifactregistry.writer;
        ``domain_restricted_sharing=True`` (``iam.allowedPolicyMemberDomains``): no policy may
        name allUsers, so ``run deploy --allow-unauthenticated`` only warns."""
        from . import iam
        from .commands import artifacts, common

        readers = list(readers)
        with self.store.locked() as state:
            project = common.ensure_project(state, project_id)
            project["apis"] = sorted(set(project["apis"]) | set(apis))
            project["billing"] = billing
            project["lifecycleState"] = lifecycle_state
            project["domain_restricted_sharing"] = domain_restricted_sharing
            if not default_grants:
                compute = f"serviceAccount:{iam.compute_account(project['number'])}"
                policy = iam.project_policy(project)
                for binding in policy["bindings"]:
                    if compute in binding["members"]:
                        binding["members"].remove(compute)
                policy["bindings"] = [b for b in policy["bindings"] if b["members"]]
            for location, name, *fmt in repositories:
                key = f"{location}/{name}"
                project["repositories"].setdefault(
                    key,
                    artifacts.repository_resource(
                        project_id, location, name, repository_format=(fmt or ["docker"])[0]
                    ),
                )
                policy = artifacts.repository_policy(project, key)
                for email in readers:
                    iam.add_binding(policy, READER_ROLE, f"serviceAccount:{email}")
            for email in readers:
                if email not in state["service_accounts"]:
                    state["service_accounts"].append(email)
            if set_default:
                state["config"]["core/project"] = project_id

    def add_service_account(self, email: str) -> None:
        """Make ``email`` a service account that exists (IAM bindings to it succeed)."""
        with self.store.locked() as state:
            if email not in state["service_accounts"]:
                state["service_accounts"].append(email)

    def set_property(self, name: str, value: str | None) -> None:
        """``gcloud config set NAME VALUE`` (``None``: unset), e.g. ``"core/project"``."""
        with self.store.locked() as state:
            if value is None:
                state["config"].pop(name, None)
            else:
                state["config"][name] = value

    def configure(self, **settings: Any) -> None:
        """Change behaviour, e.g. ``require_built_images=False`` (deploy any image). The failure
        modes of the real cloud (issue 19):

        * ``config_dir_crash=True``: gcloud invocations sharing a configuration directory
          (``CLOUDSDK_CONFIG``) at the same time crash with ``database is locked``
          (concurrency.py); ``call_seconds=0.5`` makes every invocation last that long.
        * ``crash_after_created=N``: the next N ``builds submit`` die after printing
          ``Created [.../builds/ID]``; the builds go on.
        * ``build_seconds=S``: a build takes S seconds (``builds describe`` shows it WORKING,
          a submit without ``--async`` streams that long).
        * ``slow={"run deploy": S, "api-gateway gateways create": S, ...}``: a command takes
          S seconds more (``run deploy`` waiting for its revision, a gateway being created).
        """
        with self.store.locked() as state:
            state["settings"].update(settings)

    # -- reading -- #
    def state(self) -> dict[str, Any]:
        return self.store.read()

    def calls(self, command: str | None = None) -> list[dict[str, Any]]:
        """Logged calls (all, or those of one command such as ``"run deploy"``)."""
        calls = self.store.calls()
        return [c for c in calls if command is None or c.get("command") == command]

    def project(self, project_id: str) -> dict[str, Any]:
        return self.state()["projects"][project_id]

    def readers(self, project_id: str, location: str, repository: str) -> list[str]:
        """The members holding ``roles/artifactregistry.reader`` on a repository."""
        policy = self.project(project_id).get("repository_iam", {}).get(f"{location}/{repository}")
        for binding in (policy or {}).get("bindings", []):
            if binding["role"] == READER_ROLE:
                return list(binding["members"])
        return []
