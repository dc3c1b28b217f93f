"""``python -m hw5kit.pipeline COMMAND``: what the nox sessions render, build, deploy, verify,
stop, status, check_prereq and setup run.

Every command takes ``--target local|container|gcp`` (default: ``target`` in
deployment.yaml), ``--root DIR`` (the repository, default: this checkout) and ``--config FILE``
(default: ROOT/deployment.yaml). Exit status: 0 success, 1 a step failed, 2 bad input
(config, arguments); verify: 3 a partial deployment (what is deployed passes, some services are
not deployed).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from .. import photos
from . import render, targets
from . import setup as setup_mod
from . import verify as verify_mod
from .config import ConfigError
from .deliverables import DeliverablesError
from .project import PipelineError, Project
from .verify import DEFAULT_PHOTO, Verifier


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _only(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--only",
        type=_names,
        default=[],
        metavar="SERVICE[,SERVICE...]",
        help="only these services, e.g. backend_v1,frontend_v1 (the same for build, deploy and "
        "verify, so `nox -s build deploy verify -- --only ...` works)",
    )


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--target",
        choices=("local", "container", "gcp"),
        help="where to run (default: target in deployment.yaml)",
    )
    common.add_argument("--root", type=Path, help="the repository (default: this checkout)")
    common.add_argument("--config", type=Path, help="the config (default: ROOT/deployment.yaml)")
    return common


def parser() -> argparse.ArgumentParser:
    common = _common()
    top = argparse.ArgumentParser(
        prog="python -m hw5kit.pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "render",
        parents=[common],
        help="write deployment/ (Cloud Build YAML, submit and deploy scripts) from the config",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; fail (with a diff) if deployment/ differs from a fresh render",
    )
    for name, text in (
        (
            "build",
            "build the images (container: with docker or podman/buildah; gcp: Cloud Build) or "
            "the local environment and weights",
        ),
        (
            "deploy",
            "deploy the built services (local: processes on 127.0.0.1; container: containers "
            "with no network, published on 127.0.0.1; gcp: Cloud Run)",
        ),
    ):
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        p.add_argument("services", nargs="*", help="only these services (default: all)")
        _only(p)
        p.add_argument("-v", "--verbose", action="store_true", help="show every line of output")
        if name == "deploy":
            p.add_argument(
                "--no-invoker-iam-check",
                action="store_true",
                help="gcp: when an organization policy refuses allUsers (so "
                "--allow-unauthenticated only warns), make each such service public by turning "
                "its Invoker IAM check off (gcloud run services update --no-invoker-iam-check)",
            )
    p = sub.add_parser(
        "verify",
        parents=[common],
        help="check the deliverables file, then the live services",
        description=verify_mod.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--deliverables", type=Path, help="check this file instead of the target's")
    _only(p)
    p.add_argument("--skip-http", action="store_true", help="no HTTP requests to the services")
    p.add_argument(
        "--skip-gcloud", action="store_true", help="gcp: no Cloud Build / Cloud Run checks"
    )
    p.add_argument(
        "--photo",
        default=DEFAULT_PHOTO,
        choices=photos.CORE_PHOTOS,
        help=f"the photo to classify (default: {DEFAULT_PHOTO})",
    )
    sub.add_parser(
        "stop", parents=[common], help="local, container: stop the services deploy started"
    )
    sub.add_parser("status", parents=[common], help="show what is deployed")
    sub.add_parser(
        "check-prereq",
        parents=[common],
        help="run setup/check_prereq.sh with the student ID, region, repository and "
        "autograder account from the config (and --api-gateway when it has v3 services)",
    )
    p = sub.add_parser(
        "setup",
        parents=[common],
        help="gcp: set up the Google Cloud project (gcloud project, APIs, repository, the "
        "autograder's read access), only what is missing; then the prerequisite check",
        description=setup_mod.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--dry-run",
        action="store_true",
        help="run no gcloud command at all (not even read-only ones): print the commands a "
        "project where nothing is set up yet gets",
    )
    how.add_argument(
        "--plan",
        action="store_true",
        help="run only the read-only gcloud commands and print the changes this project needs, "
        "without making them",
    )
    return top


def run(args: argparse.Namespace) -> int:
    project = Project.load(args.root, args.config, args.target)
    if args.command == "render":
        files = project.rendered()
        if args.check:
            problems = render.differences(project.root, files)
            for path, detail in problems:
                print(f"{path}: {detail}" if "\n" not in detail else detail, end="\n")
            if problems:
                print("render: deployment/ is out of date: run `nox -s render` and commit it")
                return 1
            print(f"render: deployment/ matches {project.config.source} ({len(files)} files)")
            return 0
        changed = render.write(project.root, files)
        for path in changed:
            print(f"wrote {path}")
        print(f"render: {len(changed)} of {len(files)} files changed")
        return 0
    if args.command == "verify":
        return Verifier(
            project,
            deliverables_path=args.deliverables,
            http=not args.skip_http,
            gcloud=not args.skip_gcloud,
            photo=args.photo,
            only=args.only,
        ).run()
    if args.command == "check-prereq":
        cmd = setup_mod.prereq_command(project)
        return subprocess.run(cmd, cwd=project.root, env=dict(project.env)).returncode
    if args.command == "setup":
        return setup_mod.main_run(project, dry_run=args.dry_run, plan_only=args.plan)
    target = targets.get(project)
    if args.command in ("build", "deploy"):
        names = [*args.services, *args.only]
        for name in names:
            if not project.config.group(name):  # a service, or v3's backend_v3 group
                project.config.service(name)  # an unknown name is bad input (exit 2)
        if args.command == "build":
            return target.build(names, verbose=args.verbose)
        if args.no_invoker_iam_check:
            if "invoker_iam_check" not in target.deploy_options:
                print("error: --no-invoker-iam-check is for the gcp target", file=sys.stderr)
                return 2
            return target.deploy(names, verbose=args.verbose, invoker_iam_check=False)
        return target.deploy(names, verbose=args.verbose)
    if args.command == "stop":
        return target.stop()
    return target.status()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (PipelineError, DeliverablesError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
