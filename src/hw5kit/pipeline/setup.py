"""``setup``: provision the Google Cloud project the assignment needs (its steps 1 to 5), from
``deployment.yaml``, idempotently.

1. Look (read-only): the project ``hw5-<student_id>`` exists and is active, which project
   gcloud is set to, which APIs are enabled, whether the repository exists (and holds Docker
   images), and whether the autograder's service account can read it. While Artifact Registry
   is disabled the repository cannot be looked at: then it is looked at right after enabling.
2. Change only what is missing, each command printed before it runs:
   ``gcloud config set project``, ``gcloud services enable`` (the missing APIs of
   artifactregistry, run, cloudbuild; when the config has v3 services also those API Gateway
   needs: apigateway, servicemanagement, servicecontrol, and apikeys with ``gateway.api_key``),
   ``gcloud artifacts repositories create`` (Docker, in the
   region) and ``gcloud artifacts repositories add-iam-policy-binding`` (the autograder gets
   ``roles/artifactregistry.reader``), and the roles Cloud Build's service account lacks.

Cloud Build's identity: in projects created since mid-2024 builds run as the Compute Engine
default service account, which an organization policy (typical of university accounts) may
leave without any role; builds then fail fetching their source, writing their log or pushing
their images (https://cloud.google.com/build/docs/cloud-build-service-account-updates). Setup
asks which account builds run as (``gcloud builds get-default-service-account``), reads the
project's and the repository's IAM policies, and grants only the minimal roles still missing:
``roles/storage.objectViewer`` and ``roles/logging.logWriter`` on the project
(``gcloud projects add-iam-policy-binding ... --condition=None``) and
``roles/artifactregistry.writer`` on the repository alone.
3. Run ``setup/check_prereq.sh`` (the course's checks plus the autograder's read access; with
   ``--api-gateway`` when the config has v3 services).

A second run finds everything in place, changes nothing and says so. A failed command stops
the run; what succeeded stays done, and the next run goes on from there.

``--dry-run`` runs no gcloud command at all, not even the read-only ones: it prints the
commands a project where nothing is set up yet gets. ``--plan`` runs only the read-only
commands and prints the changes this project needs, without making them.

The project itself is not created (the assignment's step 1 is done once, by hand, in the
console, with the course's credits as its billing account).
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Sequence

from .deployment import COURSE_AUTOGRADER, DEFAULT_AUTOGRADER
from .gcloud import minutes, waits
from .project import PipelineError, Project, run_script
from .setup_plan import (
    APIS,
    BUILD_ACCOUNT_PLACEHOLDER,
    BUILD_NEEDS,
    GATEWAY_APIS,
    READER_ROLE,
    State,
    Step,
    build_account,
    can_read,
    configured_project,
    describe_project,
    describe_repository,
    grant_build_role,
    list_enabled,
    missing_build_roles,
    plan,
    project_policy,
    repository_policy,
    required_apis,
)
from .targets.gcp import GCLOUD_MISSING

PREREQ_SCRIPT = "setup/check_prereq.sh"


def prereq_command(project: Project) -> list[str]:
    """``setup/check_prereq.sh`` with everything ``setup`` provisions, from the config."""
    cfg = project.config
    return [
        "bash",
        str(project.root / PREREQ_SCRIPT),
        "--student-id",
        cfg.student_id,
        "--region",
        cfg.region,
        "--repository",
        cfg.repository,
        "--autograder-service-account",
        cfg.autograder_service_account,
        *(["--api-gateway"] if cfg.gateway is not None else []),
    ]


# --- running -------------------------------------------------------------------------------


class Setup:
    def __init__(self, project: Project):
        self.project = project
        self.config = project.config
        self.log = project.log
        self._count = 0
        self.waits = waits(project.env)

    def _check_target(self) -> None:
        if self.project.target != "gcp":
            raise PipelineError(
                f"setup provisions Google Cloud (the gcp target), but the target is "
                f"{self.project.target!r} ({self.config.source}: target): set `target: gcp` "
                "in deployment.yaml, or run `nox -s setup -- --target gcp`. The local and "
                "container targets need no set-up."
            )

    def _header(self) -> None:
        cfg = self.config
        self.log(
            f"setup: project {cfg.project_id}, region {cfg.region}, repository "
            f"{cfg.repository}, autograder {cfg.autograder_service_account}"
        )

    # -- dry run -- #
    def dry_run(self) -> int:
        self._check_target()
        self._header()
        self.log(
            "setup --dry-run: runs no gcloud command, not even the read-only checks. A project "
            "where nothing is set up yet gets these commands:"
        )
        for step in plan(self.config, State.fresh()):
            self.log(f"  {step.shell}")
        self.log(
            "and, only for the roles Cloud Build's service account lacks (projects whose "
            "organization turns off the default service accounts' automatic roles; a real "
            "run asks `gcloud builds get-default-service-account` which account that is):"
        )
        for scope, role, why, _covering in BUILD_NEEDS:
            step = grant_build_role(self.config, BUILD_ACCOUNT_PLACEHOLDER, scope, role, why)
            self.log(f"  if missing: {step.shell}  # to {why}")
        self.log(f"then the prerequisite check:\n  {shlex.join(self._prereq_display())}")
        self.log(
            "A real run first looks at the project with read-only gcloud commands and runs only "
            "the commands still needed; `nox -s setup -- --plan` shows which, changing nothing."
        )
        return 0

    def _prereq_display(self) -> list[str]:
        cmd = prereq_command(self.project)
        return [PREREQ_SCRIPT, *cmd[2:]]

    # -- looking -- #
    def _look(self, argv: Sequence[str]) -> subprocess.CompletedProcess:
        self.log(f"  $ {shlex.join(argv)}")
        try:
            return subprocess.run(
                list(argv),
                env=dict(self.project.env),
                cwd=self.project.root,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=self.waits.look,
            )
        except subprocess.TimeoutExpired:
            raise PipelineError(
                f"`{shlex.join(argv)}` did not answer within {minutes(self.waits.look)}: check "
                "your network and `gcloud auth list`, then run `nox -s setup` again"
            ) from None

    def _failed(self, argv: Sequence[str], done: subprocess.CompletedProcess, fix: str) -> str:
        said = done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}"
        return f"`{shlex.join(argv)}` failed:\n{_indent(said)}\n{fix}"

    def look(self) -> State:
        """Ask gcloud, read-only, what is already in place."""
        cfg = self.config
        if self.project.which("gcloud") is None:
            raise PipelineError(GCLOUD_MISSING)
        self.log("setup: looking at the project (read-only):")
        state = State()
        argv = describe_project(cfg)
        done = self._look(argv)
        if done.returncode != 0:
            raise PipelineError(
                self._failed(
                    argv,
                    done,
                    f"The project {cfg.project_id} does not exist or your account cannot see "
                    "it. Create it (step 1 of the assignment: project name and ID both "
                    f"{cfg.project_id}, https://console.cloud.google.com/projectcreate), link "
                    "the course's billing account to it, check `gcloud auth list` shows your "
                    "account, and check student_id in deployment.yaml; then run `nox -s setup` "
                    "again.",
                )
            )
        lifecycle = done.stdout.strip()
        if lifecycle != "ACTIVE":
            raise PipelineError(
                f"the project {cfg.project_id} is {lifecycle or 'in an unknown state'}, not "
                "ACTIVE: restore it (https://console.cloud.google.com/cloud-resource-manager) "
                "or create a new one, then run `nox -s setup` again"
            )
        done = self._look(configured_project())
        state.configured_project = done.stdout.strip() or None
        argv = list_enabled(cfg)
        done = self._look(argv)
        if done.returncode != 0:
            raise PipelineError(
                self._failed(argv, done, "Fix the problem above, then run `nox -s setup` again.")
            )
        state.enabled = set(done.stdout.split())
        if "artifactregistry.googleapis.com" in state.enabled:
            self._look_at_repository(state)
        if "cloudbuild.googleapis.com" in state.enabled:
            self._look_at_builds(state)
        return state

    def _look_json(self, argv: Sequence[str]) -> dict:
        done = self._look(argv)
        if done.returncode != 0:
            raise PipelineError(
                self._failed(argv, done, "Fix the problem above, then run `nox -s setup` again.")
            )
        try:
            value = json.loads(done.stdout or "{}")
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise PipelineError(
                f"`{shlex.join(argv)}` did not print a JSON policy:\n{_indent(done.stdout)}"
            )
        return value

    def _look_at_builds(self, state: State) -> None:
        """Which service account Cloud Build runs builds as, and the project's IAM policy."""
        argv = build_account(self.config)
        done = self._look(argv)
        if done.returncode != 0:
            raise PipelineError(
                self._failed(
                    argv,
                    done,
                    "Setup asks gcloud which service account Cloud Build runs builds as: update "
                    "the Google Cloud CLI (`gcloud components update`) if it does not know this "
                    "command, fix the problem above, then run `nox -s setup` again.",
                )
            )
        state.build_known = True
        state.build_account = done.stdout.strip().rpartition("/")[2] or None
        if state.build_account:
            state.project_policy = self._look_json(project_policy(self.config))

    def _look_at_repository(self, state: State) -> None:
        cfg = self.config
        argv = describe_repository(cfg)
        done = self._look(argv)
        state.repository_known = True
        if done.returncode != 0:
            if "NOT_FOUND" not in done.stderr:
                raise PipelineError(
                    self._failed(
                        argv, done, "Fix the problem above, then run `nox -s setup` again."
                    )
                )
            state.repository_format = None
            state.can_read = None
            return
        state.repository_format = done.stdout.strip() or "UNKNOWN"
        self._require_docker(state.repository_format)
        policy = self._look_json(repository_policy(cfg))
        state.repository_policy = policy
        state.can_read = can_read(policy, cfg.autograder_service_account)

    def _require_docker(self, repository_format: str) -> None:
        if repository_format == "DOCKER":
            return
        cfg = self.config
        raise PipelineError(
            f"the repository {cfg.repository} in {cfg.region} already exists but holds "
            f"{repository_format} packages, not Docker images, and a repository's format cannot "
            f"change. Either delete it (`gcloud artifacts repositories delete {cfg.repository} "
            f"--location={cfg.region} --project={cfg.project_id}`, which deletes what it "
            "holds) or set another `repository:` in deployment.yaml and run `nox -s render`; "
            "then run `nox -s setup` again."
        )

    def _report(self, state: State) -> None:
        cfg = self.config
        wanted = required_apis(cfg)
        missing = [a for a in wanted if a not in state.enabled]
        apis = f"APIs enabled: {len(wanted) - len(missing)} of {len(wanted)}"
        if missing:
            apis += f" (missing: {', '.join(missing)})"
        self.log(f"  gcloud's project: {state.configured_project or '(unset)'}; {apis}")
        if not state.repository_known:
            self.log("  repository: not looked at (Artifact Registry is not enabled yet)")
        elif state.repository_format is None:
            self.log(f"  repository {cfg.repo_uri}: missing")
        else:
            reads = "can" if state.can_read else "cannot"
            self.log(
                f"  repository {cfg.repo_uri}: exists ({state.repository_format}); the "
                f"autograder {reads} read it"
            )
        if not state.build_known:
            self.log("  Cloud Build's service account: not looked at (Cloud Build is not enabled)")
        elif not state.build_account:
            self.log("  Cloud Build has no default service account in this project")
        else:
            missing = missing_build_roles(state)
            needs = (
                "lacks " + ", ".join(f"{role} (to {why})" for _scope, role, why in missing)
                if missing
                else "can read the uploaded source, write logs and push images"
            )
            self.log(f"  Cloud Build runs builds as {state.build_account}: it {needs}")

    # -- changing -- #
    def _change(self, step: Step) -> None:
        cfg = self.config
        self._count += 1
        self.log(f"setup: {step.what}:\n  $ {step.shell}")
        slug = "-".join(step.argv[1:4]).replace("/", "_")
        log_path = self.project.state_dir / "logs" / f"setup-{self._count}-{slug}.log"
        result = run_script(
            step.argv,
            cwd=self.project.root,
            env=self.project.env,
            log_path=log_path,
            prefix="   ",
            log=self.log,
            verbose=True,
            timeout=self.waits.change,
        )
        if result.code == 0:
            return
        fix = "Fix the problem above, then run `nox -s setup` again (what succeeded stays done)."
        if result.timed_out:
            fix = (
                f"It did not finish within {minutes(self.waits.change)} and was stopped (Google "
                "may still complete it). Check your network and `gcloud auth list`, look at "
                f"the project with `nox -s setup -- --plan`, then run `nox -s setup` again."
            )
        elif "Billing account for project" in result.output:
            fix = (
                f"The project {cfg.project_id} has no billing account: link the course's billing "
                "account (redeem the credits at https://console.cloud.google.com/education, "
                "then https://console.cloud.google.com/billing/linkedaccount?project="
                f"{cfg.project_id}), then run `nox -s setup` again."
            )
        elif "Service account" in result.output and "does not exist" in result.output:
            fix = (
                f"Check autograder_service_account in {cfg.source} (the course's test account "
                f"{DEFAULT_AUTOGRADER} or its production one {COURSE_AUTOGRADER}), then run "
                "`nox -s setup` again."
            )
        raise PipelineError(
            f"`{step.shell}` failed (exit status {result.code}; log: {result.log_path}).\n{fix}"
        )

    def check(self) -> int:
        self.log(f"setup: the prerequisite check:\n  $ {shlex.join(self._prereq_display())}")
        done = subprocess.run(
            prereq_command(self.project),
            cwd=self.project.root,
            env=dict(self.project.env),
            stdin=subprocess.DEVNULL,
        )
        return done.returncode

    def plan_only(self) -> int:
        self._check_target()
        self._header()
        state = self.look()
        self._report(state)
        steps = plan(self.config, state)
        if not steps:
            self.log("setup --plan: nothing to change; the project is set up")
            return 0
        self.log(f"setup --plan: {len(steps)} command(s) to run (none was run):")
        for step in steps:
            self.log(f"  {step.shell}")
        if not state.repository_known:
            self.log(
                "  (the repository cannot be looked at before Artifact Registry is enabled: a "
                "real run looks at it then, and creates it and grants access only if needed)"
            )
        if not state.build_known:
            self.log(
                "  (Cloud Build's service account cannot be looked at before Cloud Build is "
                "enabled: a real run looks at it then, and grants only the roles it lacks)"
            )
        return 0

    def run(self) -> int:
        self._check_target()
        self._header()
        state = self.look()
        self._report(state)
        steps = plan(self.config, state)
        made = 0
        later = ("repository", "reader", "builder")
        if steps:
            upto = "" if state.repository_known and state.build_known else "up to "
            self.log(f"setup: {upto}{len(steps)} change(s) to make")
            for step in steps:
                if step.kind in later:
                    break
                self._change(step)
                made += 1
            if not state.repository_known:
                # Artifact Registry was off, so the repository could not be looked at before
                self.log("setup: Artifact Registry is on; looking at the repository (read-only):")
                self._look_at_repository(state)
            if not state.build_known:
                self.log("setup: Cloud Build is on; looking at its service account (read-only):")
                self._look_at_builds(state)
            for step in plan(self.config, state):
                if step.kind in later:
                    self._change(step)
                    made += 1
        if made:
            self.log(f"setup: done: {made} change(s) made")
        else:
            self.log(
                f"setup: nothing to change: gcloud is set to {self.config.project_id}, the "
                f"{len(required_apis(self.config))} APIs are enabled, {self.config.repo_uri} "
                "exists, the autograder can read it and Cloud Build's service account has "
                "the roles its builds need"
            )
        code = self.check()
        if code != 0:
            self.log("setup: the prerequisite check failed (see above)")
            return 1
        self.log(
            f"setup: {self.config.project_id} is ready for `nox -s build` and `nox -s deploy` "
            "on the gcp target"
        )
        return 0


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.rstrip().splitlines())


def main_run(project: Project, *, dry_run: bool = False, plan_only: bool = False) -> int:
    setup = Setup(project)
    if dry_run:
        return setup.dry_run()
    if plan_only:
        return setup.plan_only()
    return setup.run()


__all__ = [
    "APIS",
    "GATEWAY_APIS",
    "READER_ROLE",
    "Setup",
    "State",
    "Step",
    "main_run",
    "plan",
    "prereq_command",
    "required_apis",
]
