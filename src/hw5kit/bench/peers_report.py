"""The peers part of the bench report: ours (production defaults) against TorchServe, BentoML,
LitServe and KServe's ModelServer measured in the same run (``bench.peers``).

For every model and mode a table of throughput at each concurrency, p50 at the lowest and p99
at the headline concurrency (16, else the highest), server CPU per image, resident memory, cold
start and errors, with a last row giving ours against the best peer on each figure (above 1:
ours is better; throughput is ours / best, the others best / ours). Targets: ahead of every
peer on throughput at c16 and on p50 at c1 (the issue's aim is 1.5x on throughput).
"""

from __future__ import annotations

from .. import markdown
from . import procstats
from .peers import PEERS

MiB = 2**20
AIM = 1.5  # the throughput ratio over the best peer the issue aims for


def peer_names(results: dict) -> list[str]:
    return [s for s in results["subjects"] if s in PEERS]


def title(subject: str) -> str:
    return PEERS[subject].title if subject in PEERS else subject


def headline_concurrency(plan: dict) -> int:
    return 16 if 16 in plan["concurrency"] else max(plan["concurrency"])


def _record(results: dict, subject: str, model: str, mode: str, n: int) -> dict | None:
    entry = results["subjects"].get(subject, {}).get(model) or {}
    for rec in entry.get("records", []):
        if rec["mode"] == mode and rec["concurrency"] == n:
            return rec
    return None


