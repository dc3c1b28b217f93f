"""python -m hw5kit.grading SUBMISSION_DIR [SUBMISSION_DIR ...] [--live] [--out results.json]

Grade HW5 submissions against the rubric and write Gradescope's results.json. The
submission's scripts run in a sandbox (bubblewrap when available) against a fake gcloud; nothing
is sent to Google Cloud unless --live is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from .. import naming
from . import cloud, report
from .grader import Options, grade
from .limits import Limits, SandboxUnavailable
from .sandbox import MODES, Sandbox

EPILOG = """\
examples:
  python -m hw5kit.grading path/to/submission                 # -> results.json + summary
  python -m hw5kit.grading sub/ --student-id 123456789 --live # also check the deployment
  python -m hw5kit.grading subs/* --out grading-results/      # many: one JSON per folder

On Gradescope (run_autograder):
  python3 -m hw5kit.grading /autograder/submission \\
      --gradescope-metadata /autograder/submission_metadata.json \\
      --out /autograder/results/results.json

Exit status: 0 when every submission was graded (whatever its score), 2 when the grader could
not run (bad arguments, no sandbox available).
"""


def _url_map(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        source, eq, target = value.partition("=")
        if not eq or not source.startswith(("http://", "https://")):
            raise argparse.ArgumentTypeError(
                f"--url-map {value!r}: expected FROM=TO with two URLs "
                "(e.g. https://backendv1-abc-uc.a.run.app=http://127.0.0.1:8000)"
            )
        out[source] = target
    return out


def _metadata_student_id(path: Path) -> str:
    try:
        data = json.loads(path.read_text())
        users = data.get("users") or []
        sid = str(users[0].get("sid") or "").strip()
    except (OSError, ValueError, AttributeError, IndexError) as exc:
        raise SystemExit(
            f"--gradescope-metadata {path}: cannot read the student's sid ({exc})"
        ) from None
    if not sid:
        raise SystemExit(f"--gradescope-metadata {path}: the submitter has no student ID (sid)")
    return sid


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hw5kit.grading",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION_DIR")
    p.add_argument(
        "--out",
        type=Path,
        help="where results.json goes (default ./results.json); with several submissions, a "
        "folder that gets one <name>.json each (default ./grading-results/)",
    )
    p.add_argument(
        "--live",
        action="store_true",
        help="also check the deployment: builds exist (gcloud builds describe, with your "
        "gcloud credentials), backends answer /hello and classify a photo, frontends serve",
    )
    p.add_argument(
        "--student-id",
        help="the student's ID (project hw5-<ID>); default: from the submission's scripts, else "
        "the matricule in the short answers",
    )
    p.add_argument(
        "--gradescope-metadata",
        type=Path,
        metavar="JSON",
        help="Gradescope's submission_metadata.json: the submitter's sid is the student ID",
    )
    p.add_argument(
        "--sandbox",
        choices=("auto", *MODES),
        default="auto",
        help="how the scripts are isolated: bwrap (bubblewrap), user (a uid of its own per "
        "script, needs root), none (as yourself: only for your own submission); auto picks the "
        "first that works",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=Limits.timeout,
        help="seconds each script may run (default %(default)g)",
    )
    p.add_argument(
        "--url-map",
        action="append",
        default=[],
        metavar="FROM=TO",
        help="with --live, send the requests for the recorded URL FROM to TO instead",
    )
    p.add_argument(
        "--photo",
        default="chelsea.png",
        help="the labelled photo --live asks backends to classify (default %(default)s)",
    )
    p.add_argument(
        "--visibility",
        choices=("visible", "hidden", "after_due_date", "after_published"),
        default="visible",
        help="Gradescope visibility of the tests (default %(default)s)",
    )
    p.add_argument("--quiet", action="store_true", help="print one line per submission")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        url_map = _url_map(args.url_map)
    except argparse.ArgumentTypeError as exc:
        p.error(str(exc))
    student_id = args.student_id
    if args.gradescope_metadata:
        student_id = _metadata_student_id(args.gradescope_metadata)
    if student_id is not None:
        problem = naming.student_id_problem(naming.normalize_student_id(student_id))
        if problem:
            p.error(f"--student-id {student_id!r}: expected the ID in hw5-<ID>: {problem}")
    if args.timeout <= 0:
        p.error("--timeout must be positive")
    for path in args.submissions:
        if not path.is_dir():
            p.error(f"{path}: not a folder (give the folder holding the submission)")
    many = len(args.submissions) > 1
    if many and args.student_id:
        p.error("--student-id applies to one submission; grade them one at a time")
    out = args.out or (Path("grading-results") if many else Path("results.json"))
    if many and out.suffix == ".json":
        p.error(f"--out {out}: with several submissions, give a folder")
    limits = replace(Limits(), timeout=args.timeout)
    options = Options(
        live=args.live,
        student_id=student_id,
        sandbox=args.sandbox,
        limits=limits,
        url_map=url_map,
        photo=args.photo,
    )
    try:
        sandbox = Sandbox.detect(args.sandbox, limits)
    except SandboxUnavailable as exc:
        print(f"grading: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    for path in args.submissions:
        grading = grade(path, options, sandbox=sandbox)
        target = out / f"{path.resolve().name}.json" if many else out
        report.write_json(report.results_json(grading, visibility=args.visibility), target)
        rubric = grading.context.rubric
        line = (
            f"{path}: {report.score(grading):g} / {rubric.automatic_points:g} automatic "
            f"(+ {rubric.manual_points:g} graded by hand) in {grading.duration:.1f} s -> {target}"
        )
        if args.quiet or many:
            print(line, flush=True)
        else:
            print(report.summary(grading), flush=True)
            print(f"\nresults: {target}")
    cloud.stop_call_servers()  # reaped: their memory counts in the grader's children
    if many:
        total = time.monotonic() - started
        count = len(args.submissions)
        print(f"graded {count} submissions in {total:.1f} s ({total / count:.2f} s each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
