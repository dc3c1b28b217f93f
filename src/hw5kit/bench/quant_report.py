"""The quantization report: ``results.json`` and ``README.md`` in ``reports/quantization/``,
and its summary in the documentation's benchmarks page (``docs/maintainer/benchmarks.md``)
between ``<!-- quant:begin -->`` and ``<!-- quant:end -->``."""

from __future__ import annotations

from pathlib import Path

from .. import markdown
from . import procstats
from .quant import VARIANT_TITLES, ratio

BEGIN, END = "<!-- quant:begin -->", "<!-- quant:end -->"
MiB = 2**20
NOTES = [
    "- fp32 is what a backend serves without int8: the model's ONNX export run by ONNX Runtime "
    "(itself 3-5x faster than torch eager, see the Performance section); int8 is its "
    "quantized copy run the same way, with the same threads and preprocessing.",
    "- Forward: one preprocessed photo through the network. In-process: our whole pipeline for "
    "one uploaded photo (decode, preprocess, micro-batched inference, top-5), no HTTP. "
    "fp32 and int8 are timed in alternating rounds, so a change in the machine's load hits "
    "both; compare the ratios of one run rather than figures across runs.",
    "- Agreement compares int8 with fp32, not with the truth: top-1 same = the same most "
    "probable class; top-5 overlap = the share of the five most probable classes the two have "
    "in common; probability change = |p_int8 - p_fp32|.",
    "- Crops: seeded augmentations of the labelled photos (rotation, tighter crop, blur, grey, "
    "lower resolution, JPEG re-encoding), unlike the calibration's (random crops, flips, colour "
    "jitter) and with another seed. Seven of the nine photos are themselves in the calibration "
    "set (as smaller JPEG copies, with other crops of them), so the photos column is not held-out "
    "data; the two held-out photos (motorcycle_left.png, grace_hopper.jpg) are never calibrated "
    "on, and their crops are shown apart. Many crops are hard (fp32 itself is unsure), which is "
    "where the two disagree most; the confident subset is the crops on which fp32's top-1 "
    "probability is at least 0.5.",
    "- Accuracy is over the labelled photos that have an expected label (8 photos): a sanity "
    "check, not an ImageNet accuracy, which needs the ImageNet validation set (not available "
    "offline). With 8 photos, a difference of one photo says little: see the photo-by-photo "
    "tables for how sure fp32 was where the two differ.",
    "- Recipe variants are timed in rounds of their own (their fp32 figure is in the same "
    "rounds). Tied top-5: share of the photos and crops whose five most probable classes have "
    "equal probabilities somewhere, which quantized logits cause.",
]


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _x(a, b) -> str:
    r = ratio(a, b)
    return "n/a" if r is None else f"{r:.2f}x"


def header(results: dict) -> str:
    meta = results["meta"]
    flags = meta.get("cpu_flags", {})
    cpu = meta.get("cpu_model", "unknown CPU")
    vnni = "yes" if flags.get("avx512_vnni") or flags.get("avx_vnni") else "no"
    amx = "yes" if flags.get("amx_int8") else "no"
    load = procstats.peak_load(results["meta"])
    busy = (
        f" The machine was busy (load average up to {load:.2f} on {meta.get('cpus')} CPUs): "
        "absolute times are inflated and noisy; the fp32/int8 ratios, measured side by side, "
        "are the steadier figures."
        if load > (meta.get("cpus") or 1)
        else ""
    )
    return (
        f"Latest run: {meta['date']}, commit {meta.get('git_commit', '?')}, {cpu} "
        f"(AVX-512 VNNI: {vnni}, AMX: {amx}), {meta.get('cpus')} CPUs, {meta.get('threads')} "
        f"inference threads, onnxruntime {meta.get('onnxruntime', '?')}, load average up to "
        f"{load:.2f}. Command: `{meta['command']}`.{busy}"
    )


