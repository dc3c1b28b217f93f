"""What ``python -m hw5kit.bench quant`` compares int8 with fp32 on (``quant.py`` measures):
the labelled photos and seeded augmented crops of them (rotations, tighter crops, blur, grey,
JPEG re-encoding: not the calibration's augmentations), and how two models' answers on them
agree: top-1 and top-k overlap, how far probabilities move, tied top-k, accuracy on the photos'
expected labels."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from ..photos import PHOTOS
from ..serving.models import Classifier
from ..serving.models.recipe import CALIBRATION_PHOTOS


# ---- evaluation images ----------------------------------------------------------------------
def evaluation_augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Unlike the calibration's: rotate, zoom in, maybe blur or grey, lower the resolution,
    and re-encode as JPEG at a random quality."""
    image = image.rotate(float(rng.uniform(-15, 15)), Image.Resampling.BICUBIC)
    width, height = image.size
    side = rng.uniform(0.45, 0.85)
    crop_w = max(16, round(width * side * rng.uniform(0.9, 1.1)))
    crop_h = max(16, round(height * side * rng.uniform(0.9, 1.1)))
    crop_w, crop_h = min(crop_w, width), min(crop_h, height)
    # centred within +-10% of the frame, which keeps most of the rotation's blank corners out
    cx = width / 2 + rng.uniform(-0.1, 0.1) * width
    cy = height / 2 + rng.uniform(-0.1, 0.1) * height
    left = int(min(max(0, cx - crop_w / 2), width - crop_w))
    top = int(min(max(0, cy - crop_h / 2), height - crop_h))
    image = image.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.5))))
    if rng.random() < 0.2:
        image = ImageOps.grayscale(image).convert("RGB")
    scale = rng.uniform(0.5, 1.0)
    image = image.resize(
        (max(16, round(image.width * scale)), max(16, round(image.height * scale))),
        Image.Resampling.BILINEAR,
    )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(30, 91)))
    with Image.open(io.BytesIO(buffer.getvalue())) as reloaded:
        return reloaded.convert("RGB")


def labelled_photos() -> dict[str, Image.Image]:
    """Every labelled photo, from the packages that ship them (the ``test`` extra)."""
    out = {}
    for name, photo in PHOTOS.items():
        try:
            with Image.open(photo.path) as image:
                out[name] = image.convert("RGB")
        except FileNotFoundError as exc:
            raise SystemExit(
                f"error: {exc}. The quantization report evaluates on every labelled photo: "
                "install the test extra (pip install -e '.[test]', or run it through nox)"
            ) from None
    return out


def evaluation_crops(
    photos: dict[str, Image.Image], n: int, seed: int
) -> list[tuple[str, Image.Image]]:
    """``n`` seeded augmented crops, taking the photos in turn."""
    rng = np.random.default_rng(seed)
    names = list(photos)
    return [
        (names[i % len(names)], evaluation_augment(photos[names[i % len(names)]], rng))
        for i in range(n)
    ]


