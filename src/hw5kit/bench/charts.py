"""The benchmark report's PNG charts: throughput, latency and CPU per image by subject (the
peers' chart is ``peers_report.chart``)."""

from __future__ import annotations

from pathlib import Path

from . import peers_report
from .targets import plan_of, record, subject_title, subjects_of


# ---- charts --------------------------------------------------------------------------------
def charts(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plan = plan_of(results)
    combos = [(m, mode) for m in plan["models"] for mode in plan["modes"]]
    names = []

    fig, axes = plt.subplots(1, len(combos), figsize=(4.2 * len(combos), 3.6), squeeze=False)
    for ax, (model, mode) in zip(axes[0], combos, strict=True):
        for subject in subjects_of(results):
            xs, ys = [], []
            for n in plan["concurrency"]:
                rec = record(results, subject, model, mode, n)
                if rec:
                    xs.append(n)
                    ys.append(rec["throughput"])
            if xs:
                ax.plot(xs, ys, marker="o", label=subject_title(subject))
        ax.set_xscale("log", base=2)
        ax.set_xticks(plan["concurrency"], [str(c) for c in plan["concurrency"]])
        ax.set_title(f"{model}\n{mode}", fontsize=9)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("requests / s")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Throughput")
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)
    names.append("throughput.png")

    fig, axes = plt.subplots(1, len(combos), figsize=(4.2 * len(combos), 3.6), squeeze=False)
    for ax, (model, mode) in zip(axes[0], combos, strict=True):
        labels, p50, p99 = [], [], []
        for subject in plan["subjects"]:
            for n in plan["concurrency"]:
                rec = record(results, subject, model, mode, n)
                if rec and rec["p50_ms"] is not None:
                    labels.append(f"{subject[:3]} c{n}")
                    p50.append(rec["p50_ms"])
                    p99.append(rec["p99_ms"])
        xs = range(len(labels))
        ax.bar(xs, p99, color="#f4b183", label="p99")
        ax.bar(xs, p50, color="#4472c4", label="p50")
        ax.set_xticks(list(xs), labels, rotation=60, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("ms")
        ax.set_title(f"{model}\n{mode}", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Latency (p50 and p99)")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    names.append("latency.png")

    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(combos) + 2), 3.6))
    shown = subjects_of(results)
    width = 0.8 / max(1, len(shown))
    high = max(plan["concurrency"])
    for i, subject in enumerate(shown):
        ys = []
        for model, mode in combos:
            rec = record(results, subject, model, mode, high)
            ys.append(rec["cpu_ms_per_image"] if rec and rec["cpu_ms_per_image"] else 0)
        ax.bar(
            [j + i * width for j in range(len(combos))],
            ys,
            width,
            label=subject_title(subject),
        )
    ax.set_xticks(
        [j + width * (len(shown) - 1) / 2 for j in range(len(combos))],
        [f"{m}\n{mode}" for m, mode in combos],
        fontsize=7,
    )
    ax.set_ylabel(f"CPU ms per image at c{high}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out / "cpu_per_image.png", dpi=110)
    plt.close(fig)
    names.append("cpu_per_image.png")
    return names + peers_report.chart(results, out)
