"""``python -m hw5kit.bench``: run the serving benchmark and write its report.

    python -m hw5kit.bench run            # full run: reports/bench/ and the docs' figures
    python -m hw5kit.bench run --smoke    # reduced run (under a minute), report in a temp dir
    python -m hw5kit.bench run --smoke --peers litserve   # ... with one serving peer
    python -m hw5kit.bench report DIR     # re-render a report from DIR/results.json
    python -m hw5kit.bench quant          # int8 vs fp32: reports/quantization/, docs figures
    python -m hw5kit.bench quant --smoke  # reduced quantization run (about a minute)
    python -m hw5kit.bench hop            # frontend + backend: memory, the extra hop (reports/hop/)

``inprocess``, ``photos`` and ``prepare`` are the pieces a run starts in child processes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import report
from .peers import PEERS
from .run import SUBJECTS, Plan

DEFAULT_OUT = Path("reports") / "bench"
RUN_EXAMPLES = """examples:
  full run (every subject, every peer, reports/bench/ and the docs figures):
    nox -s bench            (python -m hw5kit.bench run)
  only ours against the peers (no reference, no in-process limit, no stress):
    nox -s bench -- --subjects ours --peers --no-v2 --no-first-start --no-stress --no-readme \\
        --out /tmp/peers
  a subset: one model, one mode, two peers, shorter phases:
    nox -s bench -- --subjects ours --peers litserve,kserve --models efficientnet_lite0 \\
        --modes upload --concurrency 1,16 --duration 4 --no-v2 --no-first-start --no-stress \\
        --no-readme --out /tmp/peers-lite0
  the CI smoke (one peer, small counts, no thresholds):
    nox -s bench -- --smoke --peers litserve