def speed_table(results: dict) -> str:
    batch = results["meta"].get("batch_max", 8)
    header = [
        "model",
        "ONNX file (MiB) fp32 → int8",
        "forward p50 (ms) fp32 / int8",
        "in-process p50 (ms) fp32 / int8",
        "forward img/s, batch 1",
        f"forward img/s, batch {batch}",
        f"in-process img/s, {batch} callers",
    ]
    rows = []
    for model, entry in results["models"].items():
        s32, s8 = entry["speed"]["fp32"], entry["speed"]["int8"]
        size32, size8 = entry["fp32_onnx_bytes"], entry["int8_onnx_bytes"]
        b1 = (s32["forward_throughput"]["1"], s8["forward_throughput"]["1"])
        bn = (s32["forward_throughput"][str(batch)], s8["forward_throughput"][str(batch)])
        pipe = (s32["pipeline"]["throughput"], s8["pipeline"]["throughput"])
        rows.append(
            [
                model,
                f"{size32 / MiB:.1f} → {size8 / MiB:.1f} ({_x(size32, size8)} smaller)",
                f"{markdown.figure(s32['forward_p50_ms'], 2)} / "
                f"{markdown.figure(s8['forward_p50_ms'], 2)} "
                f"({_x(s32['forward_p50_ms'], s8['forward_p50_ms'])} faster)",
                f"{markdown.figure(s32['e2e_p50_ms'], 2)} / "
                f"{markdown.figure(s8['e2e_p50_ms'], 2)} "
                f"({_x(s32['e2e_p50_ms'], s8['e2e_p50_ms'])})",
                f"{b1[0]:.0f} / {b1[1]:.0f} ({_x(b1[1], b1[0])})",
                f"{bn[0]:.0f} / {bn[1]:.0f} ({_x(bn[1], bn[0])})",
                f"{pipe[0]:.0f} / {pipe[1]:.0f} ({_x(pipe[1], pipe[0])})",
            ]
        )
    return markdown.table(header, rows)


def agreement_table(results: dict) -> str:
    header = [
        "model",
        "top-1 same: photos",
        "top-1 same: crops (held-out photos)",
        "top-1 same: confident crops",
        "top-5 overlap: crops",
        "fp32 top-1 in int8 top-5",
        "largest probability change",
        "mean change of fp32 top-1's probability",
        "correct on labelled photos: fp32 / int8",
    ]
    rows = []
    for model, e in results["models"].items():
        ph, cr, ho, co = e["photos"], e["crops"], e["crops_held_out"], e["crops_confident"]
        acc32, acc8 = e["accuracy"]["fp32"], e["accuracy"]["int8"]
        largest = max(ph["max_abs_diff"], cr["max_abs_diff"])
        rows.append(
            [
                model,
                f"{ph['top1_count']}/{ph['n']}",
                f"{_pct(cr['top1'])} of {cr['n']} ({_pct(ho['top1'] if ho else None)} of "
                f"{ho['n'] if ho else 0})",
                f"{_pct(co['top1'] if co else None)} of {co['n'] if co else 0}",
                _pct(cr["topk_overlap"]),
                _pct(cr["top1_in_topk"]),
                f"{largest:.3f}",
                f"{cr['mean_top1_prob_diff']:.3f}",
                f"{acc32['correct']}/{acc32['of']} / {acc8['correct']}/{acc8['of']}",
            ]
        )
    return markdown.table(header, rows)


def per_photo_table(entry: dict) -> str:
    header = ["photo", "expected", "fp32 top-1 (p)", "int8 top-1 (p)", "int8 p of fp32's top-1"]
    rows = []
    for r in entry["per_photo"]:
        mark = "" if r["calibrated_on"] else " (held out)"
        rows.append(
            [
                f"{r['photo']}{mark}",
                ", ".join(r["expected"]) or "(none)",
                f"{r['fp32']['label']} ({r['fp32']['probability']:.3f})",
                f"{r['int8']['label']} ({r['int8']['probability']:.3f})",
                f"{r['int8_probability_of_fp32_top1']:.3f}",
            ]
        )
    return markdown.table(header, rows)


