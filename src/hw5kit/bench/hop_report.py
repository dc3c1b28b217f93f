"""The report of ``python -m hw5kit.bench hop`` (``hop.py``): memory per service, latency of a
classification by each path, and the extra hop, as markdown (``reports/hop/README.md``) next to
``results.json``."""

from __future__ import annotations

from pathlib import Path

from .. import markdown
from . import procstats
from .hop import PATH_TITLES, PATHS, MiB


def memory_table(results: dict) -> str:
    header = [
        "service",
        "process",
        "cold start (s)",
        "RSS after start (MiB)",
        "RSS after the run (MiB)",
        "processes",
    ]
    what = {"backend_v1": "gunicorn (master + worker)", "frontend_v1": "Streamlit"}
    rows = []
    for name, entry in results["services"].items():
        start, after = entry["after_start"], entry["after_run"]
        rows.append(
            [
                name,
                what.get(name, name),
                f"{entry['cold_start_s']:.2f}",
                f"{start['rss_bytes'] / MiB:.0f}",
                f"{after['rss_bytes'] / MiB:.0f}",
                after["processes"],
            ]
        )
    return markdown.table(header, rows, align="llrrrr")


def latency_table(results: dict) -> str:
    header = [
        "mode",
        "path",
        "requests",
        "p50 (ms)",
        "p90 (ms)",
        "the pipeline's own time, p50 (ms)",
        "outside the pipeline, p50 (ms)",
    ]
    rows = [
        [
            mode,
            PATH_TITLES[name],
            entry["n"],
            markdown.figure(entry["p50_ms"]),
            markdown.figure(entry["p90_ms"]),
            markdown.figure(entry.get("server_p50_ms")),
            markdown.figure(entry.get("outside_server_p50_ms")),
        ]
        for mode, paths in results["latency"].items()
        for name in PATHS
        if (entry := paths.get(name)) is not None
    ]
    return markdown.table(header, rows, align="llrrrrr")


def hop_table(results: dict) -> str:
    header = [
        "mode",
        "frontend client → backend, p50 (ms)",
        "backend's own time, p50 (ms)",
        "the hop: round trip − backend's time, p50 (ms)",
        "client − in-process, p50 (ms)",
        "client − direct, p50 (ms)",
    ]
    rows = [
        [
            mode,
            markdown.figure(h["client_p50_ms"]),
            markdown.figure(h["backend_p50_ms"]),
            markdown.figure(h["hop_ms"]),
            markdown.figure(h["client_minus_inprocess_ms"]),
            markdown.figure(h["client_minus_direct_ms"]),
        ]
        for mode, h in results["hop"].items()
    ]
    return markdown.table(header, rows, align="lrrrrr")


def report_markdown(results: dict) -> str:
    meta = results["meta"]
    plan = meta["plan"]
    load = procstats.peak_load(results["meta"])
    busy = (
        f" The machine was shared (load average up to {load:.2f} on {meta['cpus']} CPUs): "
        "absolute times are inflated; the paths were timed request by request in rotating "
        "order, so their differences compare like with like."
        if load > (meta.get("cpus") or 1)
        else ""
    )
    page = (
        f"The page path ran {plan['page_rounds']} times."
        if meta.get("page_skipped") is None
        else f"The page path was skipped: {meta['page_skipped']}."
    )
    parts = [
        "# Separate frontend and backend: memory per service, the extra hop",
        "\n".join(
            [
                f"- Date: {meta['date']}; commit {meta.get('git_commit', '?')}; run time "
                f"{meta['wall_seconds']:.0f} s",
                f"- Command: `{meta['command']}`",
                f"- Machine: {meta['cpus']} CPUs ({meta.get('cpu_model', '?')}), Python "
                f"{meta['python']}, onnxruntime {meta.get('onnxruntime', '?')}, gunicorn "
                f"{meta.get('gunicorn', '?')}; load average up to {load:.2f}.{busy}",
                f"- Model {plan['model']}; photos {', '.join(plan['photos'])} in turn; "
                f"{plan['warmup']} untimed then {plan['rounds']} timed requests per path and "
                "mode. " + page,
            ]
        ),
        "## Memory per service",
        "Resident memory (RSS) summed over each service's process tree, read from /proc, "
        "right after start-up and after every request below was served. Streamlit imports the "
        "page's code (the client, the charts) when the first visitor's session runs, so its "
        "figure after start-up is the bare server; after the run it has served the page "
        "(only when the page path ran: the other paths do not touch the frontend).",
        memory_table(results),
        "## Latency of a classification",
        "Client-side time of one request, one at a time. "
        + "; ".join(
            f"**{PATH_TITLES[p]}**: {desc}"
            for p, desc in (
                (
                    "inprocess",
                    "the backend's pipeline called in the measuring process, no "
                    "HTTP, as one merged service would run it",
                ),
                ("direct", "the backend called over HTTP on a kept-alive connection"),
                (
                    "client",
                    "`hw5kit.frontend.client.ServingClient.predict`, the code the "
                    "frontend runs for each classification, calling the backend",
                ),
                (
                    "page",
                    "headless Chromium on the real Streamlit page, from the click on the "
                    "classify button to the answer's label on screen (browser, websocket, the "
                    "page's script, the hop, rendering)",
                ),
            )
        )
        + ". The pipeline's own time is `timing_ms.total` from its answer (fetch, decode, "
        "preprocess, inference: in the backend, or in this process for the in-process path); "
        "outside the pipeline is the round trip minus that, request by request. The paths share "
        "the machine's cores with each other's servers, so in-process and backend pipeline times "
        "differ a little as well.",
        latency_table(results),
        "## The extra hop",
        "What calling the backend over HTTP adds to the work itself: HTTP encoding and parsing "
        "on both sides, gunicorn and Flask, loopback TCP; measured as the frontend client's "
        "round trip minus the backend's own time, request by request (the steadier figure), and "
        "as the difference of medians with the in-process and direct paths. Between two Cloud "
        "Run services, add the network between them, TLS and Cloud Run's front end; here both "
        "run on 127.0.0.1, so this is the floor.",
        hop_table(results),
        f"Loading the model ({plan['model']}, its baked ONNX export) in the measuring process "
        f"took {results['model_load_s']:.2f} s.",
        f"Run took {meta['wall_seconds']:.0f} s; every figure is in `results.json`.",
    ]
    return "\n\n".join(parts) + "\n"


def write_report(results: dict, out: Path) -> Path:
    return markdown.write_report(out, results, report_markdown(results))


def rss_mib(results: dict, service: str, when: str = "after_run") -> float:
    return results["services"][service][when]["rss_bytes"] / MiB
