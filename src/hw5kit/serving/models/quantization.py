"""int8 models: ONNX Runtime static quantization of the fp32 exports, at build time, offline.

``efficientnet_liteN_int8`` is ``efficientnet_liteN``'s ONNX export (``runtime.py``) quantized
by ONNX Runtime's own tool, ``onnxruntime.quantization.quantize_static``, with the settings its
documentation recommends for x86-64 CPUs with VNNI (``RECIPE``, defined with the calibration set
in ``recipe.py``): QDQ format, weights int8 symmetric per output channel, activations uint8 per
tensor with ranges calibrated (MinMax) on real photos; the logits (the classifier's output) and
the softmax stay float32 so that probabilities stay fine-grained.

Calibration never downloads anything: it runs on ``CALIBRATION_PHOTOS``, small copies of
labelled photos whose licences allow redistribution, shipped in this package
(``calibration/``, sources and licences in ``calibration/SOURCES.md``), plus seeded
augmentations of them (random crops, flips, colour jitter). So any build, with or without the
photo packages installed, makes the same artefact.

Where: ``weights bake`` (build time) quantizes into ``$TORCH_HOME/hw5kit/onnx`` next to the
fp32 exports, under a name keyed by the source weights' SHA-256 and by ``recipe_id()`` (the
settings and the calibration files), so a changed recipe or calibration set is never confused
with an old artefact. A service never quantizes: asked for an int8 model whose artefact is
missing, it stops at start naming the file and the command that makes it (``weights.py``).

Before an artefact is written it must give fp32's top-1 on the core labelled photos of the
calibration set (a cat, an espresso, a palace, a tripod); ``python -m hw5kit.bench quant``
measures how far it moves from fp32 otherwise (reports/quantization/).

    python -m hw5kit.serving.models.quantization calibration-set --out DIR   # maintainers
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from . import runtime
from .onnxfiles import INPUT_NAME, onnx_cache_dir, weights_digest, write_atomically
from .recipe import (
    CALIBRATION_DIR,
    CALIBRATION_PHOTOS,
    RECIPE,
    CalibrationPhoto,
    Recipe,
    calibration_file,
    recipe_id,
)

if TYPE_CHECKING:
    from .catalog import ModelSpec

INT8_SUFFIX = "_int8"
# Shorter side of the shipped copies: more than any model's resize (292 for Lite2).
CALIBRATION_SIDE = 320
CALIBRATION_QUALITY = 90


# The labelled photos every int8 artefact must classify as fp32 does before it is written.
GATE_PHOTOS = ("chelsea.jpg", "coffee.jpg", "china.jpg", "camera.jpg")


def load_calibration_photos() -> list[tuple[CalibrationPhoto, Image.Image]]:
    out = []
    for photo in CALIBRATION_PHOTOS:
        path = calibration_file(photo)
        if not path.is_file():
            raise FileNotFoundError(
                f"calibration photo {path} is missing: the hw5kit install is incomplete "
                "(reinstall it, or rebuild the set with `python -m "
                "hw5kit.serving.models.quantization calibration-set`)"
            )
        with Image.open(path) as image:
            out.append((photo, image.convert("RGB")))
    return out


def calibration_augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random crop (30-100% of the area), maybe mirrored, with jittered colours."""
    width, height = image.size
    area = rng.uniform(0.3, 1.0) * width * height
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    crop_w = max(8, min(width, round(math.sqrt(area * ratio))))
    crop_h = max(8, min(height, round(math.sqrt(area / ratio))))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    image = image.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhancer(image).enhance(float(rng.uniform(0.7, 1.3)))
    return image


def calibration_batches(spec: ModelSpec, recipe: Recipe = RECIPE) -> Iterator[np.ndarray]:
    """Preprocessed (1, 3, H, W) inputs: each shipped photo, then its augmentations."""
    rng = np.random.default_rng(recipe.seed)
    for _photo, image in load_calibration_photos():
        yield spec.preprocessing(image)[None]
        for _ in range(recipe.augmentations_per_photo):
            yield spec.preprocessing(calibration_augment(image, rng))[None]