def variants_table(results: dict) -> str:
    variants = results.get("variants")
    if not variants:
        return ""
    model = variants["_model"]
    header = [
        "recipe",
        "file (MiB)",
        "forward p50 (ms)",
        "top-1 same: photos",
        "top-1 same: crops",
        "top-5 overlap: crops",
        "largest probability change",
        "images with tied top-5 probabilities",
    ]
    rows = [
        [
            VARIANT_TITLES.get(name, name),
            f"{v['size_bytes'] / MiB:.1f}",
            markdown.figure(v["forward_p50_ms"], 2),
            f"{v['photos']['top1_count']}/{v['photos']['n']}",
            _pct(v["crops"]["top1"]),
            _pct(v["crops"]["topk_overlap"]),
            f"{max(v['photos']['max_abs_diff'], v['crops']['max_abs_diff']):.3f}",
            _pct(v["tied_top5"]),
        ]
        for name, v in variants.items()
        if not name.startswith("_")
    ]
    return (
        f"Recipe variants on {model} (fp32 forward p50 in the same rounds: "
        f"{markdown.figure(variants['_fp32_forward_p50_ms'], 2)} ms):\n\n"
        + markdown.table(header, rows)
    )


def summary_markdown(results: dict) -> str:
    return "\n\n".join(
        [
            header(results) + " Full report: `reports/quantization/README.md`.",
            speed_table(results),
            agreement_table(results),
        ]
    )


def report_markdown(results: dict) -> str:
    meta = results["meta"]
    recipe = meta["recipe_description"]
    ev = meta["evaluation"]
    parts = [
        "# int8 against fp32: size, speed, agreement",
        header(results),
        "## Size and speed",
        speed_table(results),
        "## Agreement with fp32, accuracy",
        f"On the {len(ev['photos'])} labelled photos and {ev['crops']} augmented crops of them "
        f"(seed {ev['seed']}; {ev['crops_of_held_out_photos']} crops of the two held-out "
        "photos).",
        agreement_table(results),
    ]
    for model, entry in results["models"].items():
        parts += [f"### {model} photo by photo", per_photo_table(entry)]
    if results.get("variants"):
        parts += ["## What the recipe's choices are worth", variants_table(results)]
    build = ", ".join(
        f"{model}: {e['bake_seconds']['int8']:.0f} s" for model, e in results["models"].items()
    )
    parts += [
        "## How the int8 models are made",
        f"- {recipe['tool']}, format {recipe['format']}; weights {recipe['weights']}; "
        f"activations {recipe['activations']}; kept in float32: "
        f"{', '.join(recipe['kept_in_float32'])}; int8 with a float32 output: "
        f"{', '.join(recipe['int8_with_float32_output'])} (the logits). Recipe id "
        f"`{meta['recipe_id']}`.",
        f"- Calibration: {recipe['calibration']['images']} images: "
        f"{', '.join(recipe['calibration']['photos'])}; {recipe['calibration']['augmentations']}.",
        f"- Made at build time by `weights bake` (this run's int8 bake step, which includes "
        f"starting Python: {build}); the files are deterministic for a given recipe, weights and "
        "library versions.",
        "## Notes",
        "\n".join(NOTES),
        f"Run took {meta['wall_seconds']:.0f} s; the figures above are in `results.json`.",
    ]
    return "\n\n".join(parts) + "\n"


def write_report(results: dict, out: Path) -> Path:
    return markdown.write_report(out, results, report_markdown(results))


def render_page(text: str, results: dict) -> str:
    """``text`` (a page of docs/) with its quant block made again from ``results``."""
    return markdown.replace_block(text, BEGIN, END, summary_markdown(results))


def update_page(page: Path, results: dict) -> bool:
    """Replace the text between the quant markers of ``page``; False when they are missing."""
    return markdown.update_file(page, BEGIN, END, summary_markdown(results))
