"""``python -m hw5kit.bench quant``: what int8 costs and buys, fp32 against int8, one run.

For each offline model and its ``_int8`` variant, made the way an image build makes them
(``weights bake`` in a child process, into a temporary ``TORCH_HOME``), it measures:

* size: the fp32 ONNX export and the int8 file on disk, and the build time of the int8 file;
* latency: the forward pass alone and our whole in-process pipeline (decode, preprocess,
  micro-batched inference, top-k) for one image, p50, fp32 and int8 interleaved round by round so
  that a shared machine's changing load hits both alike;
* throughput: forward passes at batch 1 and at the micro-batch size (``HW5_BATCH_MAX``), and the
  in-process pipeline driven by that many concurrent callers;
* agreement: top-1 and top-5 of int8 against fp32 on the labelled photos and on seeded
  augmented crops of them (rotations, tighter crops, blur, grey, JPEG re-encoding: not the
  calibration's augmentations, and two of the photos are never calibrated on), how far
  probabilities move, and top-1 accuracy on the labelled photos against their expected labels;
* recipe variants (efficientnet_lite0): what the served recipe's choices are worth.

Nothing here imports torch (the bake child does). ``--smoke`` is a bounded run for tests.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import paths
from ..photos import PHOTOS
from ..serving.models import OFFLINE_MODELS, Classifier, get_spec
from ..serving.models import quantization as q
from ..serving.models import runtime as rt
from ..serving.models.weights import weights_path
from . import procstats
from .harness import run_meta
from .inprocess import ServiceClient, payloads
from .load import percentile, run_load
from .quant_eval import (
    agreement,
    evaluate,
    evaluation_crops,
    labelled_photos,
    probabilities,
    tied_topk,
)

Log = Callable[[str], None]

# The recipe variants compared with the served recipe (on the first model of the run).
VARIANTS: dict[str, dict] = {
    "per_tensor": {"per_channel": False},
    "qoperator": {"quant_format": "QOperator"},
    "int8_logits": {"float_outputs": ()},
}
VARIANT_TITLES = {
    "served": "served recipe (QDQ, per-channel weights, float logits)",
    "per_tensor": "weights per tensor instead of per channel",
    "qoperator": "QOperator format instead of QDQ (the tool then quantizes the logits too)",
    "int8_logits": "logits quantized too (uint8)",
}


@dataclass
class QuantPlan:
    models: list[str] = field(default_factory=lambda: list(OFFLINE_MODELS))
    crops: int = 216  # augmented evaluation crops (round-robin over the labelled photos)
    seed: int = 7  # evaluation augmentations; the calibration's seed is q.RECIPE.seed
    rounds: int = 6  # interleaved latency and throughput rounds
    forward_per_round: int = 20  # single-image forward passes per model and round
    e2e_per_round: int = 9  # single-image in-process predictions per model and round
    throughput_seconds: float = 0.8  # per model, precision, batch size and round
    load_seconds: float = 3.0  # in-process pipeline at concurrency HW5_BATCH_MAX, per model,
    # split over the rounds
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))


SMOKE = {
    "models": ["efficientnet_lite0"],
    "crops": 18,
    "rounds": 2,
    "forward_per_round": 3,
    "e2e_per_round": 3,
    "throughput_seconds": 0.15,
    "load_seconds": 0.4,
    "variants": ["per_tensor"],
}


# ---- speed ----------------------------------------------------------------------------------
def _timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _rate(fn: Callable[[], object], images_per_call: int, seconds: float) -> tuple[int, float]:
    """(images, elapsed): ``fn`` called until ``seconds`` have passed (at least twice)."""
    start = time.perf_counter()
    calls = 0
    while calls < 2 or time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls * images_per_call, time.perf_counter() - start


def measure_speed(
    classifiers: dict[str, Classifier],
    service,
    photo_bytes: dict[str, bytes],
    pixels: dict[str, np.ndarray],
    plan: QuantPlan,
    batch_max: int,
    log: Log,
) -> dict:
    """Latency and throughput of every classifier, interleaved round by round."""
    from ..serving.service import PredictRequest

    names = list(classifiers)
    forward: dict[str, list[float]] = {n: [] for n in names}
    e2e: dict[str, list[float]] = {n: [] for n in names}
    rates = {n: {b: [0, 0.0] for b in (1, batch_max)} for n in names}
    loads: list[float] = []
    photo_names = list(photo_bytes)
    for c in classifiers.values():  # warm-up: first runs allocate
        for b in (1, batch_max):
            c.predict_proba(np.repeat(pixels[c.name], b, axis=0))
    for r in range(plan.rounds):
        loads.append(procstats.load_average()[0])
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            c, x1 = classifiers[name], pixels[name]
            forward[name] += _timed(lambda c=c, x1=x1: c.predict_proba(x1), plan.forward_per_round)
            for i in range(plan.e2e_per_round):
                data = photo_bytes[photo_names[(r * plan.e2e_per_round + i) % len(photo_names)]]
                start = time.perf_counter()
                service.predict(PredictRequest(model=name, data=data, top_k=5))
                e2e[name].append(time.perf_counter() - start)
            for b in (1, batch_max):
                xb = np.repeat(x1, b, axis=0)
                done, spent = _rate(
                    lambda c=c, xb=xb: c.predict_proba(xb), b, plan.throughput_seconds
                )
                rates[name][b][0] += done
                rates[name][b][1] += spent
        log(f"  speed round {r + 1}/{plan.rounds} done (load average {loads[-1]:.2f})")
    # the pipeline under load, also in alternating rounds: a slice of load_seconds each
    pipeline = {n: {"ok": 0, "errors": 0, "seconds": 0.0, "latencies": []} for n in names}
    items = {n: payloads("upload", n, "", photo_names) for n in names}
    for r in range(plan.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            result = run_load(
                lambda: ServiceClient(service, []),
                items[name],
                concurrency=batch_max,
                duration=plan.load_seconds / plan.rounds,
                warmup=0.1,
            )
            acc = pipeline[name]
            acc["ok"] += result.ok
            acc["errors"] += result.errors
            acc["seconds"] += result.seconds
            acc["latencies"] += result.latencies
        loads.append(procstats.load_average()[0])
    log(f"  pipeline with {batch_max} callers done (load average {loads[-1]:.2f})")
    pipeline = {
        name: {
            "throughput": acc["ok"] / acc["seconds"] if acc["seconds"] else 0.0,
            "requests": acc["ok"],
            "errors": acc["errors"],
            "concurrency": batch_max,
            "p50_ms": _ms(percentile(acc["latencies"], 50)),
        }
        for name, acc in pipeline.items()
    }
    return {
        name: {
            "forward_p50_ms": _ms(statistics.median(forward[name])),
            "forward_samples": len(forward[name]),
            "e2e_p50_ms": _ms(statistics.median(e2e[name])),
            "e2e_samples": len(e2e[name]),
            "forward_throughput": {
                str(b): done / spent for b, (done, spent) in rates[name].items()
            },
            "pipeline": pipeline[name],
        }
        for name in names
    } | {"_load_averages": loads}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


# ---- the build step -------------------------------------------------------------------------
def bake_in_subprocess(names: list[str], torch_home: Path, log: Log) -> float:
    """``weights bake`` in a child process (this one never imports torch); its seconds."""
    start = time.perf_counter()
    env = {**os.environ, "TORCH_HOME": str(torch_home)}
    env["PYTHONPATH"] = paths.pythonpath()
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-m",
            "hw5kit.serving.models.weights",
            "bake",
            "--torch-home",
            str(torch_home),
            *names,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    for line in done.stdout.splitlines():
        log(f"  bake: {line}")
    if done.returncode != 0:
        raise RuntimeError(f"weights bake failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return time.perf_counter() - start


@contextlib.contextmanager
def torch_home_env(path: Path) -> Iterator[None]:
    before = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = before


# ---- variants -------------------------------------------------------------------------------
def measure_variants(model: str, plan: QuantPlan, photos, crops, log: Log) -> dict:
    """The first model quantized with each variant recipe, against its fp32 export."""
    base = get_spec(model)
    int8_spec = get_spec(f"{model}{q.INT8_SUFFIX}")
    source = weights_path(base)
    fp32_path = rt.onnx_cache_path(base, source)
    threads = rt.usable_cpus()
    fp32 = Classifier(
        base, rt.OnnxEngine(fp32_path, threads, source="fp32"), weights=None, load_seconds=0
    )
    served_path = weights_path(int8_spec)
    recipes = {"served": (q.RECIPE, served_path.read_bytes())}
    for name in plan.variants:
        recipe = replace(q.RECIPE, **VARIANTS[name])
        log(f"  variant {name}: quantizing {model}")
        recipes[name] = (
            recipe,
            q.quantize(int8_spec, fp32_path, recipe=recipe, log=lambda m: None),
        )
    x1 = fp32.preprocess(photos["chelsea.png"])[None]
    out = {}
    engines = {
        name: Classifier(
            int8_spec, rt.OnnxEngine(data, threads, source=name), weights=None, load_seconds=0
        )
        for name, (_recipe, data) in recipes.items()
    }
    timings: dict[str, list[float]] = {name: [] for name in ["fp32", *engines]}
    for c in [fp32, *engines.values()]:
        c.predict_proba(x1)
    for _ in range(plan.rounds):
        for name, c in [("fp32", fp32), *engines.items()]:
            timings[name] += _timed(lambda c=c: c.predict_proba(x1), plan.forward_per_round)
    p32_photos = probabilities(fp32, list(photos.values()))
    p32_crops = probabilities(fp32, [image for _, image in crops])
    for name, c in engines.items():
        recipe, data = recipes[name]
        c_photos = probabilities(c, list(photos.values()))
        c_crops = probabilities(c, [image for _, image in crops])
        out[name] = {
            "title": VARIANT_TITLES[name],
            "recipe": asdict(recipe),
            "size_bytes": len(data),
            "forward_p50_ms": _ms(statistics.median(timings[name])),
            "photos": agreement(p32_photos, c_photos),
            "crops": agreement(p32_crops, c_crops),
            "tied_top5": tied_topk(np.concatenate([c_photos, c_crops])),
        }
    out["_fp32_forward_p50_ms"] = _ms(statistics.median(timings["fp32"]))
    out["_model"] = model
    return out


# ---- the run --------------------------------------------------------------------------------
def cpu_flags() -> dict:
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return {f: f in flags for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")}


def run(plan: QuantPlan, *, command: str, torch_home: Path | None = None, log: Log = print) -> dict:
    from ..serving.registry import ModelRegistry, settings_loader
    from ..serving.service import PredictionService
    from ..serving.settings import ServingSettings

    started = time.perf_counter()
    int8_names = [f"{m}{q.INT8_SUFFIX}" for m in plan.models]
    results: dict = {
        "meta": run_meta(
            command,
            plan,
            cpu_flags=cpu_flags(),
            recipe=asdict(q.RECIPE),
            recipe_id=q.recipe_id(),
            recipe_description=q.RECIPE.describe(),
        ),
        "models": {},
    }
    photos = labelled_photos()
    crops = evaluation_crops(photos, plan.crops, plan.seed)
    results["meta"]["evaluation"] = {
        "photos": list(photos),
        "crops": len(crops),
        "crops_of_held_out_photos": sum(
            name not in {p.photo for p in q.CALIBRATION_PHOTOS} for name, _ in crops
        ),
        "seed": plan.seed,
    }
    with contextlib.ExitStack() as stack:
        if torch_home is None:
            torch_home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hw5-q-")))
        stack.enter_context(torch_home_env(torch_home))
        log(f"baking {', '.join(plan.models)} and their int8 variants into {torch_home}")
        bake = {}
        for model, int8 in zip(plan.models, int8_names, strict=True):
            bake[model] = bake_in_subprocess([model], torch_home, log)
            bake[int8] = bake_in_subprocess([int8], torch_home, log)
        env = {
            **os.environ,
            "MODELS": ",".join(
                m for pair in zip(plan.models, int8_names, strict=True) for m in pair
            ),
            "HW5_LOAD": "sync",
            # int8 runs on ONNX Runtime only: compare it with fp32 on the same runtime
            "HW5_RUNTIME": "onnx",
        }
        settings = ServingSettings.from_env("v2", env)
        results["meta"]["threads"] = settings.torch_threads
        results["meta"]["batch_max"] = settings.batch_max
        registry = ModelRegistry(settings.models, loader=settings_loader(settings))
        registry.start(background=False)
        service = PredictionService(settings, registry)
        classifiers = {name: registry.get(name) for name in settings.models}
        for model, int8 in zip(plan.models, int8_names, strict=True):
            log(f"evaluating {int8} against {model} on {len(photos)} photos + {len(crops)} crops")
            fp32_c, int8_c = classifiers[model], classifiers[int8]
            if fp32_c.runtime != "onnx":
                raise RuntimeError(f"{model} is served by {fp32_c.runtime}, not ONNX Runtime")
            fp32_file = rt.onnx_cache_path(fp32_c.spec, weights_path(fp32_c.spec))
            results["models"][model] = {
                "int8": int8,
                "fp32_onnx_bytes": fp32_file.stat().st_size,
                "int8_onnx_bytes": int8_c.weights.stat().st_size,
                "fp32_weights_bytes": weights_path(fp32_c.spec).stat().st_size,
                "int8_file": int8_c.weights.name,
                "bake_seconds": {"fp32": bake[model], "int8": bake[int8]},
                "input_size": fp32_c.spec.preprocessing.crop,
                **evaluate(fp32_c, int8_c, photos, crops),
            }
        log(f"timing {len(classifiers)} models, {plan.rounds} interleaved rounds")
        photo_bytes = {n: PHOTOS[n].path.read_bytes() for n in photos}
        pixels = {n: c.preprocess(photos["chelsea.png"])[None] for n, c in classifiers.items()}
        speed = measure_speed(
            classifiers, service, photo_bytes, pixels, plan, settings.batch_max, log
        )
        results["meta"]["load_averages_during"] = speed.pop("_load_averages")
        for model, int8 in zip(plan.models, int8_names, strict=True):
            results["models"][model]["speed"] = {"fp32": speed[model], "int8": speed[int8]}
        service.batcher.close()
        if plan.variants:
            log(f"recipe variants on {plan.models[0]}: {', '.join(plan.variants)}")
            results["variants"] = measure_variants(plan.models[0], plan, photos, crops, log)
    results["meta"]["load_average_after"] = procstats.load_average()
    results["meta"]["wall_seconds"] = time.perf_counter() - started
    return results


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b and math.isfinite(a / b) else None
