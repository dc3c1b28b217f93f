"""The quantization report: agreement arithmetic, evaluation crops, the README block, the CLI,
and a reduced run end to end (bounded, no thresholds: the machine is shared)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hw5kit.bench import quant_eval, quant_report
from hw5kit.bench.__main__ import main
from hw5kit.serving.models import get_spec, quantization

from ..conftest import ROOT, SUPPORT


# ---- agreement ------------------------------------------------------------------------------
def softmax_rows(logits):
    e = np.exp(np.asarray(logits, np.float64))
    return e / e.sum(axis=1, keepdims=True)


def test_identical_probabilities_agree_completely():
    p = softmax_rows(np.random.default_rng(0).standard_normal((6, 20)))
    a = quant_eval.agreement(p, p.copy())
    assert a["n"] == 6 and a["top1"] == a["topk_overlap"] == a["topk_same_set"] == 1.0
    assert a["top1_in_topk"] == 1.0 and a["max_abs_diff"] == 0.0 == a["mean_top1_prob_diff"]


def test_agreement_counts_flips_and_partial_top5_overlap():
    # row 0: same order; row 1: top-1 swapped with the second class; row 2: top-5 shares 3
    ref = np.zeros((3, 10))
    ref[:, :6] = [0.4, 0.2, 0.15, 0.1, 0.08, 0.07]
    other = ref.copy()
    other[1, [0, 1]] = [0.2, 0.4]
    other[2] = 0
    other[2, [0, 1, 2, 7, 8]] = [0.5, 0.2, 0.1, 0.1, 0.1]
    a = quant_eval.agreement(ref, other, k=5)
    assert a["top1"] == pytest.approx(2 / 3) and a["top1_count"] == 2
    assert a["topk_overlap"] == pytest.approx((5 + 5 + 3) / 15)
    assert a["topk_same_set"] == pytest.approx(2 / 3)
    assert a["top1_in_topk"] == 1.0  # fp32's top-1 (class 0) is in every int8 top-5
    assert a["max_abs_diff"] == pytest.approx(0.2)
    # fp32's top-1 probability (class 0): 0.4 -> 0.4, 0.2, 0.5
    assert a["mean_top1_prob_diff"] == pytest.approx((0 + 0.2 + 0.1) / 3)
    assert a["max_top1_prob_diff"] == pytest.approx(0.2)


def test_agreement_refuses_mismatched_or_empty_arrays():
    with pytest.raises(ValueError):
        quant_eval.agreement(np.ones((2, 5)), np.ones((3, 5)))
    with pytest.raises(ValueError):
        quant_eval.agreement(np.ones((0, 5)), np.ones((0, 5)))


def test_tied_top5_counts_rows_with_equal_top_probabilities():
    distinct = softmax_rows(np.arange(10.0)[None])
    tied = np.array([[0.3, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05, 0, 0, 0]])
    tie_below_top5 = np.array([[0.3, 0.25, 0.2, 0.1, 0.07, 0.04, 0.04, 0, 0, 0]])
    assert quant_eval.tied_topk(distinct) == 0.0
    assert quant_eval.tied_topk(np.concatenate([distinct, tied])) == 0.5
    assert quant_eval.tied_topk(tie_below_top5) == 0.0


def test_accuracy_counts_only_photos_with_an_expected_label():
    names = ["chelsea.png", "coffee.png", "astronaut.png"]
    probs = np.zeros((3, 1000))
    probs[0, 285] = 1  # Egyptian cat: right
    probs[1, 968] = 1  # cup: wrong (espresso expected)
    probs[2, 0] = 1  # astronaut has no expected label: not judged
    assert quant_eval.accuracy_on_photos(names, probs) == {
        "correct": 1,
        "of": 2,
        "correct_photos": ["chelsea.png"],
    }


# ---- evaluation crops -----------------------------------------------------------------------
def test_evaluation_crops_are_seeded_and_not_the_calibration_inputs():
    photos = quant_eval.labelled_photos()
    first = quant_eval.evaluation_crops(photos, 12, seed=7)
    again = quant_eval.evaluation_crops(photos, 12, seed=7)
    other = quant_eval.evaluation_crops(photos, 12, seed=8)
    assert [n for n, _ in first] == [list(photos)[i % len(photos)] for i in range(12)]
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for (_, a), (_, b) in zip(first, again, strict=True)
    )
    assert not np.array_equal(np.asarray(first[0][1]), np.asarray(other[0][1]))
    spec = get_spec("efficientnet_lite0")
    calibration = list(quantization.calibration_batches(spec))
    for _, image in first:
        x = spec.preprocessing(image)
        assert not any(np.abs(x - c[0]).mean() < 1e-3 for c in calibration)


# ---- report and docs page -------------------------------------------------------------------
def test_update_page_replaces_only_the_marked_block(tmp_path, monkeypatch):
    monkeypatch.setattr(quant_report, "summary_markdown", lambda results: "NEW FIGURES")
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# t\nbefore\n{quant_report.BEGIN}\nold\n{quant_report.END}\nafter\n")
    assert quant_report.update_page(page, {})
    assert page.read_text() == (
        f"# t\nbefore\n{quant_report.BEGIN}\nNEW FIGURES\n{quant_report.END}\nafter\n"
    )
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    assert not quant_report.update_page(bare, {})
    assert bare.read_text() == "no markers\n"


def test_the_docs_quantization_figures_are_the_committed_run():
    """The benchmarks page shows what reports/quantization/results.json gives."""
    page = ROOT / "docs" / "maintainer" / "benchmarks.md"
    text = page.read_text()
    assert text.count(quant_report.BEGIN) == 1 and text.count(quant_report.END) == 1
    results = json.loads((ROOT / "reports" / "quantization" / "results.json").read_text())
    assert quant_report.render_page(text, results) == text, (
        f"{page} is stale: run python -m hw5kit.bench quant (or update_page from the results)"
    )
    edited = text.replace("efficientnet_lite0 | 17.8", "efficientnet_lite0 | 99.9")
    assert edited != text and quant_report.render_page(edited, results) == text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["quant", "--models", "resnet50"], "not an fp32 model with an int8 variant"),
        (["quant", "--models", "efficientnet_lite0_int8"], "not an fp32 model"),
        (["quant", "--models", "nope"], "unknown model"),
    ],
)
def test_the_quant_command_refuses_models_without_int8(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_the_quant_command_refuses_unknown_variants():
    with pytest.raises(SystemExit, match="unknown variant nope"):
        main(["quant", "--variants", "nope", "--no-page"])


# ---- the reduced run ------------------------------------------------------------------------
@pytest.mark.slow
def test_smoke_run_measures_both_precisions_and_writes_the_report(tmp_path, int8_torch_home):
    out = tmp_path / "report"
    guard_log = tmp_path / "netguard.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HW5_", "GUNICORN_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT / "netguard"), str(ROOT / "src")])
    env["NETGUARD_LOG"] = str(guard_log)
    page = tmp_path / "benchmarks.md"
    page.write_text(f"x\n{quant_report.BEGIN}\n{quant_report.END}\n")
    command = ["quant", "--smoke", "--out", str(out), "--torch-home", str(int8_torch_home)]
    done = subprocess.run(
        [sys.executable, "-m", "hw5kit.bench", *command, "--page", str(page)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not guard_log.exists() or guard_log.read_text() == ""

    results = json.loads((out / "results.json").read_text())
    meta = results["meta"]
    assert meta["recipe_id"] == quantization.recipe_id()
    assert meta["evaluation"]["crops"] == 18 and len(meta["evaluation"]["photos"]) == 9
    assert meta["threads"] >= 1 and meta["load_averages_during"]
    entry = results["models"]["efficientnet_lite0"]
    assert entry["int8"] == "efficientnet_lite0_int8"
    baked = sorted((int8_torch_home / "hw5kit" / "onnx").glob("efficientnet_lite0*.onnx"))
    sizes = {p.name: p.stat().st_size for p in baked}
    assert entry["int8_onnx_bytes"] == sizes[entry["int8_file"]]
    assert entry["fp32_onnx_bytes"] in sizes.values()
    assert entry["int8_onnx_bytes"] < entry["fp32_onnx_bytes"]
    assert entry["photos"]["n"] == 9 and entry["crops"]["n"] == 18
    assert entry["crops_held_out"]["n"] == meta["evaluation"]["crops_of_held_out_photos"] == 4
    # the core photos: right in both precisions
    for row in entry["per_photo"]:
        if row["photo"] in ("chelsea.png", "coffee.png", "china.jpg", "camera.png"):
            assert row["fp32"]["label"] == row["int8"]["label"] and row["calibrated_on"]
    for precision in ("fp32", "int8"):
        s = entry["speed"][precision]
        assert s["forward_p50_ms"] > 0 and s["e2e_p50_ms"] > s["forward_p50_ms"]
        assert s["forward_samples"] == 6 and s["e2e_samples"] == 6
        assert set(s["forward_throughput"]) == {"1", str(meta["batch_max"])}
        assert s["pipeline"]["errors"] == 0 and s["pipeline"]["requests"] > 0
    variant = results["variants"]["per_tensor"]
    assert variant["recipe"]["per_channel"] is False and variant["size_bytes"] > 0
    assert results["variants"]["served"]["tied_top5"] == entry["tied_top5"]["int8"]

    text = (out / "README.md").read_text()
    assert "python -m hw5kit.bench quant --smoke" in text
    assert f"| efficientnet_lite0 | {entry['photos']['top1_count']}/9 |" in text
    assert "weights per tensor instead of per channel" in text
    summary = page.read_text()
    assert "| efficientnet_lite0 |" in summary and "reports/quantization/README.md" in summary