def _f(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def figures(results: dict, subject: str, model: str, mode: str) -> dict:
    """The figures of one subject's row (None where not measured)."""
    plan = results["meta"]["plan"]
    low, high = min(plan["concurrency"]), headline_concurrency(plan)
    entry = results["subjects"].get(subject, {}).get(model) or {}
    row: dict = {}
    for n in plan["concurrency"]:
        rec = _record(results, subject, model, mode, n)
        row[f"c{n}"] = rec["throughput"] if rec else None
    first, head = (
        _record(results, subject, model, mode, low),
        _record(results, subject, model, mode, high),
    )
    row["p50"] = first and first["p50_ms"]
    row["p99"] = head and head["p99_ms"]
    row["cpu"] = head and head["cpu_ms_per_image"]
    row["rss"] = entry.get("rss_bytes") and entry["rss_bytes"] / MiB
    row["cold"] = entry.get("cold_start_s")
    recs = [r for r in entry.get("records", []) if r["mode"] == mode]
    row["errors"] = sum(r["errors"] for r in recs) if recs else None
    row["sent"] = sum(r["errors"] + r["requests"] for r in recs) if recs else None
    return row


HIGHER_IS_BETTER = ("c",)  # throughput columns


def best_peer(results: dict, model: str, mode: str, key: str) -> tuple[str, float] | None:
    """The peer with the best value of ``key`` (throughput: highest; else lowest)."""
    values = [
        (name, figures(results, name, model, mode)[key])
        for name in peer_names(results)
        if figures(results, name, model, mode)[key] is not None
    ]
    if not values:
        return None
    higher = key.startswith("c") and key[1:].isdigit()
    return (max if higher else min)(values, key=lambda v: v[1])


def advantage(results: dict, model: str, mode: str, key: str) -> tuple[float, str] | None:
    """(ours against the best peer on ``key``, above 1 when ours is better; that peer)."""
    ours = figures(results, "ours", model, mode)[key]
    best = best_peer(results, model, mode, key)
    if not ours or not best or not best[1]:
        return None
    higher = key.startswith("c") and key[1:].isdigit()
    return (ours / best[1] if higher else best[1] / ours), best[0]


def table(results: dict, model: str, mode: str) -> str:
    plan = results["meta"]["plan"]
    low, high = min(plan["concurrency"]), headline_concurrency(plan)
    conc = [f"c{n}" for n in plan["concurrency"]]
    keys = [*conc, "p50", "p99", "cpu", "rss", "cold"]
    header = [
        "subject",
        *(f"{c} req/s" for c in conc),
        f"p50 c{low} ms",
        f"p99 c{high} ms",
        f"CPU ms/img c{high}",
        "RSS MiB",
        "cold start s",
        "errors",
    ]
    rows = []
    for subject in ["ours", *peer_names(results)]:
        row = figures(results, subject, model, mode)
        if row["sent"] is None:
            continue
        name = "**ours** (production defaults)" if subject == "ours" else title(subject)
        cells = [_f(row[k], 2 if k == "cold" else 0 if k == "rss" else 1) for k in keys]
        rows.append([name, *cells, f"{row['errors']} of {row['sent']}"])
    ratios = []
    for key in keys:
        adv = advantage(results, model, mode, key)
        ratios.append("n/a" if adv is None else f"{adv[0]:.2f}x ({title(adv[1]).split()[0]})")
    rows.append(["ours vs the best peer", *ratios, ""])
    return markdown.table(header, rows, align="l" + "r" * (len(keys) + 1))


def _cores(ours: dict, theirs: dict, high: int, key: str) -> str:
    """Why less CPU per image can still mean less throughput: the cores each server keeps busy."""
    needed = (ours.get("cpu"), theirs.get("cpu"), ours.get(f"c{high}"), theirs.get(f"c{high}"))
    if key == "p50" or None in needed or ours["cpu"] > theirs["cpu"]:
        return ""
    busy_ours = ours[f"c{high}"] * ours["cpu"] / 1000
    busy_theirs = theirs[f"c{high}"] * theirs["cpu"] / 1000
    return (
        f" Ours spends less CPU per image but keeps {busy_ours:.1f} cores busy against "
        f"{busy_theirs:.1f}: within a worker process, decoding and the forward pass take "
        "Python's GIL in turns (the workers ours started are in the subjects' list)."
    )


def targets(results: dict) -> list[dict]:
    """Ahead of every peer on throughput at c16 and on p50 at c1, per model and mode."""
    if not peer_names(results):
        return []
    plan = results["meta"]["plan"]
    low, high = min(plan["concurrency"]), headline_concurrency(plan)
    load = procstats.peak_load(results["meta"])
    busy = f" The machine's load average reached {load:.1f} during the run." if load > 0.5 else ""
    rows = []
    for model in plan["models"]:
        for mode in plan["modes"]:
            where = f"{model}, {mode}"
            for key, what in ((f"c{high}", f"throughput at c{high}"), ("p50", f"p50 at c{low}")):
                adv = advantage(results, model, mode, key)
                if adv is None:
                    continue
                ratio, peer = adv
                ours = figures(results, "ours", model, mode)
                theirs = figures(results, peer, model, mode)
                unit = "req/s" if key != "p50" else "ms"
                aim = f"; aim {AIM}x: {'reached' if ratio >= AIM else 'not reached'}" * (
                    key != "p50"
                )
                why = ""
                if ratio <= 1:
                    why = (
                        f"{title(peer)} needs {_f(theirs['cpu'])} CPU ms per image at c{high}, "
                        f"ours {_f(ours['cpu'])}." + _cores(ours, theirs, high, key) + busy
                    )
                rows.append(
                    {
                        "target": f"{what} ahead of every peer",
                        "where": where,
                        "measured": f"{ratio:.2f}x the best peer, {title(peer)} "
                        f"({_f(ours[key])} vs {_f(theirs[key])} {unit})",
                        "verdict": "met" if ratio > 1 else "MISSED",
                        "margin": f"{(ratio - 1) * 100:.0f}% ahead{aim}" if ratio > 1 else "",
                        "why": why,
                    }
                )
    return rows


def labels_seen(results: dict, subject: str, model: str) -> dict[str, set[str]]:
    """Every top-1 label a subject answered for each photo, over all its phases."""
    seen: dict[str, set[str]] = {}
    entry = results["subjects"].get(subject, {}).get(model) or {}
    for rec in entry.get("records", []):
        for photo, labels in rec.get("categories", {}).items():
            seen.setdefault(photo, set()).update(labels)
    return seen


def agreement_line(results: dict, model: str) -> str | None:
    """Ours (its production runtime: bfloat16 on OpenVINO where the CPU has it) against the
    peers (float32 ONNX Runtime on the same file): same top-1 on how many photos."""
    ours = labels_seen(results, "ours", model)
    names = [n for n in peer_names(results) if labels_seen(results, n, model)]
    if not ours or not names:
        return None
    parts = []
    for name in names:
        theirs = labels_seen(results, name, model)
        photos = sorted(set(ours) & set(theirs))
        differ = [p for p in photos if ours[p] != theirs[p]]
        text = f"{title(name)} {len(photos) - len(differ)}/{len(photos)}"
        if differ:
            text += (
                " (differs on "
                + ", ".join(
                    f"{p}: ours {'/'.join(sorted(ours[p]))}, theirs {'/'.join(sorted(theirs[p]))}"
                    for p in differ
                )
                + ")"
            )
        parts.append(text)
    return f"Top-1 of ours and of each peer on the same photos ({model}): " + "; ".join(parts) + "."


def lines(results: dict, charts: list[str]) -> list[str]:
    """The report's peers section."""
    info = results.get("peers") or {}
    names = peer_names(results)
    if not names and not info:
        return []
    out = [
        "The same ONNX file, photos, load generator and machine; each peer from its own "
        "environment with the configuration its documentation recommends for CPU throughput "
        "(`src/hw5kit/bench/peers/<peer>/`, the pages cited there): one worker process per "
        "core, one ONNX Runtime intra-op thread each, its batching where it offers one. The "
        "handlers share `peers/peer_common.py` (PIL decode, resize, centre crop, normalise). "
        "Cold start: start command to the first answered prediction (ours: to `/readyz`). "
        "Last row: ours against the best peer on each figure, above 1 when ours is better "
        "(throughput ours / best, the others best / ours).",
        "",
    ]
    versions = []
    for name in names:
        v = (info.get("versions") or {}).get(name, {})
        pinned = ", ".join(f"{k} {v[k]}" for k in (name, "onnxruntime", "torch") if k in v)
        versions.append([title(name), pinned, PEERS[name].batching])
    if versions:
        out += [markdown.table(["peer", "versions", "batching"], versions), ""]
    for name, why in (info.get("skipped") or {}).items():
        out += [f"- **{title(name)} skipped**: {why.splitlines()[0][:300]}"]
    for model in results["meta"]["plan"]["models"]:
        for name in names:
            failed = (results["subjects"][name].get(model) or {}).get("failed")
            if failed:
                out.append(f"- **{title(name)} could not serve {model}**: {failed[:300]}")
    if out[-1] != "":
        out.append("")
    for model in results["meta"]["plan"]["models"]:
        for mode in results["meta"]["plan"]["modes"]:
            out += [f"### {model}, {mode}", "", table(results, model, mode), ""]
        agree = agreement_line(results, model)
        if agree:
            out += [agree, ""]
    out += [f"![{c}]({c})" for c in charts if c.startswith("peers")]
    return out


def summary(results: dict) -> list[str]:
    """The Performance block's lines (docs/maintainer/benchmarks.md): ours against the best peer
    at c16 and c1, per model and mode."""
    if not peer_names(results):
        return []
    plan = results["meta"]["plan"]
    low, high = min(plan["concurrency"]), headline_concurrency(plan)
    parts = []
    for model in plan["models"]:
        for mode in plan["modes"]:
            thr = advantage(results, model, mode, f"c{high}")
            p50 = advantage(results, model, mode, "p50")
            if thr and p50:
                parts.append(
                    f"{model} {mode}: {thr[0]:.2f}x the best peer's throughput at c{high} "
                    f"({title(thr[1])}), p50 at c{low} {p50[0]:.2f}x lower ({title(p50[1])})"
                )
    skipped = ", ".join((results.get("peers") or {}).get("skipped", {}))
    return [
        "",
        f"Against the serving peers ({', '.join(title(n) for n in peer_names(results))}; same "
        "ONNX file, each as its documentation recommends): "
        + "; ".join(parts)
        + "."
        + (f" Skipped here: {skipped}." if skipped else ""),
    ]


def chart(results: dict, out) -> list[str]:
    """peers.png: throughput per concurrency and p50 at the lowest, ours beside each peer."""
    names = peer_names(results)
    if not names:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plan = results["meta"]["plan"]
    combos = [(m, mode) for m in plan["models"] for mode in plan["modes"]]
    subjects = ["ours", *names]
    fig, axes = plt.subplots(2, len(combos), figsize=(4.6 * len(combos), 7), squeeze=False)
    width = 0.8 / len(subjects)
    for col, (model, mode) in enumerate(combos):
        ax = axes[0][col]
        for i, subject in enumerate(subjects):
            row = figures(results, subject, model, mode)
            ys = [row[f"c{n}"] or 0 for n in plan["concurrency"]]
            ax.bar([j + i * width for j in range(len(ys))], ys, width, label=title(subject))
        ax.set_xticks(
            [j + width * (len(subjects) - 1) / 2 for j in range(len(plan["concurrency"]))],
            [f"c{n}" for n in plan["concurrency"]],
        )
        ax.set_title(f"{model}, {mode}: throughput", fontsize=9)
        ax.set_ylabel("requests / s")
        ax.grid(alpha=0.3, axis="y")
        ax = axes[1][col]
        low = min(plan["concurrency"])
        p50 = [figures(results, s, model, mode)["p50"] or 0 for s in subjects]
        ax.bar(range(len(subjects)), p50, color=[f"C{i}" for i in range(len(subjects))])
        ax.set_xticks(range(len(subjects)), [title(s).split()[0] for s in subjects], fontsize=7)
        ax.set_title(f"{model}, {mode}: p50 at c{low}", fontsize=9)
        ax.set_ylabel("ms")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Ours (production defaults) against the serving peers, same run")
    fig.tight_layout()
    fig.savefig(out / "peers.png", dpi=110)
    plt.close(fig)
    return ["peers.png"]