def make_calibration_set(out: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Maintainers: write the shipped copies from the installed photo packages."""
    from ...photos import photo as find_photo

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for photo in CALIBRATION_PHOTOS:
        with Image.open(find_photo(photo.photo).path) as source:
            image = source.convert("RGB")
        scale = CALIBRATION_SIDE / min(image.size)
        if scale < 1:
            size = (round(image.width * scale), round(image.height * scale))
            image = image.resize(size, Image.Resampling.LANCZOS)
        target = out / photo.file
        image.save(target, "JPEG", quality=CALIBRATION_QUALITY, optimize=True)
        log(f"{target} ({image.width}x{image.height}, {target.stat().st_size // 1024} KiB)")
        written.append(target)
    return written


# ---- quantizing ---------------------------------------------------------------------------
def artefact_path(spec: ModelSpec, source_weights: Path, cache_dir: Path | None = None) -> Path:
    """Where the int8 model made from these fp32 weights with ``RECIPE`` lives."""
    folder = cache_dir or onnx_cache_dir()
    digest = weights_digest(source_weights)[:16]
    return folder / f"{spec.name}-{digest}-{recipe_id()}.onnx"


class _Reader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over ``calibration_batches``."""

    def __init__(self, spec: ModelSpec, recipe: Recipe, input_name: str):
        self._batches = calibration_batches(spec, recipe)
        self._input = input_name
        self.count = 0

    def get_next(self) -> dict | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        self.count += 1
        return {self._input: batch}


def quantize(
    spec: ModelSpec,
    fp32_onnx: Path,
    *,
    recipe: Recipe = RECIPE,
    source_digest: str = "",
    log: Callable[[str], None] = print,
) -> bytes:
    """The int8 ONNX bytes of ``fp32_onnx`` (``spec`` is the int8 model it becomes)."""
    import onnx
    import onnxruntime
    from onnxruntime import quantization as oq

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hw5-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "int8.onnx"
        # ONNX Runtime's recommended pre-processing: shape inference and graph optimisation
        # (folds the export's dynamic padding into the convolutions, so they quantize whole).
        oq.quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        keep = [node.name for node in graph.node if node.op_type in recipe.keep_float]
        reader = _Reader(spec, recipe, INPUT_NAME)
        oq.quantize_static(
            str(prepared),
            str(quantized),
            reader,
            quant_format=getattr(oq.QuantFormat, recipe.quant_format),
            per_channel=recipe.per_channel,
            reduce_range=recipe.reduce_range,
            activation_type=getattr(oq.QuantType, recipe.activation_type),
            weight_type=getattr(oq.QuantType, recipe.weight_type),
            calibrate_method=getattr(oq.CalibrationMethod, recipe.calibrate_method),
            nodes_to_exclude=keep,
            extra_options={"OpTypesToExcludeOutputQuantization": list(recipe.float_outputs)},
        )
        model = onnx.load(str(quantized))
    seconds = time.perf_counter() - start
    facts = {
        "hw5kit.quantized_from": spec.quantized_from or "",
        "hw5kit.source_weights_sha256": source_digest,
        "hw5kit.recipe_id": recipe_id(recipe),
        "hw5kit.recipe": json.dumps(asdict(recipe), sort_keys=True),
        "hw5kit.calibration_images": str(reader.count),
        "hw5kit.onnxruntime": onnxruntime.__version__,
    }
    for key, value in facts.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    log(f"{spec.name}: quantized on {reader.count} calibration images in {seconds:.1f} s")
    return model.SerializeToString()


def gate_disagreements(fp32_engine, int8_engine, spec: ModelSpec) -> list[str]:
    """The gate photos on which the int8 model's top-1 differs from fp32's."""
    photos = {photo.file: image for photo, image in load_calibration_photos()}
    batch = np.stack([spec.preprocessing(photos[name]) for name in GATE_PHOTOS])
    ref, got = fp32_engine(batch).argmax(1), int8_engine(batch).argmax(1)
    return [name for name, a, b in zip(GATE_PHOTOS, ref, got, strict=True) if a != b]


def bake_int8(
    spec: ModelSpec,
    source_weights: Path,
    fp32_onnx: Path,
    cache_dir: Path,
    *,
    log: Callable[[str], None] = print,
) -> Path:
    """Build time: quantize ``fp32_onnx`` into ``cache_dir`` unless already there; the file.

    ``RuntimeError`` if the result disagrees with fp32 on a gate photo (nothing is written).
    """
    target = artefact_path(spec, source_weights, cache_dir)
    if target.is_file():
        log(f"{spec.name}: int8 model already made ({target})")
        return target
    digest = weights_digest(source_weights)
    data = quantize(spec, fp32_onnx, source_digest=digest, log=log)
    int8 = runtime.OnnxEngine(data, 1, source="quantized in memory")
    fp32 = runtime.OnnxEngine(fp32_onnx, 1, source=str(fp32_onnx))
    wrong = gate_disagreements(fp32, int8, spec)
    if wrong:
        raise RuntimeError(
            f"the int8 model differs from {spec.quantized_from} (fp32) in its top-1 class on "
            f"{', '.join(wrong)}; not written"
        )
    write_atomically(target, data)
    log(f"{spec.name}: int8 model ready ({target}, {len(data) / 2**20:.1f} MiB)")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw5kit.serving.models.quantization",
        description="Maintainers: rebuild the calibration photos shipped in hw5kit from the "
        "installed photo packages (scikit-image, scikit-learn). The int8 models themselves are "
        "made by `python -m hw5kit.serving.models.weights bake efficientnet_lite0_int8 ...`.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cal = sub.add_parser("calibration-set", help="write the calibration photos")
    cal.add_argument("--out", type=Path, default=CALIBRATION_DIR, help="default: %(default)s")
    args = parser.parse_args(argv)
    try:
        make_calibration_set(args.out)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
