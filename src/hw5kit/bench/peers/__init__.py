"""Serving peers: the frameworks a user would pick instead of our backend, as bench subjects.

TorchServe, BentoML, LitServe and KServe's ModelServer each serve the same ONNX file our
backend serves (the baked export, softmax included) through ONNX Runtime, with the same
preprocessing, on the same photos, driven by the same load generator in the same run, taking
turns with our backend phase by phase (``bench.run.measure_model``).

Each peer has a folder here: ``requirements.txt`` (its environment, every version pinned), its
server or handler file with the configuration its documentation recommends for CPU throughput
(workers and intra-op threads per core, its batching where it offers one; the pages are cited
in those files), and ``peer_common.py`` beside them, the classifier code all four handlers share.
Each peer runs from its own virtual environment, ``.nox/peers/<name>`` (``HW5_PEER_ENVS``
moves the folder), created on demand and rebuilt when its requirements change; hw5kit is never
installed there. TorchServe also needs a Java runtime: installed from Debian as root
(``devenv.ensure_system_packages``), else that peer is skipped with the reason.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ... import devenv, procs
from ...paths import ROOT
from ..load import HttpClient, Request

HERE = Path(__file__).resolve().parent
STAMP = ".hw5kit-peer-stamp.json"
Log = Callable[[str], None]


@dataclass(frozen=True)
class Peer:
    name: str
    title: str
    check: str  # Python run in the environment once installed (imports the framework)
    commands: tuple[str, ...] = ()  # system commands it needs (devenv.SYSTEM_PACKAGES)
    batching: str = ""

    @property
    def folder(self) -> Path:
        return HERE / self.name

    @property
    def requirements(self) -> Path:
        return self.folder / "requirements.txt"


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer(
            "torchserve",
            "TorchServe 0.12",
            "import ts.model_service_worker, onnxruntime, PIL",
            ("java",),
            "batchSize 8, maxBatchDelay 2 ms",
        ),
        Peer("bentoml", "BentoML 1.4", "import bentoml, onnxruntime, PIL", (), "adaptive, max 8"),
        Peer("litserve", "LitServe 0.2", "import litserve, onnxruntime, PIL", (), "max 8, 2 ms"),
        Peer("kserve", "KServe ModelServer 0.21", "import kserve, onnxruntime, PIL", (), "none"),
    )
}
# the one CI runs (smallest environment, no Java)
LIGHTEST = "litserve"


class PeerUnavailable(RuntimeError):
    """A peer that cannot run here; the message says why and what to do."""


# ---- environments ----------------------------------------------------------------------------
def env_dir(name: str, root: Path = ROOT) -> Path:
    base = os.environ.get("HW5_PEER_ENVS")
    return (Path(base) if base else root / ".nox" / "peers") / name


def env_python(name: str, root: Path = ROOT) -> Path:
    return env_dir(name, root) / "bin" / "python"


def fingerprint(peer: Peer) -> str:
    digest = hashlib.sha256(peer.requirements.read_bytes())
    digest.update(sys.version.split()[0].encode())
    return digest.hexdigest()


def is_current(peer: Peer, root: Path = ROOT) -> bool:
    stamp = env_dir(peer.name, root) / STAMP
    if not env_python(peer.name, root).exists() or not stamp.exists():
        return False
    try:
        return json.loads(stamp.read_text()).get("fingerprint") == fingerprint(peer)
    except (OSError, ValueError):
        return False


def ensure_env(name: str, *, log: Log = print, root: Path = ROOT) -> Path:
    """The peer's interpreter, its environment created or updated first (pinned)."""
    peer = PEERS[name]
    venv = env_dir(name, root)
    python = env_python(name, root)
    if is_current(peer, root):
        return python
    if not python.exists():
        log(f"creating {peer.title}'s environment in {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log(f"installing {peer.title}'s pinned requirements ({peer.requirements.name})")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(peer.requirements)],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise PeerUnavailable(
            f"pip could not install {peer.title}'s requirements:\n{done.stderr[-1500:]}"
        )
    check = subprocess.run(
        [str(python), "-c", peer.check], env=env, capture_output=True, text=True, cwd=venv
    )
    if check.returncode != 0:
        raise PeerUnavailable(
            f"{peer.title}'s environment does not import ({peer.check}):\n{check.stderr[-1500:]}"
            f"\nremove it and retry: rm -rf {venv}"
        )
    (venv / STAMP).write_text(json.dumps({"fingerprint": fingerprint(peer)}))
    return python


