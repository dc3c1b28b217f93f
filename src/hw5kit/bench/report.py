"""The report of a run: the targets (``targets.py``: met, or missed by how much and why), tables,
PNG charts.

``write_report(results, out)`` writes ``results.json``, ``README.md`` and the charts into
``out``; ``summary_markdown`` is the short table the documentation's Performance page shows
(``docs/maintainer/benchmarks.md``, between the markers ``<!-- bench:begin -->`` and
``<!-- bench:end -->``, replaced by ``update_page``).
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import markdown
from ..markdown import figure
from . import peers_report, procstats
from .charts import charts
from .targets import (
    MiB,
    model_label,
    plan_of,
    record,
    subject_title,
    subjects_of,
    targets,
    tuning,
)

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
NOTES = [
    "- Cold start is process start to the first 200 from `/readyz` (ours) or `/hello` (the "
    "reference has no readiness route; a worker answers once its model is loaded). Ours is "
    "measured with the ONNX exports baked, as the image build makes them; the first start "
    "without them (export at start-up, torch imported) is listed separately.",
    "- The load generator (threads in the driver process) and, for URL requests, the photo "
    "server run on the same cores as the server; the in-process subject pays neither, nor "
    "HTTP. Their CPU per request is in results.json (`client_cpu_seconds`, "
    "`photo_server_cpu_seconds`).",
    "- Ours runs with the production defaults, as its image starts it (no `HW5_*` tuning "
    "variable): predictions past the in-flight limit (4 per CPU) wait in the admission queue "
    "(32 per CPU, 10 s at most) instead of getting a 503, so every concurrency measured here, up "
    'to 64, is served without error. A run with `HW5_*` variables set is labelled tuned ("Our '
    'settings") and never stands for the defaults.',
    "- resnet50 runs with random-init weights (no network here to fetch real ones): its "
    "labels mean nothing, its cost is the real network's.",
    "- On a shared machine every figure is lower and noisier; ratios from the same run still "
    "compare like with like, but a busy machine (load average above the CPU count) makes "
    "CPU-bound subjects look closer together than they are. The lead's reference run is made "
    "on a quiet machine.",
]


def _ratio(a, b) -> float | None:
    return a / b if a and b else None


# ---- markdown ------------------------------------------------------------------------------
def figures_table(results: dict, model: str) -> str:
    plan = plan_of(results)
    lines = [
        "| subject | mode | conc. | throughput (req/s) | p50 ms | p95 ms | p99 ms "
        "| CPU ms/img | vs reference | vs in-process | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in plan["modes"]:
        for subject in subjects_of(results):
            for n in plan["concurrency"]:
                rec = record(results, subject, model, mode, n)
                if rec is None:
                    continue
                ref = record(results, "reference", model, mode, n)
                inp = record(results, "inprocess", model, mode, n)
                vs_ref = _ratio(rec["throughput"], ref and ref["throughput"])
                vs_inp = _ratio(rec["throughput"], inp and inp["throughput"])
                lines.append(
                    f"| {subject_title(subject)} | {mode} | {n} | {figure(rec['throughput'])} "
                    f"| {figure(rec['p50_ms'])} | {figure(rec['p95_ms'])} "
                    f"| {figure(rec['p99_ms'])} "
                    f"| {figure(rec['cpu_ms_per_image'])} | {figure(vs_ref, 2, 'x')} "
                    f"| {figure(vs_inp and vs_inp * 100, 0, '%')} | {rec['errors']} |"
                )
    return "\n".join(lines)


def stress_lines(results: dict) -> list[str]:
    """Issue 16's measurements (production defaults): a table and one line each."""
    stress = results.get("stress")
    if not stress:
        return []
    lines = [
        "backend_v1 started as its image starts it (`gunicorn -c "
        "python:hw5kit.serving.gunicorn_conf`), no `HW5_*` variable, whatever the run's own "
        "settings:",
        "",
        "| measurement | result |",
        "|---|---|",
    ]
    for load in stress.get("load", []):
        lines.append(
            f"| closed-loop uploads of the labelled photos, c{load['concurrency']} | "
            f"{load['errors']} errors in {load['requests']} requests ({load['statuses']}); "
            f"{figure(load['throughput'])} req/s, p50 {figure(load['p50_ms'])} ms, p99 "
            f"{figure(load['p99_ms'])} ms |"
        )
    for slow in stress.get("slow", []):
        answered = slow["probes"] - slow["probes_unanswered"]
        lines.append(
            f"| `/hello` while {slow['clients']} clients drip their {slow['kind']} a byte a "
            f"second | {answered} of {slow['probes']} answered, slowest "
            f"{figure(slow['probe_max_ms'])} ms |"
        )
    flood = stress.get("decode")
    if flood:
        lines.append(
            f"| {flood['uploads']} concurrent uploads of a {flood['image']} | peak resident "
            f"memory {flood['rss_peak_mib']} MiB (before {flood['rss_before_mib']}, after "
            f"{flood['rss_after_mib']}); answers {flood['statuses']}; then a photo: "
            f"{flood['after']} |"
        )
    return lines