# ---- agreement ------------------------------------------------------------------------------
def topk_indices(probabilities: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the ``k`` largest values (any order)."""
    return np.argpartition(-probabilities, k - 1, axis=1)[:, :k]


def agreement(reference: np.ndarray, other: np.ndarray, k: int = 5) -> dict:
    """How ``other`` (int8) agrees with ``reference`` (fp32), both (N, classes) probabilities.

    ``top1``: share of rows with the same most probable class; ``topk_overlap``: mean share of
    the k most probable classes the two have in common; ``topk_same_set``: share of rows whose
    k most probable classes are the same set; ``top1_in_topk``: share of rows where reference's
    top-1 is among other's top-k; ``max_abs_diff``: largest change of any probability;
    ``mean/max_top1_prob_diff``: change of the probability of reference's top-1 class.
    """
    if reference.shape != other.shape or reference.ndim != 2 or len(reference) == 0:
        raise ValueError(f"need two non-empty (N, C) arrays, got {reference.shape}, {other.shape}")
    rows = np.arange(len(reference))
    ref1, oth1 = reference.argmax(1), other.argmax(1)
    ref_k, oth_k = topk_indices(reference, k), topk_indices(other, k)
    shared = np.array([len(set(a) & set(b)) for a, b in zip(ref_k, oth_k, strict=True)])
    in_topk = np.array([r in set(b) for r, b in zip(ref1, oth_k, strict=True)])
    top1_diff = np.abs(reference[rows, ref1] - other[rows, ref1])
    return {
        "n": len(reference),
        "top1": float(np.mean(ref1 == oth1)),
        "top1_count": int(np.sum(ref1 == oth1)),
        "topk_overlap": float(np.mean(shared / k)),
        "topk_same_set": float(np.mean(shared == k)),
        "top1_in_topk": float(np.mean(in_topk)),
        "max_abs_diff": float(np.abs(reference - other).max()),
        "mean_top1_prob_diff": float(top1_diff.mean()),
        "max_top1_prob_diff": float(top1_diff.max()),
        "k": k,
    }


def tied_topk(probabilities: np.ndarray, k: int = 5) -> float:
    """Share of rows whose ``k`` largest probabilities are not all different (quantized
    logits give ties, and then the order of the top classes is arbitrary)."""
    top = np.take_along_axis(probabilities, topk_indices(probabilities, k), axis=1)
    return float(np.mean([len(np.unique(row)) < k for row in top]))


def probabilities(classifier: Classifier, images: list[Image.Image], batch: int = 16):
    pixels = np.stack([classifier.preprocess(image) for image in images])
    return np.concatenate(
        [classifier.predict_proba(pixels[i : i + batch]) for i in range(0, len(pixels), batch)]
    )


def accuracy_on_photos(names: list[str], probs: np.ndarray) -> dict:
    """Top-1 against the expected labels, over the photos that have some."""
    from ..serving.labels import imagenet_labels

    labels = imagenet_labels()
    judged = [(n, labels[int(p.argmax())]) for n, p in zip(names, probs, strict=True)]
    judged = [(n, label) for n, label in judged if PHOTOS[n].expected]
    correct = [n for n, label in judged if PHOTOS[n].matches(label)]
    return {"correct": len(correct), "of": len(judged), "correct_photos": correct}


def evaluate(fp32: Classifier, int8: Classifier, photos, crops) -> dict:
    from ..serving.labels import imagenet_labels

    labels = imagenet_labels()
    names = list(photos)
    p32, p8 = probabilities(fp32, list(photos.values())), probabilities(int8, list(photos.values()))
    c32 = probabilities(fp32, [image for _, image in crops])
    c8 = probabilities(int8, [image for _, image in crops])
    calibrated = {p.photo for p in CALIBRATION_PHOTOS}
    held_out = np.array([name not in calibrated for name, _ in crops])
    confident = c32.max(1) >= 0.5
    per_photo = [
        {
            "photo": name,
            "expected": sorted(PHOTOS[name].expected),
            "calibrated_on": name in calibrated,
            "fp32": {"label": labels[int(a.argmax())], "probability": float(a.max())},
            "int8": {"label": labels[int(b.argmax())], "probability": float(b.max())},
            "int8_probability_of_fp32_top1": float(b[int(a.argmax())]),
        }
        for name, a, b in zip(names, p32, p8, strict=True)
    ]
    return {
        "photos": agreement(p32, p8),
        "crops": agreement(c32, c8),
        "crops_held_out": agreement(c32[held_out], c8[held_out]) if held_out.any() else None,
        "crops_confident": agreement(c32[confident], c8[confident]) if confident.any() else None,
        "tied_top5": {
            "fp32": tied_topk(np.concatenate([p32, c32])),
            "int8": tied_topk(np.concatenate([p8, c8])),
        },
        "accuracy": {"fp32": accuracy_on_photos(names, p32), "int8": accuracy_on_photos(names, p8)},
        "per_photo": per_photo,
    }
