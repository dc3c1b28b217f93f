"""``python -m hw5kit.gcloud_fake``: install the fake gcloud, seed a project, show calls.

``seed`` sets up the scenarios the set-up tests need, e.g. a fresh project (``--fresh``: no API
enabled, no repository), a ready one minus one piece (``--without-api run.googleapis.com``,
``--without-repository``, ``--without-reader``), or one without billing (``--no-billing``);
``--api-gateway`` also enables the APIs v3's API Gateway needs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import FakeGcloud
from .state import COURSE_TEST_AUTOGRADER, GATEWAY_APIS, HW5_APIS

DEFAULT_REPOSITORIES = (("us-central1", "hw5-images"),)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hw5kit.gcloud_fake", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser("install", help="write BIN_DIR/gcloud (put BIN_DIR first on PATH)")
    install.add_argument("bin_dir", type=Path)
    install.add_argument("--state", type=Path, required=True, help="the state directory")
    install.add_argument(
        "--project",
        action="append",
        default=[],
        help="seed a ready project (HW5 APIs enabled, repository us-central1/hw5-images); "
        "the first becomes the configured project",
    )
    install.add_argument(
        "--api-gateway",
        action="store_true",
        help="the seeded projects also have the API Gateway APIs enabled (what setup enables "
        "when deployment.yaml has v3 services)",
    )
    install.add_argument(
        "--any-image",
        action="store_true",
        help="let run deploy accept images no fake build pushed",
    )
    seed = sub.add_parser(
        "seed",
        help="add a project to the state: ready for HW5 by default, or with pieces missing",
        description="Add PROJECT to the fake's state. By default it is ready for HW5 (what "
        "`nox -s setup` provisions): the three APIs enabled, the Docker repository "
        "us-central1/hw5-images, and roles/artifactregistry.reader on it for the course's "
        "test autograder. The options take pieces away.",
    )
    seed.add_argument("project", help="the project ID, e.g. hw5-123456789")
    seed.add_argument("--state", type=Path, required=True, help="the state directory")
    seed.add_argument(
        "--fresh", action="store_true", help="a new project: no API enabled, no repository"
    )
    seed.add_argument(
        "--without-api",
        action="append",
        default=[],
        choices=(*HW5_APIS, *GATEWAY_APIS),
        metavar="API",
        help="leave this API disabled (repeatable; one of "
        f"{', '.join((*HW5_APIS, *GATEWAY_APIS))})",
    )
    seed.add_argument(
        "--api-gateway",
        action="store_true",
        help=f"also enable the API Gateway APIs ({', '.join(GATEWAY_APIS)}), as setup does "
        "when deployment.yaml has v3 services",
    )
    seed.add_argument("--without-repository", action="store_true", help="no repository")
    seed.add_argument(
        "--without-reader",
        action="store_true",
        help="no roles/artifactregistry.reader binding for the autograder",
    )
    seed.add_argument(
        "--reader",
        action="append",
        default=[],
        metavar="EMAIL",
        help="the service account(s) given read access (default: the course's test account)",
    )
    seed.add_argument(
        "--no-billing", action="store_true", help="no billing account linked to the project"
    )
    seed.add_argument(
        "--no-default-grants",
        action="store_true",
        help="organization policy iam.automaticIamGrantsForDefaultServiceAccounts: Cloud "
        "Build's service account (the Compute Engine default one) has no role",
    )
    seed.add_argument(
        "--domain-restricted-sharing",
        action="store_true",
        help="organization policy iam.allowedPolicyMemberDomains: no IAM policy may name "
        "allUsers (run deploy --allow-unauthenticated only warns)",
    )
    seed.add_argument(
        "--no-set-default",
        action="store_true",
        help="do not make it the configured project (gcloud config set project)",
    )
    configure = sub.add_parser(
        "configure",
        help="change the fake's behaviour, e.g. a failure mode of the real cloud",
        description="Set fake settings (FakeGcloud.configure): config_dir_crash=true "
        "call_seconds=0.5 (gcloud invocations sharing a configuration directory crash with "
        "'database is locked'), crash_after_created=N (the next N builds submit die after "
        "printing their build ID), build_seconds=S (builds take S seconds), "
        "slow='{\"run deploy\": 30}' (a command takes longer), require_built_images=false. "
        "Values are JSON (true, 3, 0.5, {...}); anything else is a string.",
    )
    configure.add_argument("--state", type=Path, required=True)
    configure.add_argument("settings", nargs="+", metavar="KEY=VALUE")
    calls = sub.add_parser("calls", help="print the logged calls as JSON lines")
    calls.add_argument("--state", type=Path, required=True)
    calls.add_argument("--command", help='only this command, e.g. "run deploy"')
    args = parser.parse_args(argv)
    fake = FakeGcloud(args.state)
    if args.command == "install":
        fake.install(args.bin_dir)
        for index, project in enumerate(args.project):
            apis = (*HW5_APIS, *GATEWAY_APIS) if args.api_gateway else HW5_APIS
            fake.add_project(project, apis=apis, set_default=index == 0)
        if args.any_image:
            fake.configure(require_built_images=False)
        print(args.bin_dir / "gcloud")
        return 0
    if args.command == "seed":
        fresh = args.fresh
        apis = (*HW5_APIS, *GATEWAY_APIS) if args.api_gateway else HW5_APIS
        fake.add_project(
            args.project,
            apis=() if fresh else [a for a in apis if a not in args.without_api],
            repositories=() if fresh or args.without_repository else DEFAULT_REPOSITORIES,
            readers=() if args.without_reader else (args.reader or [COURSE_TEST_AUTOGRADER]),
            billing=not args.no_billing,
            set_default=not args.no_set_default,
            default_grants=not args.no_default_grants,
            domain_restricted_sharing=args.domain_restricted_sharing,
        )
        print(f"seeded {args.project} in {args.state}")
        return 0
    if args.command == "configure":
        settings = {}
        for item in args.settings:
            key, eq, raw = item.partition("=")
            if not eq or not key:
                parser.error(f"expected KEY=VALUE, got {item!r}")
            try:
                settings[key] = json.loads(raw)
            except ValueError:
                settings[key] = raw
        fake.configure(**settings)
        print(f"configured {', '.join(settings)} in {args.state}")
        return 0
    for call in fake.calls(args.command):
        sys.stdout.write(json.dumps(call, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