def startup_table(results: dict) -> str:
    lines = [
        "| subject | model | cold start (s) | resident memory (MiB) | processes |",
        "|---|---|---:|---:|---:|",
    ]
    for subject in ("reference", "ours", *peers_report.peer_names(results)):
        for model, entry in results["subjects"].get(subject, {}).items():
            if "cold_start_s" not in entry or "rss_bytes" not in entry:
                continue  # a peer that could not serve this model
            lines.append(
                f"| {subject_title(subject)} | {model} | {entry['cold_start_s']:.2f} "
                f"| {entry['rss_bytes'] / MiB:.0f} | {entry['processes']} |"
            )
    for model, entry in results["subjects"].get("inprocess", {}).items():
        lines.append(
            f"| {subject_title('inprocess')} | {model} | n/a | {entry['rss_bytes'] / MiB:.0f} | 1 |"
        )
    v2 = results.get("v2")
    if v2:
        lines.append(
            f"| ours, backend_v2 | {' + '.join(v2['models'])} | {v2['cold_start_s']:.2f} "
            f"| {v2['rss_bytes'] / MiB:.0f} | {v2['processes']} |"
        )
    first = results.get("first_start")
    if first:
        lines.append(
            f"| ours, first start (no baked ONNX export) | {first['model']} "
            f"| {first['cold_start_s']:.2f} | n/a | n/a |"
        )
    return "\n".join(lines)


def agreement(results: dict, model: str) -> str | None:
    """Top-1 per photo from ours and from the reference (both saw every photo)."""
    plan = plan_of(results)
    ours: dict[str, set] = {}
    ref: dict[str, set] = {}
    for subject, into in (("ours", ours), ("reference", ref)):
        for mode in plan["modes"]:
            for n in plan["concurrency"]:
                rec = record(results, subject, model, mode, n)
                for photo, labels in (rec or {}).get("categories", {}).items():
                    into.setdefault(photo, set()).update(labels)
    photos = sorted(set(ours) & set(ref))
    if not photos:
        return None
    same = [p for p in photos if ours[p] == ref[p]]
    lines = [
        f"Top-1 agreement with the reference: {len(same)}/{len(photos)} photos.",
        "",
        "| photo | ours | reference |",
        "|---|---|---|",
    ]
    for p in photos:
        lines.append(f"| {p} | {', '.join(sorted(ours[p]))} | {', '.join(sorted(ref[p]))} |")
    return "\n".join(lines)


