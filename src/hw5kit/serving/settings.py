"""Backend settings, read once from the environment and validated.

| variable | meaning | default |
|---|---|---|
| ``PORT`` / ``SERVING_PORT`` | listening port (Cloud Run sets ``PORT``) | 8000 |
| ``MODEL_NAME`` | the model of a v1 or v3 backend | ``efficientnet_lite0`` |
| ``MODELS`` | comma-separated models of a v2 backend (the first is the default) | the three Lite |
| ``DEFAULT_MODEL`` | v2: the model used when the request and session name none | first of MODELS |
| ``TORCH_HOME`` | where baked weights live (``$TORCH_HOME/hub/checkpoints``) | torch's cache |
| ``SECRET_KEY`` | signs the v2 session cookie; set it when several instances serve | random |
| ``HW5_ALLOW_LOOPBACK`` | ``1`` lets URL fetches reach 127.0.0.1/::1 (local target only) | off |
| ``HW5_MAX_UPLOAD_MB`` | largest request body | 20 |
| ``HW5_MAX_DOWNLOAD_MB`` | largest image fetched from a URL | 20 |
| ``HW5_MAX_PIXELS`` | largest decoded image (width x height) | 40000000 |
| ``HW5_FETCH_{CONNECT,READ,TOTAL}_TIMEOUT`` | URL fetch time limits, s | 3 / 5 / 10 |
| ``HW5_STREAMS`` | forward passes at once, each on its own intra-op threads | 1 |
| ``HW5_TORCH_THREADS`` | intra-op threads of one forward pass | CPUs / workers / streams |
| ``HW5_RUNTIME`` | ``auto``, ``openvino``, ``onnx`` or ``torch`` (``runtime.py``) | auto |
| ``HW5_PRECISION`` | ``auto`` (bfloat16 where native), ``bf16`` or ``fp32`` | auto |
| ``HW5_BATCH_MAX`` | largest micro-batch of concurrent requests (1: no batching) | 8 |
| ``HW5_BATCH_WAIT_MS`` | longest a forward pass waits for requests still being decoded | 2 |
| ``HW5_LOAD`` | ``background`` (``/readyz`` 503 until loaded) or ``sync`` | background |
| ``HW5_MAX_INFLIGHT`` | predictions in progress at once (fetch, decode, inference) | 4 per CPU |
| ``HW5_QUEUE_LENGTH`` | predictions waiting for a slot; past it 503 + Retry-After | 32 per CPU |
| ``HW5_QUEUE_TIMEOUT`` | longest wait for a slot, s from arrival; past it 503 | 10 |
| ``HW5_THREADS`` | gunicorn threads of the instance | in flight + queue + 4 per CPU |
| ``HW5_WORKERS`` | gunicorn worker processes | 1 per CPU, as memory allows |
| ``HW5_DECODE_MEMORY_MB`` | decoded pixels in flight, all decodes together | 21 B x max pixels |
| ``HW5_READ_TIMEOUT`` | a request's headers must arrive within this, s (then 408) | 10 |
| ``HW5_MIN_UPLOAD_KBPS`` | a body must arrive at least this fast after that, KiB/s | 32 |
| ``HW5_FRONT_BUFFER_MB`` | request bytes held from arrival to answer, all requests | 128 |

``serving/capacity.py`` derives the first four from the CPU count (``capacity.plan``). They,
the decode memory and the front buffer are the instance's: with several workers, each process
gets its share (``capacity.per_worker``, ``capacity.share``); ``gunicorn_conf`` decides the count.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from . import capacity
from .errors import ServingError
from .models.catalog import DEFAULT_MODEL, OFFLINE_MODELS, get_spec, parse_model_list
from .models.runtime import PRECISIONS, RUNTIMES, usable_cpus

# the assignment's versions (deployment.yaml's `version`, the apps' create_app(version=...))
VERSIONS = ("v1", "v2", "v3")


class SettingsError(ValueError):
    """A bad environment variable: the message names it and says what is expected."""


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask, which containers narrow)."""
    return usable_cpus()


