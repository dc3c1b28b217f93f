"""Inference engines: ONNX Runtime when it is installed and its export agrees, else torch.

Measured on the 2-vCPU machines this kit targets (see ``reports/bench``), EfficientNet-Lite0's
forward pass takes about 20-30 ms in torch eager and 4-8 ms in ONNX Runtime, with the same top-1
on every labelled photo. So:

* ``onnx``: the torch module is exported once to ONNX (softmax included) and run by ONNX
  Runtime. The export is cached on disk, keyed by the weights file's content, in
  ``onnx_cache_dir()``; ``weights bake`` fills that cache at build time, so a service started
  from baked weights never imports torch and starts in about a second. An export is checked
  against torch on a probe batch before it is used or cached.
* ``torch``: eager torch under ``inference_mode`` with the intra-op threads set to the cores.
* ``auto`` (the default): ``onnx`` if ``onnxruntime`` imports, else ``torch``.

int8 models (``quantization.py``) exist only as ONNX files made at build time: ONNX Runtime runs
them whatever the setting, except ``torch``, which cannot and says so.

Engines are safe to call from any thread; the serving layer still sends every forward pass
through one batching thread (``serving.batching``) so that N request threads never run N
multi-threaded forward passes on two cores at once (the oversubscription trap).
"""

from __future__ import annotations

import io
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from ..errors import ModelUnavailable
from .catalog import ModelSpec
from .onnxfiles import (
    INPUT_NAME,
    OUTPUT_NAME,
    onnx_cache_dir,
    weights_digest,
    write_atomically,
)

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "onnx", "torch")
ONNX_OPSET = 17
# Bump when the exported graph changes (wrapper, opset, names): old cache files are then ignored.
EXPORT_VERSION = "v1"
# An export is used only if it reproduces torch's probabilities this closely on the probe batch.
EXPORT_TOLERANCE = 1e-3

_torch_lock = threading.Lock()


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which containers narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_runtime(runtime: str) -> str:
    """``auto`` -> ``onnx`` or ``torch``; an explicit ``onnx`` needs onnxruntime installed."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "auto":
        return "onnx" if onnxruntime_available() else "torch"
    if runtime == "onnx" and not onnxruntime_available():
        raise ModelUnavailable(
            "HW5_RUNTIME=onnx but the package onnxruntime is not installed "
            "(pip install onnxruntime, or set HW5_RUNTIME=auto to fall back to torch)"
        )
    return runtime


# ---- the ONNX cache -----------------------------------------------------------------------
def onnx_cache_path(spec: ModelSpec, weights: Path, cache_dir: Path | None = None) -> Path:
    """Where the export of these exact weights lives: name, weights hash, export version."""
    folder = cache_dir or onnx_cache_dir()
    digest = weights_digest(weights)[:16]
    return folder / f"{spec.name}-{digest}-{EXPORT_VERSION}-opset{ONNX_OPSET}.onnx"


# ---- engines ------------------------------------------------------------------------------
def torch_probabilities(module, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        logits = module(torch.from_numpy(np.ascontiguousarray(batch, np.float32)))
        return torch.softmax(logits.float(), dim=1).numpy()


class TorchEngine:
    """Eager torch, ``inference_mode``; softmax in float32."""

    kind = "torch"

    def __init__(self, module, threads: int):
        import torch

        # intra-op threads are process-global in torch; size them to the cores once
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        self.module = module
        self.threads = threads

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return torch_probabilities(self.module, batch)

    def describe(self) -> dict:
        return {"runtime": self.kind, "threads": self.threads}


class OnnxEngine:
    """An ONNX Runtime session on the CPU with ``threads`` intra-op threads, no spinning."""

    kind = "onnx"

    def __init__(self, model: bytes | Path, threads: int, *, source: str):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads must not spin: on two cores they would steal the CPU that request
        # threads need for decoding and preprocessing between forward passes.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(model) if isinstance(model, Path) else model,
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self.threads = threads
        self.source = source
        # what the file says about itself (int8 models: how they were quantized)
        self.model_metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(batch, np.float32)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: pixels})[0]

    def describe(self) -> dict:
        info = {"runtime": self.kind, "threads": self.threads, "onnx": self.source}
        if self.model_metadata:
            info["model_metadata"] = self.model_metadata
        return info


# ---- building -----------------------------------------------------------------------------
def build_torch_module(spec: ModelSpec, path: Path):
    """The torch module of ``spec`` with the weights at ``path``, in eval mode."""
    import torch

    with _torch_lock:  # model construction touches torch globals; forward passes do not
        if spec.family == "efficientnet_lite":
            from efficientnet_lite_pytorch import EfficientNet

            module = EfficientNet.from_name(spec.arch)
        elif spec.family == "torchvision":
            from torchvision.models import get_model_builder

            module = get_model_builder(spec.arch)(weights=None)
        else:  # pragma: no cover - the catalog only produces the families above
            raise ModelUnavailable(f"no loader for model family {spec.family!r}")
        try:
            # weights_only: a checkpoint is data, never code to run
            state = torch.load(path, map_location="cpu", weights_only=True)
            module.load_state_dict(state, strict=True)
        except Exception as exc:  # torch's unpickler raises many types on a bad file
            raise ModelUnavailable(
                f"weights file {path} for model {spec.name!r} could not be loaded: "
                f"{str(exc).splitlines()[0][:300]}"
            ) from exc
    return module.eval()


def probe_batch(spec: ModelSpec, n: int = 2) -> np.ndarray:
    """A fixed pseudo-random batch in the model's normalised input range."""
    crop = spec.preprocessing.crop
    return np.random.default_rng(1234).standard_normal((n, 3, crop, crop)).astype(np.float32)