TorchServe needs Java: installed from Debian when run as root, else skipped with the reason."""
QUANT_OUT = Path("reports") / "quantization"
QUANT_SMOKE_OUT = Path(tempfile.gettempdir()) / "hw5-quant-smoke"
HOP_OUT = Path("reports") / "hop"
HOP_SMOKE_OUT = Path(tempfile.gettempdir()) / "hw5-hop-smoke"
# the documentation page whose figures a full run rewrites
DEFAULT_PAGE = Path("docs") / "maintainer" / "benchmarks.md"
SMOKE_OUT = Path(tempfile.gettempdir()) / "hw5-bench-smoke"
SMOKE = {
    "models": ["efficientnet_lite0"],
    "concurrency": [1, 4],
    "modes": ["url", "upload"],
    "duration": 0.6,
    "warmup": 0.2,
    "v2": False,
    "first_start": False,
    "stress_concurrency": [16],
    "stress_requests": 2,
    "stress_slow_clients": 16,
    "stress_decodes": 2,
    "peers": [],
}


def _list(kind):
    def parse(text: str):
        items = [part.strip() for part in text.split(",") if part.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        try:
            return [kind(i) for i in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a list of {kind.__name__}: {text!r}") from None

    return parse


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hw5kit.bench",
        description="Serving benchmark: the course's reference backend vs ours vs the "
        "in-process limit, at several concurrencies, with real photos by URL and by upload.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser(
        "run",
        help="run the benchmark and write the report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=RUN_EXAMPLES,
    )
    r.add_argument("--smoke", action="store_true", help="reduced size: lite0, c1 and c4, 0.6 s")
    r.add_argument("--models", type=_list(str), help="default: efficientnet_lite0,resnet50")
    r.add_argument("--concurrency", type=_list(int), help="default: 1,4,16,64")
    r.add_argument("--modes", type=_list(str), help="url, upload or both (default)")
    r.add_argument("--subjects", type=_list(str), help=f"default: {','.join(SUBJECTS)}")
    r.add_argument("--duration", type=_positive(float), help="measured seconds per phase (8)")
    r.add_argument("--warmup", type=float, help="warm-up seconds per phase (1)")
    r.add_argument("--max-requests", type=_positive(int), help="per phase (5000)")
    r.add_argument("--no-v2", dest="v2", action="store_false", default=None)
    r.add_argument("--no-first-start", dest="first_start", action="store_false", default=None)
    r.add_argument(
        "--no-stress",
        dest="stress",
        action="store_false",
        default=True,
        help="leave out the production-defaults measurements under load and attack",
    )
    r.add_argument(
        "--peers",
        nargs="?",
        const="all",
        metavar="LIST",
        help="measure the serving peers beside ours: all (the default of a full run) or a "
        f"comma-separated list of {', '.join(PEERS)}; each runs from its own environment "
        "(.nox/peers/NAME, created on first use)",
    )
    r.add_argument("--no-peers", action="store_true", help="leave the serving peers out")
    r.add_argument(
        "--out", type=Path, help=f"report folder (default: {DEFAULT_OUT}; --smoke: {SMOKE_OUT})"
    )
    r.add_argument(
        "--page",
        "--readme",
        type=Path,
        help=f"docs page whose Performance figures to replace (default: {DEFAULT_PAGE}; "
        "never for --smoke)",
    )
    r.add_argument(
        "--no-page", "--no-readme", action="store_true", help="leave the docs page alone"
    )

    rep = sub.add_parser("report", help="re-render the report of an earlier run")
    rep.add_argument("out", type=Path, help="the folder holding results.json")

    qp = sub.add_parser(
        "quant",
        help="int8 against fp32: size, latency, throughput, agreement; writes the report",
        description="Bake the offline models and their int8 variants (as the image build "
        "does), then measure size on disk, latency and throughput in-process, top-1/top-5 "
        "agreement with fp32 on the labelled photos and on seeded augmented crops, and accuracy "
        "on the labelled photos. Writes results.json and README.md and the docs' "
        "Quantization figures. Needs the labelled photos (the test extra).",
    )
    qp.add_argument("--smoke", action="store_true", help="reduced: lite0, 18 crops, short timing")
    qp.add_argument("--models", type=_list(str), help="fp32 models (default: the three Lite)")
    qp.add_argument("--crops", type=_positive(int), help="augmented crops (default 216)")
    qp.add_argument("--seed", type=int, help="seed of the evaluation crops (default 7)")
    qp.add_argument("--rounds", type=_positive(int), help="interleaved timing rounds (6)")
    qp.add_argument("--load-seconds", type=_positive(float), help="pipeline load per model (3)")
    qp.add_argument("--variants", type=_list(str), help="recipe variants to compare (default: all)")
    qp.add_argument("--no-variants", action="store_true", help="skip the recipe variants")
    qp.add_argument(
        "--torch-home", type=Path, help="bake into (and reuse) this folder instead of a temp one"
    )
    qp.add_argument("--out", type=Path, help=f"default: {QUANT_OUT}; --smoke: {QUANT_SMOKE_OUT}")
    qp.add_argument(
        "--page",
        "--readme",
        type=Path,
        help=f"docs page whose Quantization figures to replace (default: {DEFAULT_PAGE}; never "
        "for --smoke)",
    )
    qp.add_argument(
        "--no-page", "--no-readme", action="store_true", help="leave the docs page alone"
    )

    hp = sub.add_parser(
        "hop",
        help="separate frontend and backend: memory per service, latency of the extra hop",
        description="Start a real backend_v1 (gunicorn) and frontend_v1 (Streamlit) on "
        "127.0.0.1, record each one's resident memory, and time a classification in one "
        "process, directly against the backend, through the frontend's client code, and through "
        "the real page in headless Chromium. Writes results.json and README.md.",
    )
    hp.add_argument("--smoke", action="store_true", help="reduced: 4 rounds, 2 page runs")
    hp.add_argument("--model", help="the backend's model (default efficientnet_lite0)")
    hp.add_argument("--rounds", type=_positive(int), help="timed requests per path and mode (60)")
    hp.add_argument("--page-rounds", type=int, help="timed page runs in the browser (20)")
    hp.add_argument("--no-browser", action="store_true", help="skip the page path")
    hp.add_argument("--out", type=Path, help=f"default: {HOP_OUT}; --smoke: {HOP_SMOKE_OUT}")

    i = sub.add_parser(
        "inprocess", help="(internal) the in-process subject: JSON phases on stdin, results out"
    )
    i.add_argument("--model", required=True)
    i.add_argument("--photos-url", required=True)
    i.add_argument("--photos", type=_list(str), required=True)

    ph = sub.add_parser("photos", help="(internal) serve the labelled photos on loopback")
    ph.add_argument("--dir", type=Path, required=True)

    pr = sub.add_parser("prepare", help="(internal) random-init + bake weights into TORCH_HOME")
    pr.add_argument("--torch-home", type=Path, required=True)
    pr.add_argument("models", nargs="+")
    return p


def plan_from(args) -> Plan:
    values = dict(SMOKE) if args.smoke else {}
    for key in ("models", "concurrency", "modes", "subjects", "duration", "warmup"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.max_requests is not None:
        values["max_requests"] = args.max_requests
    for key in ("v2", "first_start"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if not args.stress:
        values.update(stress_concurrency=[], stress_slow_clients=0, stress_decodes=0)
    if args.peers is not None:
        asked = list(PEERS) if args.peers == "all" else _list(str)(args.peers)
        unknown = [p for p in asked if p not in PEERS]
        if unknown:
            raise SystemExit(f"error: unknown peer {', '.join(unknown)}; known: {', '.join(PEERS)}")
        values["peers"] = list(dict.fromkeys(asked))
    if args.no_peers:
        values["peers"] = []
    plan = Plan(**values)
    bad = [m for m in plan.modes if m not in ("url", "upload")]
    bad += [s for s in plan.subjects if s not in SUBJECTS]
    if bad:
        raise SystemExit(f"error: unknown mode or subject: {', '.join(bad)}")
    if any(c < 1 for c in plan.concurrency):
        raise SystemExit("error: concurrency must be at least 1")
    return plan


def cmd_run(args) -> int:
    from ..serving.errors import ServingError
    from ..serving.models import get_spec
    from .run import run

    plan = plan_from(args)
    for name in plan.models:
        try:
            get_spec(name)
        except ServingError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
    command = "python -m hw5kit.bench " + shlex.join(args.argv)
    start = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", flush=True)

    out = args.out or (SMOKE_OUT if args.smoke else DEFAULT_OUT)
    page = None if args.no_page else args.page or (None if args.smoke else DEFAULT_PAGE)
    results = run(plan, command=command, log=log)
    path = report.write_report(results, out)
    log(f"report written to {path}")
    if page is not None:
        if not page.is_file():
            print(f"warning: {page} not found; its figures not updated", file=sys.stderr)
        elif report.update_page(page, results):
            log(f"updated the Performance figures in {page}")
        else:
            print(
                f"warning: {page} has no {report.BEGIN} ... {report.END} section; not updated",
                file=sys.stderr,
            )
    print()
    print(report.targets_table(report.targets(results)))
    return 0


def quant_plan_from(args):
    from .quant import SMOKE as QUANT_SMOKE
    from .quant import VARIANTS, QuantPlan

    values = dict(QUANT_SMOKE) if args.smoke else {}
    for key in ("models", "crops", "seed", "rounds", "variants"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.load_seconds is not None:
        values["load_seconds"] = args.load_seconds
    if args.no_variants:
        values["variants"] = []
    plan = QuantPlan(**values)
    unknown = [v for v in plan.variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(
            f"error: unknown variant {', '.join(unknown)}; known: {', '.join(VARIANTS)}"
        )
    return plan


def cmd_quant(args) -> int:
    from ..serving.errors import ServingError
    from ..serving.models import INT8_MODELS, get_spec
    from . import quant_report
    from .quant import run as run_quant

    plan = quant_plan_from(args)
    for name in plan.models:
        try:
            spec = get_spec(name)
        except ServingError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
        if spec.quantized_from or f"{name}_int8" not in INT8_MODELS:
            print(
                f"error: {name} is not an fp32 model with an int8 variant; those are "
                f"{', '.join(m.removesuffix('_int8') for m in INT8_MODELS)}",
                file=sys.stderr,
            )
            return 2
    command = "python -m hw5kit.bench " + shlex.join(args.argv)
    start = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", flush=True)

    out = args.out or (QUANT_SMOKE_OUT if args.smoke else QUANT_OUT)
    page = None if args.no_page else args.page or (None if args.smoke else DEFAULT_PAGE)
    results = run_quant(plan, command=command, torch_home=args.torch_home, log=log)
    path = quant_report.write_report(results, out)
    log(f"report written to {path}")
    if page is not None:
        if not page.is_file():
            print(f"warning: {page} not found; its figures not updated", file=sys.stderr)
        elif quant_report.update_page(page, results):
            log(f"updated the Quantization figures in {page}")
        else:
            print(
                f"warning: {page} has no {quant_report.BEGIN} ... {quant_report.END} section; "
                "not updated",
                file=sys.stderr,
            )
    print()
    print(quant_report.speed_table(results))
    print()
    print(quant_report.agreement_table(results))
    return 0


def cmd_hop(args) -> int:
    from ..serving.errors import ServingError
    from ..serving.models import get_spec
    from . import hop, hop_report

    values = dict(hop.SMOKE) if args.smoke else {}
    for key in ("model", "rounds", "page_rounds"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    values["browser"] = not args.no_browser
    try:
        plan = hop.HopPlan(**values)
        get_spec(plan.model)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ServingError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    start = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", flush=True)

    command = "python -m hw5kit.bench " + shlex.join(args.argv)
    results = hop.run(plan, command=command, log=log)
    path = hop_report.write_report(results, args.out or (HOP_SMOKE_OUT if args.smoke else HOP_OUT))
    log(f"report written to {path}")
    if results["meta"]["page_skipped"] and plan.browser:
        print(f"note: page path skipped: {results['meta']['page_skipped']}", file=sys.stderr)
    print()
    print(hop_report.memory_table(results))
    print()
    print(hop_report.hop_table(results))
    return 0


def cmd_photos(args) -> int:
    from ..photos import serve_photos

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with serve_photos(args.dir) as base:
        print(base, flush=True)
        stop.wait()
    return 0


def cmd_prepare(args) -> int:
    from .harness import prepare_weights

    prepare_weights(args.models, args.torch_home, log=lambda m: print(m, flush=True))
    return 0


def _terminated(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.argv = argv
    if args.command in ("run", "quant", "hop"):
        # SIGTERM (a CI's timeout, kill, a stopped nox) ends the run as Ctrl-C does: through its
        # finally blocks, which stop every server it started; without this they outlive it
        signal.signal(signal.SIGTERM, _terminated)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "report":
        results = json.loads((args.out / "results.json").read_text())
        print(report.write_report(results, args.out))
        return 0
    if args.command == "quant":
        return cmd_quant(args)
    if args.command == "hop":
        return cmd_hop(args)
    if args.command == "inprocess":
        from .inprocess import main as inprocess_main

        return inprocess_main(args)
    if args.command == "photos":
        return cmd_photos(args)
    return cmd_prepare(args)


if __name__ == "__main__":
    raise SystemExit(main())
