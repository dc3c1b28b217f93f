"""python -m hw5kit.gradescope COMMAND: the autograder as course staff install it on Gradescope.

build   write autograder.zip (what `nox -s gradescope` runs)
try     grade a submission with the bundle in a container, as Gradescope would
check   check a results.json against Gradescope's documented format
run     grade /autograder/submission (what the bundle's run_autograder runs)
doctor  check an installation (what the bundle's setup.sh runs last)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

from .. import __version__
from . import config as config_mod
from .runner import AUTOGRADER


def _build(args: argparse.Namespace) -> int:
    from .bundle import BundleError, build

    try:
        bundle = build(args.out, config_path=args.config, wheels_dir=args.wheels)
    except BundleError as exc:
        print(f"gradescope build: {exc}", file=sys.stderr)
        return 2
    print(
        f"\n{bundle.path.resolve()} is ready: {bundle.size / 2**20:.1f} MiB. Upload it on "
        "Gradescope (the assignment's Configure Autograder page, Ubuntu 22.04 base image); "
        "docs/ta/gradescope.md (the docs' 'On Gradescope' page) says how."
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from .results import load_checked

    status = 0
    for path in args.results:
        try:
            data = load_checked(path)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            status = 1
            continue
        print(
            f"{path}: follows Gradescope's format (score {data.get('score')}, "
            f"{len(data.get('tests') or [])} tests)"
        )
    return status


def _run(args: argparse.Namespace) -> int:
    from .runner import run

    return run(args.config, root=args.root)


def _doctor(args: argparse.Namespace) -> int:
    from ..grading import bwrap as bwrap_cmd
    from ..grading.limits import SandboxUnavailable
    from ..grading.sandbox import Sandbox

    try:
        config = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        print(f"doctor: {exc}", file=sys.stderr)
        return 1
    print(f"doctor: hw5kit {__version__}, Python {platform.python_version()} ({sys.executable})")
    print(f"doctor: config {args.config or config_mod.DEFAULT}: {config}")
    bwrap = shutil.which("bwrap")
    found = f"{bwrap} ({bwrap_cmd.version(bwrap)})" if bwrap else "NOT installed"
    print(f"doctor: bubblewrap {found}; uid {os.geteuid()}")
    try:
        box = Sandbox.detect(config.sandbox)
        print(f"doctor: the scripts' sandbox here and now: {box.mode} ({box.describe()})")
    except SandboxUnavailable as exc:
        # at image build time the namespaces may differ from grading time: say it, go on
        print(f"doctor: no sandbox here and now ({exc}); grading will say so if it persists")
    return 0


def _try(args: argparse.Namespace) -> int:
    from ..containers.engine import ContainerError, detect
    from . import local

    if not args.bundle.is_file():
        print(f"gradescope try: {args.bundle}: no bundle (run nox -s gradescope)", file=sys.stderr)
        return 2
    try:
        engine = detect()
        image = local.image_for(engine, args.bundle, args.base)
        print(
            f"image {image.ref} ({image.flavor}; {'built' if image.built else 'reused'} in "
            f"{image.seconds:.0f} s)"
        )
        meta = None if args.no_metadata else local.metadata(args.sid)
        run = local.run_submission(
            engine,
            image.ref,
            args.submission,
            meta,
            userns=not args.no_userns,
            config=args.config,
        )
    except ContainerError as exc:
        print(f"gradescope try: {exc}", file=sys.stderr)
        return 2
    print(run.stdout.rstrip())
    if run.results is None:
        print(f"gradescope try: {run.problem}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(run.results, indent=2) + "\n")
    print(
        f"\nrun_autograder: exit {run.status}, {run.seconds:.1f} s ({run.total_seconds:.1f} s "
        f"with the container); results in {args.out}"
    )
    if run.source_changed or run.leftovers:
        print(
            f"WARNING: the bundle's files changed or processes were left running: {run.leftovers}",
            file=sys.stderr,
        )
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hw5kit.gradescope",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write autograder.zip")
    b.add_argument(
        "--out",
        type=Path,
        default=Path("autograder.zip"),
        help="where the bundle goes (default %(default)s)",
    )
    b.add_argument(
        "--config",
        type=Path,
        help=f"the staff options (default {config_mod.DEFAULT.name}, commented)",
    )
    b.add_argument(
        "--wheels", type=Path, help="reuse the wheels in this folder instead of collecting them"
    )
    b.set_defaults(func=_build)
    t = sub.add_parser("try", help="grade a submission with the bundle in a container")
    t.add_argument("submission", type=Path)
    t.add_argument("--bundle", type=Path, default=Path("autograder.zip"))
    t.add_argument("--sid", help="the student ID Gradescope's metadata gives (default: none)")
    t.add_argument("--no-metadata", action="store_true", help="no submission_metadata.json")
    t.add_argument("--base", choices=("auto", "ubuntu-22.04", "debian-12"), default="auto")
    t.add_argument(
        "--no-userns",
        action="store_true",
        help="refuse user namespaces in the container (the grader's fallback sandbox)",
    )
    t.add_argument("--config", type=Path, help="another autograder.yaml for this run")
    t.add_argument("--out", type=Path, default=Path("results.json"))
    t.set_defaults(func=_try)
    c = sub.add_parser("check", help="check results.json files against Gradescope's format")
    c.add_argument("results", nargs="+", type=Path)
    c.set_defaults(func=_check)
    r = sub.add_parser("run", help="grade /autograder/submission (run_autograder)")
    r.add_argument("--config", type=Path)
    r.add_argument("--root", type=Path, default=AUTOGRADER)
    r.set_defaults(func=_run)
    d = sub.add_parser("doctor", help="check the installation and the config (setup.sh)")
    d.add_argument("--config", type=Path)
    d.set_defaults(func=_doctor)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