def export_onnx(spec: ModelSpec, module) -> bytes:
    """The ONNX bytes of ``module`` followed by a softmax, with a dynamic batch axis."""
    import torch

    crop = spec.preprocessing.crop
    wrapper = torch.nn.Sequential(module, torch.nn.Softmax(dim=1)).eval()
    buffer = io.BytesIO()
    with _torch_lock, warnings.catch_warnings(), torch.inference_mode(False):
        # The exporter is chatty (deprecation of the TorchScript path, constant folding notes).
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                wrapper,
                (torch.zeros(1, 3, crop, crop),),
                buffer,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
        except Exception as exc:
            raise RuntimeError(f"ONNX export of {spec.name} failed: {exc}") from exc
    return buffer.getvalue()


def cached_onnx_engine(spec: ModelSpec, weights: Path, threads: int) -> OnnxEngine | None:
    """The engine from the cache, or None when there is no usable cached export."""
    cached = onnx_cache_path(spec, weights)
    if not cached.is_file():
        return None
    try:
        return OnnxEngine(cached, threads, source=str(cached))
    except Exception as exc:  # a truncated or foreign file: export again
        log.warning("ignoring unreadable ONNX cache file %s: %s", cached, exc)
        return None


def exported_onnx_engine(
    spec: ModelSpec, weights: Path, module, threads: int, *, cache_dir: Path | None = None
) -> OnnxEngine:
    """Export ``module``, check it against torch, cache it; ``RuntimeError`` if it disagrees."""
    data = export_onnx(spec, module)
    engine = OnnxEngine(data, threads, source="exported in memory")
    batch = probe_batch(spec)
    difference = float(np.abs(engine(batch) - torch_probabilities(module, batch)).max())
    if not difference <= EXPORT_TOLERANCE:
        raise RuntimeError(
            f"the ONNX export of {spec.name} differs from torch by {difference:.2e} "
            f"(tolerance {EXPORT_TOLERANCE:g})"
        )
    cached = onnx_cache_path(spec, weights, cache_dir)
    try:
        write_atomically(cached, data)
        engine.source = str(cached)
    except OSError as exc:  # a read-only image: serve from memory, export again next start
        log.warning("could not cache the ONNX export in %s: %s", cached.parent, exc)
    return engine


def build_engine(spec: ModelSpec, weights: Path, *, runtime: str = "auto", threads: int = 1):
    """The engine that will run ``spec``: ONNX Runtime if possible and agreed, else torch.

    With a cached export torch is never imported. ``auto`` falls back to torch (with a warning
    in the log) if the export fails or disagrees; an explicit ``onnx`` raises instead. For an
    int8 model ``weights`` is its quantized ONNX file.
    """
    if spec.precision == "int8":
        return int8_engine(spec, weights, runtime=runtime, threads=threads)
    kind = resolve_runtime(runtime)
    if kind == "onnx":
        engine = cached_onnx_engine(spec, weights, threads)
        if engine is not None:
            return engine
    module = build_torch_module(spec, weights)
    if kind == "onnx":
        try:
            return exported_onnx_engine(spec, weights, module, threads)
        except Exception as exc:
            if runtime == "onnx":
                raise ModelUnavailable(f"ONNX Runtime cannot serve {spec.name}: {exc}") from exc
            log.warning("%s: serving with torch instead of ONNX Runtime: %s", spec.name, exc)
    return TorchEngine(module, threads)


def int8_engine(spec: ModelSpec, path: Path, *, runtime: str, threads: int) -> OnnxEngine:
    """ONNX Runtime on the int8 file made by ``weights bake``; ``ModelUnavailable`` otherwise."""
    if runtime == "torch":
        raise ModelUnavailable(
            f"{spec.name} is an int8 ONNX model that only ONNX Runtime runs, but "
            f"HW5_RUNTIME=torch; set HW5_RUNTIME=auto (or onnx), or serve "
            f"{spec.quantized_from} instead"
        )
    if not onnxruntime_available():
        raise ModelUnavailable(
            f"{spec.name} is an int8 ONNX model and needs the package onnxruntime "
            "(pip install onnxruntime)"
        )
    try:
        return OnnxEngine(path, threads, source=str(path))
    except Exception as exc:
        raise ModelUnavailable(
            f"the int8 model file {path} for {spec.name!r} could not be loaded "
            f"({str(exc).splitlines()[0][:300]}); delete it and make it again with "
            f"`python -m hw5kit.serving.models.weights bake {spec.name}`"
        ) from exc


def bake_onnx(spec: ModelSpec, weights: Path, cache_dir: Path) -> Path:
    """Build time: export ``weights`` to ``cache_dir`` (checked against torch); the file."""
    target = onnx_cache_path(spec, weights, cache_dir)
    if not target.is_file():
        engine = exported_onnx_engine(
            spec, weights, build_torch_module(spec, weights), 1, cache_dir=cache_dir
        )
        if engine.source != str(target):
            raise OSError(f"could not write {target}")
    return target
