"""``python -m hw5kit.gcloud_fake``: install the fake gcloud, seed a project, show calls."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import FakeGcloud
from .state import HW5_APIS


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
        "--any-image",
        action="store_true",
        help="let run deploy accept images no fake build pushed",
    )
    calls = sub.add_parser("calls", help="print the logged calls as JSON lines")
    calls.add_argument("--state", type=Path, required=True)
    calls.add_argument("--command", help='only this command, e.g. "run deploy"')
    args = parser.parse_args(argv)
    fake = FakeGcloud(args.state)
    if args.command == "install":
        fake.install(args.bin_dir)
        for index, project in enumerate(args.project):
            fake.add_project(project, apis=HW5_APIS, set_default=index == 0)
        if args.any_image:
            fake.configure(require_built_images=False)
        print(args.bin_dir / "gcloud")
        return 0
    for call in fake.calls(args.command):
        sys.stdout.write(json.dumps(call, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
