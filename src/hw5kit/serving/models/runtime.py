"""Inference engines: OpenVINO in bfloat16 where the CPU computes it natively, else ONNX Runtime
when it is installed and its export agrees, else torch.

Measured on the 2-vCPU machines this kit targets (see ``reports/bench``), EfficientNet-Lite0's
forward pass takes about 20-30 ms in torch eager and 4-8 ms in ONNX Runtime, with the same top-1
on every labelled photo. So:

* ``onnx``: the torch module is exported once to ONNX (softmax included) and run by ONNX
  Runtime. The export is cached on disk, keyed by the weights file's content, in
  ``onnx_cache_dir()``; ``weights bake`` fills that cache at build time, so a service started
  from baked weights never imports torch and starts in about a second. An export is checked
  against torch on a probe batch before it is used or cached.
* ``torch``: eager torch under ``inference_mode`` with the intra-op threads set to the cores.
* ``openvino``: OpenVINO compiles that same ONNX file for the CPU. On a CPU with native
  bfloat16 (AMX or AVX-512 BF16, as on the machines this kit targets) it runs it in bfloat16
  (``HW5_PRECISION``, default ``auto``), which cuts the forward pass's CPU time 2x
  (EfficientNet-Lite0) to 4x (ResNet-50) against ONNX Runtime in float32, with the same top-1 on
  every labelled photo and on 95-97% of augmented crops (100% of the crops fp32 is confident
  about): ``nox -s bench`` reports both. In float32 it is no faster than ONNX Runtime here.
* ``auto`` (the default): ``openvino`` if it imports, the CPU has native bfloat16 and the
  precision is not ``fp32``; else ``onnx`` if ``onnxruntime`` imports; else ``torch``.

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
import queue
import sys
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

RUNTIMES = ("auto", "openvino", "onnx", "torch")
PRECISIONS = ("auto", "bf16", "fp32")
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


def import_openvino():
    """``openvino``, imported without its model-conversion tools (``openvino.tools.ovc``).

    ``import openvino`` imports them when it can, and they send a usage event to Google
    Analytics on import (OpenVINO's telemetry, on unless a consent file in the home folder
    opts out): a server must not call out to a third party when it starts, and the runtime API
    used here needs none of them. ``openvino/__init__.py`` skips them on ``ImportError``, which
    a ``None`` entry in ``sys.modules`` gives; tests run the serving path under a guard that
    records any connection that is not to loopback.
    """
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino.tools.ovc", None)  # type: ignore[assignment]
    import openvino

    return openvino


def openvino_available() -> bool:
    try:
        import_openvino()
    except ImportError:
        return False
    return True


_bf16_native: bool | None = None


def bf16_native() -> bool:
    """Whether OpenVINO computes bfloat16 natively on this CPU (AMX or AVX-512 BF16)."""
    global _bf16_native
    if _bf16_native is None:
        try:
            ov = import_openvino()
            _bf16_native = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        except Exception:  # no openvino, or no CPU plugin
            _bf16_native = False
    return _bf16_native


def resolve_precision(precision: str) -> str:
    """``auto`` -> ``bf16`` where the CPU computes it natively, else ``fp32``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_native() else "fp32"
    return precision