def stages_lines(results: dict) -> list[str]:
    """The in-process subject's median stage times: fetch, decode+preprocess, inference."""
    lines = [
        "| model | mode | conc. | fetch ms | decode + preprocess ms | inference ms (incl. queue) "
        "| mean batch |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for model, entry in results["subjects"].get("inprocess", {}).items():
        for rec in entry["records"]:
            st = rec.get("stages_ms") or {}
            if not st:
                continue
            lines.append(
                f"| {model} | {rec['mode']} | {rec['concurrency']} | {figure(st.get('fetch'))} "
                f"| {figure(st.get('preprocess'))} | {figure(st.get('inference'))} "
                f"| {figure(rec.get('mean_batch'), 2)} |"
            )
    return lines if len(lines) > 2 else []


def targets_table(rows: list[dict]) -> str:
    lines = ["| target | where | measured | result | why (when missed) |", "|---|---|---|---|---|"]
    for r in rows:
        result = f"**{r['verdict']}** {r['margin']}".strip()
        lines.append(f"| {r['target']} | {r['where']} | {r['measured']} | {result} | {r['why']} |")
    return "\n".join(lines)


def settings_label(meta: dict) -> str:
    """ "production defaults", or "TUNED: K=V, ..." when tuning variables were set."""
    tuned = tuning(meta.get("hw5_settings", {}))
    if not tuned:
        return "production defaults (the image's start command, no HW5_* tuning variable)"
    return "TUNED, not the production defaults: " + ", ".join(f"{k}={v}" for k, v in tuned.items())


def _meta_lines(results: dict) -> list[str]:
    meta = results["meta"]
    plan = meta["plan"]
    before = ", ".join(f"{x:.2f}" for x in meta["load_average_before"])
    after = ", ".join(f"{x:.2f}" for x in meta.get("load_average_after", ()))
    settings = settings_label(meta)
    return [
        f"- Date: {meta['date']}; commit {meta.get('git_commit', '?')}; "
        f"run time {meta.get('wall_seconds', 0) / 60:.1f} min",
        f"- Command: `{meta['command']}`",
        f"- Machine: {meta.get('cpus')} CPUs ({meta.get('cpu_model', '?')}), "
        f"Python {meta.get('python')}, torch {meta.get('torch')}, "
        f"onnxruntime {meta.get('onnxruntime')}, gunicorn {meta.get('gunicorn')}",
        f"- Load average (1, 5, 15 min): before {before}; after {after}",
        f"- Each phase: {plan['warmup']:g} s warm-up, then {plan['duration']:g} s measured "
        f"(at most {plan['max_requests']} requests), closed loop, concurrency "
        f"{', '.join(map(str, plan['concurrency']))}; the subjects take turns phase by phase "
        "(the others paused); "
        f"photos: {', '.join(plan['photos'])}",
        f"- Our settings: {settings}",
    ]


def _ours_line(results: dict) -> str:
    """How ours ran: the workers its defaults chose per model here and on Cloud Run."""
    counts = []
    for model, entry in results["subjects"].get("ours", {}).items():
        if isinstance(entry, dict) and "workers" in entry:
            here, cloud = entry["workers"], entry.get("workers_on_cloud_run")
            counts.append(
                f"{model_label(results, model)}: {here}"
                + (f" (on Cloud Run's default 2 GiB: {cloud})" if cloud not in (None, here) else "")
            )
    workers = "; ".join(counts) or "one per CPU as memory allows"
    return (
        "- **ours**: `apps/backend_v1` started as its image starts it, with the package's "
        "defaults (`hw5kit.serving.gunicorn_conf`): gunicorn worker processes, one per CPU as "
        f"memory allows (here {workers}), threads, OpenVINO bfloat16 where the CPU has it, "
        "micro-batching."
    )


def report_markdown(results: dict, charts: list[str]) -> str:
    plan = plan_of(results)
    parts = [
        "# Serving benchmark",
        "",
        *_meta_lines(results),
        "",
        "Subjects, all on this machine and driven by the same load generator:",
        "",
        "- **reference**: the course's backend re-implemented faithfully "
        "(`hw5kit.bench.reference`): gunicorn 2 workers x 2 threads, a model per worker, torch "
        "eager with default threads, `requests` + PIL + torchvision transforms, one image per "
        "forward pass.",
        _ours_line(results),
        "- **in-process limit**: our pipeline (fetch or upload bytes, decode, preprocess, "
        "batched inference, top-k) called by N threads in one process, no HTTP.",
        *(
            [
                "- **serving peers**: "
                + ", ".join(peers_report.title(n) for n in peers_report.peer_names(results))
                + ", each serving the same ONNX file from its own environment as its "
                "documentation recommends (section below)."
            ]
            if peers_report.peer_names(results)
            else []
        ),
        "",
        "Throughput is answered requests per second; latency is client-side; CPU ms/img is the "
        "server processes' user+system CPU (from /proc) per answered request; resident memory "
        "is summed over the server's processes (gunicorn master and workers). The load "
        "generator and the photo server share the same cores.",
        "",
        "## Targets",
        "",
        targets_table(targets(results)),
        "",
    ]
    for model in plan["models"]:
        parts += [f"## {model_label(results, model)}", "", figures_table(results, model), ""]
        agree = agreement(results, model)
        if agree:
            parts += [agree, ""]
    stages = stages_lines(results)
    if stages:
        parts += ["## Where the time goes (in-process, median per request)", "", *stages, ""]
    peers = peers_report.lines(results, charts)
    if peers:
        parts += ["## Against the serving peers (same run)", "", *peers, ""]
    parts += ["## Cold start and memory", "", startup_table(results), ""]
    stress = stress_lines(results)
    if stress:
        parts += ["## Under load and attack, with the production defaults", "", *stress, ""]
    if charts:
        parts += ["## Charts", ""] + [f"![{c}]({c})" for c in charts if c != "peers.png"] + [""]
    parts += ["## Notes", "", *NOTES, ""]
    return "\n".join(parts)


def summary_markdown(results: dict) -> str:
    """The docs' table (docs/maintainer/benchmarks.md): the headline figures and the command
    that produced them."""
    plan = plan_of(results)
    high, low = max(plan["concurrency"]), min(plan["concurrency"])
    meta = results["meta"]
    load = procstats.peak_load(results["meta"])
    before = meta.get("load_average_before", [0])[0]
    # the benchmark's own server and load generator raise the load during the run; other work
    # shows as load already there when it starts
    busy = (
        f" The machine was busy before the run started (load average {before:.2f}: other work "
        "running): throughput figures are low and noisy; CPU ms per image is the steadier "
        "comparison."
        if before > 0.5 * (meta.get("cpus") or 1)
        else f" No other work was running (load average {before:.2f} before the run; the "
        "benchmark's own processes make the rest)."
    )
    lines = [
        f"Latest full run: {meta['date']}, commit {meta.get('git_commit', '?')}, "
        f"{meta.get('cpus')} CPUs, load average up to {load:.2f}. Command: "
        f"`{meta['command']}`. Full report: `reports/bench/README.md`."
        + busy
        + f" Ours: {settings_label(meta)}.",
        "",
        f"| model | mode | c{high} req/s: reference / ours / in-process | ours vs reference "
        f"| ours vs in-process | p50 at c{low}: ours / in-process (ms) | CPU ms/img: "
        "reference / ours |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for model in plan["models"]:
        for mode in plan["modes"]:
            ref = record(results, "reference", model, mode, high) or {}
            ours = record(results, "ours", model, mode, high) or {}
            inp = record(results, "inprocess", model, mode, high) or {}
            ours1 = record(results, "ours", model, mode, low) or {}
            inp1 = record(results, "inprocess", model, mode, low) or {}

            lines.append(
                f"| {model_label(results, model)} | {mode} "
                f"| {figure(ref.get('throughput'))} / {figure(ours.get('throughput'))} / "
                f"{figure(inp.get('throughput'))} "
                f"| {figure(_ratio(ours.get('throughput'), ref.get('throughput')), 2, 'x')} "
                f"| {figure((_ratio(ours.get('throughput'), inp.get('throughput')) or 0) * 100, 0)}"
                "% "
                f"| {figure(ours1.get('p50_ms'))} / {figure(inp1.get('p50_ms'))} "
                f"| {figure(ref.get('cpu_ms_per_image'))} / "
                f"{figure(ours.get('cpu_ms_per_image'))} |"
            )
    lite = results["subjects"].get("ours", {}).get("efficientnet_lite0")
    ref_lite = results["subjects"].get("reference", {}).get("efficientnet_lite0")
    extras = []
    if lite:
        extras.append(f"cold start (lite0) {lite['cold_start_s']:.2f} s")
        extras.append(f"resident memory (lite0) {lite['rss_bytes'] / MiB:.0f} MiB")
    if ref_lite:
        extras.append(
            f"reference: cold start {ref_lite['cold_start_s']:.2f} s, "
            f"{ref_lite['rss_bytes'] / MiB:.0f} MiB"
        )
    if results.get("v2"):
        extras.append(f"backend_v2 with three models {results['v2']['rss_bytes'] / MiB:.0f} MiB")
    if extras:
        lines += ["", "Ours: " + "; ".join(extras) + "."]
    stress = results.get("stress") or {}
    said = []
    if stress.get("load"):
        said.append(
            "uploads at "
            + ", ".join(f"c{x['concurrency']}: {x['errors']} errors" for x in stress["load"])
        )
    if stress.get("slow"):
        worst = max((x["probe_max_ms"] or 0) for x in stress["slow"])
        unanswered = sum(x["probes_unanswered"] for x in stress["slow"])
        said.append(
            f"`/hello` at most {figure(worst)} ms ({unanswered} unanswered) while "
            f"{stress['slow'][0]['clients']} clients drip a byte a second"
        )
    if stress.get("decode"):
        flood = stress["decode"]
        said.append(
            f"{flood['uploads']} concurrent near-limit 16-bit PNGs: peak RSS "
            f"{flood['rss_peak_mib']} MiB"
        )
    if said:
        lines += ["", "Under load and attack, production defaults: " + "; ".join(said) + "."]
    lines += peers_report.summary(results)
    met = targets(results)
    missed = [r for r in met if r["verdict"] != "met"]
    lines += [
        "",
        f"Targets: {len(met) - len(missed)} of {len(met)} met"
        + (
            "; missed: " + "; ".join(f"{r['target']} ({r['where']}, {r['margin']})" for r in missed)
            if missed
            else ""
        )
        + ".",
    ]
    return "\n".join(lines)


# ---- files ---------------------------------------------------------------------------------
def write_report(results: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    names = charts(results, out)
    path = out / "README.md"
    path.write_text(report_markdown(results, names))
    return path


def render_page(text: str, results: dict) -> str:
    """``text`` (a page of docs/) with its bench block made again from ``results``."""
    return markdown.replace_block(text, BEGIN, END, summary_markdown(results))


def update_page(page: Path, results: dict) -> bool:
    """Replace the text between the bench markers of ``page``; False when they are missing."""
    return markdown.update_file(page, BEGIN, END, summary_markdown(results))
