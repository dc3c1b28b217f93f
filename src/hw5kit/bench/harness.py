"""What every measurement of the bench needs (``run``, ``hop``, ``quant``): the weights prepared
as the image build prepares them, a subject's environment and its start on 127.0.0.1 (cold start
timed), the loopback photo server, and the ``meta`` block each results file starts with.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from .. import paths, procs
from ..paths import ROOT
from ..serving.models import get_spec
from ..serving.models.weights import bake
from . import procstats

# the course's serving setup: each of 2 workers loads its own model, 2 threads each
REFERENCE_GUNICORN_ARGS = ("--workers", "2", "--threads", "2")
Log = Callable[[str], None]


# ---- preparation ---------------------------------------------------------------------------
def is_random_init(name: str) -> bool:
    return get_spec(name).family != "efficientnet_lite"


def write_random_init(name: str, torch_home: Path) -> Path:
    """A torchvision model's random-init weights, under the file name its hub cache expects."""
    import torch
    import torchvision

    spec = get_spec(name)
    target = torch_home / "hub" / "checkpoints" / spec.weights_file
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = torchvision.models.get_model(name, weights=None)
        torch.save(model.state_dict(), target)
    return target


def prepare_weights(models: list[str], torch_home: Path, log: Log = print) -> None:
    """Random-init files for torchvision models, then ``bake`` (copies + ONNX exports)."""
    for name in models:
        if is_random_init(name):
            log(f"writing random-init weights for {name}")
            write_random_init(name, torch_home)
    bake(models, torch_home, log=lambda m: log(f"bake: {m}"))


def prepare_in_subprocess(models: list[str], torch_home: Path, log: Log) -> float:
    """``prepare_weights`` in a child process, so that this one never imports torch."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "hw5kit.bench", "prepare", "--torch-home", str(torch_home)]
    done = subprocess.run(
        [*cmd, *models],
        env=subject_env(torch_home),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    for line in done.stdout.splitlines():
        log(line)
    if done.returncode != 0:
        raise RuntimeError(f"preparing the weights failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def subject_env(torch_home: Path, **extra: str) -> dict[str, str]:
    """This checkout's code, the baked TORCH_HOME, loopback fetches allowed (photo server)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GUNICORN_", "REFERENCE_"))
        and k not in ("PORT", "SERVING_PORT", "MODEL_NAME", "MODELS", "DEFAULT_MODEL")
    }
    env["PYTHONPATH"] = paths.pythonpath()
    env["TORCH_HOME"] = str(torch_home)
    env["HW5_ALLOW_LOOPBACK"] = "1"
    env.update(extra)
    return env


@contextlib.contextmanager
def photo_server(workdir: Path, log: Log) -> Iterator[tuple[str, procs.Process]]:
    """The loopback photo server (``hw5kit.photos.serve_photos``) in a process of its own."""
    log_path = workdir / "photos.log"
    proc = procs.start(
        "photos",
        [sys.executable, "-m", "hw5kit.bench", "photos", "--dir", str(workdir / "photos")],
        log_path=log_path,
        env=subject_env(workdir / "unused"),
    )
    try:
        deadline = time.monotonic() + 30
        base = None
        while time.monotonic() < deadline and base is None:
            for line in log_path.read_text().splitlines() if log_path.exists() else []:
                if line.startswith("http://"):
                    base = line.strip()
            if not proc.alive():
                raise procs.ServiceFailed(f"photo server exited:\n{procs.log_tail(log_path)}")
            time.sleep(0.05)
        if base is None:
            raise procs.ServiceFailed("photo server did not print its URL")
        log(f"photo server at {base}")
        yield base, proc
    finally:
        proc.stop()


# ---- servers -------------------------------------------------------------------------------
def wait_ok(url: str, process: procs.Process, timeout: float) -> None:
    """Poll every 20 ms until ``url`` answers 200 (cold-start resolution)."""
    deadline = time.monotonic() + timeout
    while procs.http_status(url, timeout=1.0) != 200:
        if not process.alive():
            raise procs.ServiceFailed(
                f"{process.name} exited ({process.popen.returncode}); its log ends with:\n"
                f"{procs.log_tail(process.log_path)}"
            )
        if time.monotonic() > deadline:
            raise procs.ServiceFailed(
                f"{url} not ready within {timeout:g} s\n{procs.log_tail(process.log_path)}"
            )
        time.sleep(0.02)


def start_server(
    kind: str,
    model: str | None,
    torch_home: Path,
    workdir: Path,
    *,
    app: str = "backend_v1",
) -> tuple[procs.Process, str, float]:
    """Start a subject; returns it, its base URL and its cold start (Popen to ready), s."""
    port = procs.free_port()
    base = f"http://127.0.0.1:{port}"
    if kind == "reference":
        cmd = [
            sys.executable, "-m", "gunicorn", *REFERENCE_GUNICORN_ARGS,
            "--bind", f"127.0.0.1:{port}", "hw5kit.bench.reference:app",
        ]  # fmt: skip
        env = subject_env(torch_home, REFERENCE_MODEL=model or "")
        ready = f"{base}/hello"  # the course's backend has no readiness route
    else:
        cmd = procs.gunicorn_command(ROOT / "apps" / app, port=port, python=sys.executable)
        extra = {"MODEL_NAME": model} if model else {}
        env = subject_env(torch_home, **extra)  # the production defaults, as the image runs
        ready = f"{base}/readyz"
    name = f"{kind}-{app if kind != 'reference' else 'ref'}-{model or 'default'}"
    t0 = time.perf_counter()
    proc = procs.start(name, cmd, log_path=workdir / f"{name}.log", env=env, url=base)
    try:
        wait_ok(ready, proc, 180)
    except BaseException:
        proc.stop()
        raise
    return proc, base, time.perf_counter() - t0


# ---- the results' header -------------------------------------------------------------------
def environment_info() -> dict:
    info: dict = {
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    for package in ("torch", "onnxruntime", "gunicorn", "flask", "pillow"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            info[package] = version(package)
    with contextlib.suppress(Exception):
        info["git_commit"] = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    info["hw5_settings"] = {k: v for k, v in sorted(os.environ.items()) if k.startswith("HW5_")}
    return info


def run_meta(command: str, plan, **extra) -> dict:
    """The ``meta`` block every measurement starts its results with: when, by which command,
    the plan, the load before, the machine and the versions; ``extra`` adds its own keys."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "plan": asdict(plan),
        "load_average_before": procstats.load_average(),
        **environment_info(),
        **extra,
    }