def prepare(names: list[str], *, log: Log = print) -> tuple[dict[str, Path], dict[str, str]]:
    """(the interpreters of the peers that can run here, the reason for each that cannot)."""
    ready: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for name in names:
        peer = PEERS[name]
        try:
            missing = devenv.ensure_system_packages(peer.commands, log=log)
            if missing:
                raise PeerUnavailable(
                    f"needs {', '.join(missing)} (Debian: "
                    f"{' '.join(p for c in missing for p in devenv.SYSTEM_PACKAGES.get(c, (c,)))}"
                    "), which only root can install here"
                )
            ready[name] = ensure_env(name, log=log)
        except (PeerUnavailable, subprocess.CalledProcessError, OSError) as exc:
            skipped[name] = str(exc).strip()
            log(f"skipping {peer.title}: {skipped[name]}")
    return ready, skipped


def versions(python: Path) -> dict[str, str]:
    """The installed versions of the peer's environment (pip freeze)."""
    done = subprocess.run(
        [str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=False
    )
    pairs = (line.split("==", 1) for line in done.stdout.splitlines() if "==" in line)
    return {k.lower(): v for k, v in pairs}


# ---- the model a peer serves -----------------------------------------------------------------
def model_env(model: str, torch_home: Path) -> dict[str, str]:
    """``PEER_*``: the baked ONNX file, the preprocessing and the labels of ``model``."""
    from ...serving.models import get_spec
    from ...serving.models.runtime import onnx_cache_dir, onnx_cache_path

    spec = get_spec(model)
    weights = torch_home / "hub" / "checkpoints" / spec.weights_file
    onnx = onnx_cache_path(spec, weights, onnx_cache_dir(torch_home))
    if not onnx.is_file():
        raise PeerUnavailable(f"no baked ONNX export of {model} at {onnx}")
    pp = spec.preprocessing
    labels = Path(__file__).resolve().parents[2] / "serving" / "imagenet_labels.txt"
    return {
        "PEER_MODEL": model,
        "PEER_ONNX": str(onnx),
        "PEER_LABELS": str(labels),
        "PEER_PREPROCESSING": json.dumps(
            {
                "resize": pp.resize,
                "crop": pp.crop,
                "mean": list(pp.mean),
                "std": list(pp.std),
                "interpolation": pp.interpolation,
            }
        ),
    }


# ---- requests --------------------------------------------------------------------------------
def _multipart(field: str, name: str, data: bytes) -> Request:
    boundary = "hw5peer" + hashlib.sha1(name.encode()).hexdigest()[:16]  # noqa: S324
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode(),
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    return Request(body, f"multipart/form-data; boundary={boundary}", name)


def _json(payload, name: str) -> Request:
    return Request(json.dumps(payload).encode(), "application/json", name)


def route(name: str, mode: str, model: str) -> str:
    """The path a request of ``mode`` goes to (each framework's documented API)."""
    if name == "torchserve":
        return f"/predictions/{model}"
    if name == "bentoml":
        return "/classify_url" if mode == "url" else "/classify"
    if name == "kserve":
        return f"/v1/models/{model}:predict"
    return "/predict"


def requests_for(name: str, mode: str, photos_base: str, files: dict[str, bytes]) -> list[Request]:
    """The requests of ``mode`` in the peer's documented format, one per photo."""
    out = []
    for photo, data in files.items():
        url = f"{photos_base}/{photo}"
        if name == "bentoml":
            req = (
                _json({"urls": [url]}, photo)
                if mode == "url"
                else _multipart("images", photo, data)
            )
        elif name == "kserve":
            instance = (
                {"url": url}
                if mode == "url"
                else {"image": {"b64": base64.b64encode(data).decode()}}
            )
            req = _json({"instances": [instance]}, photo)
        else:  # torchserve (form field "data", as its curl examples), litserve ("file")
            field = "data" if name == "torchserve" else "file"
            req = _json({"url": url}, photo) if mode == "url" else _multipart(field, photo, data)
        out.append(req)
    return out


def top1(answer) -> str:
    """The top-1 label in any peer's answer: ``{"category"}``, a list of them (BentoML's
    batchable API) or ``{"predictions": [...]}`` (KServe's v1 protocol)."""
    if isinstance(answer, list):
        answer = answer[0]
    if "predictions" in answer:
        answer = answer["predictions"][0]
    return str(answer["category"])


def client(name: str, base: str, mode: str, model: str) -> HttpClient:
    return HttpClient(base, path=route(name, mode, model), label=top1, timeout=120)


# ---- starting one --------------------------------------------------------------------------
def _format(path: Path, **values) -> str:
    return path.read_text().format(**values)


def start_command(
    name: str, python: Path, model: str, workdir: Path, env: dict[str, str]
) -> tuple[list[str], Path]:
    """(the command that starts the peer's server, its working folder); ``env`` gains the
    port (``PEER_PORT``) and what the framework needs."""
    bindir = python.parent
    port = procs.free_port()
    env["PEER_PORT"] = str(port)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    # peer_common first; then the caller's path (what the tests' network guard rides on)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    cwd = workdir / f"{name}-{model}"
    cwd.mkdir(parents=True, exist_ok=True)
    if name == "torchserve":
        cores = len(os.sched_getaffinity(0))
        store = cwd / "store"
        store.mkdir(exist_ok=True)
        config = cwd / "config.properties"
        config.write_text(
            _format(
                PEERS[name].folder / "config.properties",
                inference_port=port,
                management_port=procs.free_port(),
                metrics_port=procs.free_port(),
                workers=cores,
                cores=cores,
            )
        )
        model_config = cwd / "model-config.yaml"
        model_config.write_text(_format(PEERS[name].folder / "model-config.yaml", workers=cores))
        # packing the archive is the build step (like our weights bake): not in the cold start
        archived = subprocess.run(
            [
                str(bindir / "torch-model-archiver"),
                "--model-name", model, "--version", "1.0",
                "--serialized-file", env["PEER_ONNX"],
                "--handler", str(PEERS[name].folder / "handler.py"),
                "--extra-files", str(HERE / "peer_common.py"),
                "--config-file", str(model_config),
                "--export-path", str(store), "--archive-format", "no-archive", "--force",
            ],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        if archived.returncode != 0:
            raise PeerUnavailable(f"torch-model-archiver failed:\n{archived.stderr[-1500:]}")
        env["LOG_LOCATION"] = str(cwd / "logs")
        env["METRICS_LOCATION"] = str(cwd / "logs")
        cmd = [
            str(bindir / "torchserve"), "--start", "--foreground", "--ncs",
            "--model-store", str(store), "--models", f"{model}={model}",
            "--ts-config", str(config), "--disable-token-auth",
        ]  # fmt: skip
        return cmd, cwd
    if name == "bentoml":
        env["BENTOML_HOME"] = str(cwd / "bentoml-home")
        env["BENTOML_DO_NOT_TRACK"] = "True"
        cmd = [
            str(bindir / "bentoml"), "serve", "service:Classifier",
            "--working-dir", str(PEERS[name].folder), "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
        return cmd, cwd
    return [str(python), str(PEERS[name].folder / "server.py")], cwd


def start(
    name: str,
    python: Path,
    model: str,
    torch_home: Path,
    workdir: Path,
    probe: Request,
    *,
    timeout: float = 180.0,
) -> tuple[procs.Process, str, float]:
    """Start the peer serving ``model``; (process, base URL, cold start in seconds): from the
    start command to the first answered prediction of ``probe`` (not every framework has a
    readiness route that waits for its workers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW5_")}
    env.update(model_env(model, torch_home))
    cmd, cwd = start_command(name, python, model, workdir, env)
    base = f"http://127.0.0.1:{env['PEER_PORT']}"
    log_path = workdir / f"peer-{name}-{model}.log"
    t0 = time.perf_counter()
    proc = procs.start(f"peer-{name}", cmd, log_path=log_path, env=env, cwd=cwd, url=base)
    mode = "url" if probe.content_type == "application/json" else "upload"
    http = client(name, base, mode, model)
    http.timeout = 5.0
    deadline = time.monotonic() + timeout
    try:
        while True:
            ok, answer = http.send(probe)
            if ok:
                return proc, base, time.perf_counter() - t0
            http.close()
            if not proc.alive():
                raise PeerUnavailable(
                    f"{PEERS[name].title} exited ({proc.popen.returncode}); its log ends with:\n"
                    + procs.log_tail(log_path)
                )
            if time.monotonic() > deadline:
                raise PeerUnavailable(
                    f"{PEERS[name].title} answered no prediction within {timeout:g} s (last: "
                    f"{answer[:200]}); its log ends with:\n" + procs.log_tail(log_path)
                )
            time.sleep(0.05)
    except BaseException:
        http.close()
        proc.stop()
        raise
    finally:
        http.close()