def serving_capacity(environ: Mapping[str, str] | None = None) -> capacity.Capacity:
    """Threads, in-flight limit, queue length and queue timeout from the CPU count and the
    ``HW5_THREADS`` / ``HW5_MAX_INFLIGHT`` / ``HW5_QUEUE_LENGTH`` / ``HW5_QUEUE_TIMEOUT``
    variables (validated: a bad value is a ``SettingsError`` naming it)."""
    env = os.environ if environ is None else environ
    reader = _Reader(env)
    asked = {
        "threads": reader.optional_integer("HW5_THREADS"),
        "inflight": reader.optional_integer("HW5_MAX_INFLIGHT"),
        "queue": reader.optional_integer("HW5_QUEUE_LENGTH", minimum=0),
    }
    timeout = reader.number("HW5_QUEUE_TIMEOUT", capacity.QUEUE_TIMEOUT, allow_zero=True)
    return capacity.plan(cpu_count(), queue_timeout=timeout, **asked)


def worker_processes(environ: Mapping[str, str] | None = None) -> int:
    """``HW5_WORKERS`` (``gunicorn_conf`` sets it in the master when it is not given, so every
    worker knows how many share the instance), else 1."""
    env = os.environ if environ is None else environ
    return _Reader(env).integer("HW5_WORKERS", 1)


def default_instance_workers(
    environ: Mapping[str, str] | None = None, *, memory: int | None = None
) -> int:
    """The worker count ``gunicorn_conf`` starts without ``HW5_WORKERS``: one per CPU as memory
    allows, each holding the models it serves (``MODEL_NAME``, else ``MODELS``, else the
    three Lite models of v2's default), after the decode budget and front buffer, which the
    workers share (``capacity.worker_count``). ``memory``: the instance's, in bytes, instead of
    what this machine has (``capacity.memory_limit_bytes``)."""
    env = os.environ if environ is None else environ
    reader = _Reader(env)
    named = env.get("MODEL_NAME", "").strip() or env.get("MODELS", "").strip()
    models = parse_model_list(named) if named else list(OFFLINE_MODELS)
    max_pixels = int(reader.number("HW5_MAX_PIXELS", 40_000_000))
    decode = reader.megabytes("HW5_DECODE_MEMORY_MB", 0, allow_zero=True)
    # shared by the workers: the decode budget; the front buffer and the app's parsed copies
    # of the uploads (up to twice the buffer); the master
    front = reader.megabytes("HW5_FRONT_BUFFER_MB", 128)
    reserved = (decode or default_decode_budget(max_pixels)) + 3 * front + capacity.MASTER_BYTES
    memory = capacity.memory_limit_bytes() if memory is None else memory
    return capacity.worker_count(cpu_count(), models, memory, reserved)


def worker_capacity(environ: Mapping[str, str] | None = None) -> capacity.Capacity:
    """One worker's share of ``serving_capacity``."""
    return capacity.per_worker(serving_capacity(environ), worker_processes(environ))


def http_threads(environ: Mapping[str, str] | None = None) -> int:
    """gunicorn threads per worker: every prediction in progress or queued holds one, and a
    few spare ones answer health checks, metrics and 503s at once (``capacity.plan``)."""
    return worker_capacity(environ).threads


def default_max_inflight(environ: Mapping[str, str] | None = None) -> int:
    return serving_capacity(environ).inflight


def default_queue_length(environ: Mapping[str, str] | None = None) -> int:
    return serving_capacity(environ).queue


def default_decode_budget(max_pixels: int) -> int:
    """One worst-case image at the pixel limit (``images.WORST_BYTES_PER_PIXEL``: a WebP with
    alpha), or several smaller ones at once."""
    from .images import WORST_BYTES_PER_PIXEL

    return WORST_BYTES_PER_PIXEL * max_pixels


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 20 * 1024 * 1024
    connect_timeout: float = 3.0
    read_timeout: float = 5.0
    total_timeout: float = 10.0
    max_redirects: int = 5
    allow_loopback: bool = False