def resolve_runtime(runtime: str, precision: str = "auto") -> str:
    """``auto`` -> ``openvino`` (native bfloat16), ``onnx`` or ``torch``; an explicit choice
    needs its package installed."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "auto":
        if precision != "fp32" and openvino_available() and bf16_native():
            return "openvino"
        return "onnx" if onnxruntime_available() else "torch"
    if runtime == "openvino" and not openvino_available():
        raise ModelUnavailable(
            "HW5_RUNTIME=openvino but the package openvino is not installed "
            "(pip install openvino, or set HW5_RUNTIME=auto)"
        )
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


class OpenVinoEngine:
    """OpenVINO on the CPU, compiled from the ONNX file into ``streams`` streams of ``threads``
    inference threads each, bfloat16 or float32: up to ``streams`` forward passes run at once,
    each on an infer request of its own (a request's buffers are sized for the model).

    One stream using every core is the serving default (``HW5_STREAMS=1``): measured in the
    backend under load on 2 CPUs, it served EfficientNet-Lite0 9% and ResNet-50 19% more photos
    per second at concurrency 16 than two streams of one thread, with a lower p50 at
    concurrency 1 (a lone photo gets both cores). Without HTTP (threads calling the service
    directly) two streams did better, 1.7 CPUs busy instead of 1.2: there a pass that waits to
    retake the GIL leaves the other stream computing. ``nox -s bench`` keeps the default.
    """

    kind = "openvino"

    def __init__(self, model: Path, threads: int, *, precision: str = "auto", streams: int = 1):
        ov = import_openvino()
        self.precision = resolve_precision(precision)
        config = {
            "PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY",
            "NUM_STREAMS": streams,
            "INFERENCE_NUM_THREADS": threads * streams,
            "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
            # no pinning: the request threads decoding photos share these cores
            "ENABLE_CPU_PINNING": False,
        }
        self.compiled = ov.Core().compile_model(str(model), "CPU", config)
        self.threads = threads
        self.streams = streams
        self.source = str(model)
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(streams):
            self._requests.put(self.compiled.create_infer_request())

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(batch, np.float32)
        request = self._requests.get()  # one is free whenever fewer than ``streams`` run
        try:
            # the output tensor is the request's own buffer, reused by its next call: copy it
            return np.array(request.infer({INPUT_NAME: pixels})[OUTPUT_NAME], copy=True)
        finally:
            self._requests.put(request)

    def describe(self) -> dict:
        return {
            "runtime": self.kind,
            "threads": self.threads,
            "streams": self.streams,
            "precision": self.precision,
            "onnx": self.source,
        }


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


def build_engine(
    spec: ModelSpec,
    weights: Path,
    *,
    runtime: str = "auto",
    threads: int = 1,
    precision: str = "auto",
    streams: int = 1,
):
    """The engine that will run ``spec``: OpenVINO (native bfloat16) or ONNX Runtime on the
    ONNX export if possible and agreed, else torch.

    With a cached export torch is never imported. ``auto`` falls back (OpenVINO to ONNX Runtime
    to torch, with a warning in the log) when a step fails; an explicit runtime raises instead.
    For an int8 model ``weights`` is its quantized ONNX file.
    """
    if spec.precision == "int8":
        return int8_engine(spec, weights, runtime=runtime, threads=threads)
    kind = resolve_runtime(runtime, precision)
    onnx_engine = None
    if kind in ("openvino", "onnx"):
        onnx_engine = cached_onnx_engine(spec, weights, threads)
    module = None
    if kind in ("openvino", "onnx") and onnx_engine is None:
        module = build_torch_module(spec, weights)
        try:
            onnx_engine = exported_onnx_engine(spec, weights, module, threads)
        except Exception as exc:
            if runtime in ("onnx", "openvino"):
                who = "ONNX Runtime" if runtime == "onnx" else "OpenVINO"
                raise ModelUnavailable(f"{who} cannot serve {spec.name}: {exc}") from exc
            log.warning("%s: serving with torch instead of ONNX Runtime: %s", spec.name, exc)
    if kind == "openvino" and onnx_engine is not None:
        try:
            if onnx_engine.source == "exported in memory":
                raise RuntimeError("the ONNX export could not be cached on disk for OpenVINO")
            return OpenVinoEngine(
                Path(onnx_engine.source), threads, precision=precision, streams=streams
            )
        except Exception as exc:
            if runtime == "openvino":
                raise ModelUnavailable(f"OpenVINO cannot serve {spec.name}: {exc}") from exc
            log.warning("%s: serving with ONNX Runtime instead of OpenVINO: %s", spec.name, exc)
    if onnx_engine is not None:
        return onnx_engine
    return TorchEngine(module if module is not None else build_torch_module(spec, weights), threads)


def int8_engine(spec: ModelSpec, path: Path, *, runtime: str, threads: int) -> OnnxEngine:
    """ONNX Runtime on the int8 file made by ``weights bake``; ``ModelUnavailable`` otherwise."""
    if runtime in ("torch", "openvino"):
        raise ModelUnavailable(
            f"{spec.name} is an int8 ONNX model that only ONNX Runtime runs, but "
            f"HW5_RUNTIME={runtime}; set HW5_RUNTIME=auto (or onnx), or serve "
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