@dataclass(frozen=True)
class ServingSettings:
    version: str = "v1"  # v1 one model, v2 chosen per caller, v3 one per service
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    default_model: str = DEFAULT_MODEL
    port: int = 8000
    secret_key: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    fetch: FetchLimits = field(default_factory=FetchLimits)
    torch_threads: int = field(default_factory=cpu_count)  # HW5_TORCH_THREADS: of one pass
    streams: int = 1  # HW5_STREAMS: forward passes at once
    runtime: str = "auto"
    precision: str = "auto"  # HW5_PRECISION
    batch_max: int = 8
    batch_wait_ms: float = 2.0
    load: str = "background"
    all_models: tuple[str, ...] = ()  # v3: every model the gateway serves (GET /models)
    max_inflight: int = field(default_factory=default_max_inflight)  # HW5_MAX_INFLIGHT
    queue_length: int = field(default_factory=default_queue_length)  # HW5_QUEUE_LENGTH
    queue_timeout: float = capacity.QUEUE_TIMEOUT  # HW5_QUEUE_TIMEOUT
    decode_budget: int = 0  # HW5_DECODE_MEMORY_MB in bytes (this worker's share); 0: default
    workers: int = 1  # HW5_WORKERS: processes sharing the instance's limits

    @property
    def decode_budget_bytes(self) -> int:
        return self.decode_budget or default_decode_budget(self.max_pixels)

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise SettingsError(
                f"version must be one of {', '.join(VERSIONS)}, got {self.version!r}"
            )
        if not self.models:
            raise SettingsError("at least one model must be configured")
        if self.default_model not in self.models:
            raise SettingsError(
                f"DEFAULT_MODEL {self.default_model!r} is not one of MODELS "
                f"({', '.join(self.models)})"
            )
        if self.runtime not in RUNTIMES:
            raise SettingsError(
                f"HW5_RUNTIME must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}"
            )
        if self.precision not in PRECISIONS:
            raise SettingsError(
                f"HW5_PRECISION must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if self.batch_max < 1 or self.batch_wait_ms < 0 or self.torch_threads < 1:
            raise SettingsError("need HW5_BATCH_MAX >= 1, HW5_BATCH_WAIT_MS >= 0, threads >= 1")
        if self.streams < 1:
            raise SettingsError("need HW5_STREAMS >= 1")
        if self.load not in ("background", "sync"):
            raise SettingsError(f"HW5_LOAD must be 'background' or 'sync', got {self.load!r}")

    def with_(self, **changes) -> ServingSettings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, version: str, environ: Mapping[str, str] | None = None) -> ServingSettings:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        if version == "v2":
            models = tuple(reader.models("MODELS", ",".join(OFFLINE_MODELS)))
            default = env.get("DEFAULT_MODEL", "").strip() or models[0]
            if default not in models:
                raise SettingsError(
                    f"DEFAULT_MODEL: {default!r} is not one of MODELS ({', '.join(models)})"
                )
        else:
            models = tuple(reader.models("MODEL_NAME", DEFAULT_MODEL, single=True))
            default = models[0]
        all_models = tuple(reader.models("MODELS", ",".join(models))) if version == "v3" else ()
        workers = worker_processes(env)
        plan = worker_capacity(env)  # this process's share of the instance's
        per_worker = max(1, cpu_count() // workers)
        max_pixels = int(reader.number("HW5_MAX_PIXELS", 40_000_000))
        decode_budget = reader.megabytes("HW5_DECODE_MEMORY_MB", 0, allow_zero=True)
        streams = reader.integer("HW5_STREAMS", 1)
        limits = FetchLimits(
            max_bytes=reader.megabytes("HW5_MAX_DOWNLOAD_MB", 20),
            connect_timeout=reader.number("HW5_FETCH_CONNECT_TIMEOUT", 3.0),
            read_timeout=reader.number("HW5_FETCH_READ_TIMEOUT", 5.0),
            total_timeout=reader.number("HW5_FETCH_TOTAL_TIMEOUT", 10.0),
            allow_loopback=reader.flag("HW5_ALLOW_LOOPBACK"),
        )
        return cls(
            version=version,
            models=models,
            default_model=default,
            port=serving_port(env),
            secret_key=env.get("SECRET_KEY") or secrets.token_hex(32),
            max_upload_bytes=reader.megabytes("HW5_MAX_UPLOAD_MB", 20),
            max_pixels=max_pixels,
            fetch=limits,
            # each gunicorn worker runs its own inference, in ``streams`` forward passes at once
            # of ``torch_threads`` each: together they fill the cores once (see ``batching``)
            streams=streams,
            torch_threads=reader.integer("HW5_TORCH_THREADS", max(1, per_worker // streams)),
            runtime=(env.get("HW5_RUNTIME", "").strip().lower() or "auto"),
            precision=(env.get("HW5_PRECISION", "").strip().lower() or "auto"),
            batch_max=reader.integer("HW5_BATCH_MAX", 8),
            batch_wait_ms=reader.number("HW5_BATCH_WAIT_MS", 2.0, allow_zero=True),
            load=env.get("HW5_LOAD", "background").strip() or "background",
            all_models=all_models,
            max_inflight=plan.inflight,
            queue_length=plan.queue,
            queue_timeout=plan.queue_timeout,
            decode_budget=capacity.share(
                decode_budget or default_decode_budget(max_pixels), workers
            ),
            workers=workers,
        )


def serving_port(environ: Mapping[str, str] | None = None) -> int:
    """``PORT`` (set by Cloud Run), else ``SERVING_PORT``, else 8000."""
    env = os.environ if environ is None else environ
    for key in ("PORT", "SERVING_PORT"):
        raw = env.get(key, "").strip()
        if raw:
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise SettingsError(f"{key} must be a port number 1-65535, got {raw!r}")
            return int(raw)
    return 8000


class _Reader:
    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def number(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        raw = self.env.get(key, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{key} must be a number, got {raw!r}") from None
        if value < 0 or (value == 0 and not allow_zero) or value != value:
            expected = "zero or more" if allow_zero else "positive"
            raise SettingsError(f"{key} must be {expected}, got {raw!r}")
        return value

    def integer(self, key: str, default: int) -> int:
        raw = self.env.get(key, "").strip()
        if not raw:
            return default
        if not raw.isdigit() or int(raw) < 1:
            raise SettingsError(f"{key} must be a whole number of at least 1, got {raw!r}")
        return int(raw)

    def optional_integer(self, key: str, *, minimum: int = 1) -> int | None:
        raw = self.env.get(key, "").strip()
        if not raw:
            return None
        if not raw.isascii() or not raw.isdigit() or int(raw) < minimum:
            raise SettingsError(f"{key} must be a whole number of at least {minimum}, got {raw!r}")
        return int(raw)

    def megabytes(self, key: str, default: float, *, allow_zero: bool = False) -> int:
        return int(self.number(key, default, allow_zero=allow_zero) * 1024 * 1024)

    def flag(self, key: str) -> bool:
        raw = self.env.get(key, "").strip().lower()
        if raw in ("", "0", "false", "no", "off"):
            return False
        if raw in ("1", "true", "yes", "on"):
            return True
        raise SettingsError(f"{key} must be 1/0 (or true/false), got {raw!r}")

    def models(self, key: str, default: str, *, single: bool = False) -> list[str]:
        raw = self.env.get(key, "").strip() or default
        try:
            names = parse_model_list(raw)
        except ValueError as exc:
            raise SettingsError(f"{key}: {exc}") from None
        if single and len(names) != 1:
            raise SettingsError(f"{key} names one model, got {raw!r}")
        for name in names:
            try:
                get_spec(name)
            except ServingError as exc:
                known = ", ".join(exc.details.get("known", []))
                raise SettingsError(f"{key}: {exc.message} (known: {known})") from None
        return names
