"""One benchmark run: prepare weights, start each subject, drive it, collect the figures.

Subjects, each in processes of its own on 127.0.0.1:

* ``reference``: the course's backend (``bench/reference.py``) under gunicorn 2 workers x 2
  threads, torch eager;
* ``ours``: ``apps/backend_v1`` under gunicorn with the package's settings
  (``serving/gunicorn_conf.py``), as its image starts it: the production defaults, unless the
  caller sets ``HW5_*`` variables (then the run is labelled tuned in the report and the docs);
* ``inprocess``: our pipeline called by threads in one process, no HTTP (``bench/inprocess.py``);
* the serving peers (``bench/peers``): TorchServe, BentoML, LitServe and KServe's ModelServer,
  each from its own environment, serving the same ONNX file with its documented configuration.

For each model the subjects run side by side and are measured phase by phase in turn
(same mode and concurrency back to back, the order rotating), so that a shared machine's
changing load hits them alike; the servers whose turn it is not are paused (SIGSTOP), so that
none spends CPU the one measured needs (LitServe's idle workers poll their queues: a quarter of a
core, measured). Weights are prepared the way the image build does it:
``weights bake`` into a temporary ``TORCH_HOME`` (Lite weights copied from their packages, ONNX
exports made there). torchvision models get random-init weights written under the file name
torchvision expects, so the run needs no network; their predictions mean nothing and the report
says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import procs
from ..photos import PHOTOS
from ..serving.models import OFFLINE_MODELS
from . import procstats
from .harness import (
    Log,
    environment_info,
    is_random_init,
    photo_server,
    prepare_in_subprocess,
    run_meta,
    start_server,
    subject_env,
)
from .load import MODES, HttpClient, percentile, run_load, upload_requests, url_requests
from .peers import PEERS

SUBJECTS = ("reference", "ours", "inprocess")
# the memory of a service deployed with deployment.yaml's defaults (pipeline.deployment.Resources:
# "2Gi"; a test keeps the two equal)
CLOUD_RUN_MEMORY = 2 * 1024**3


@dataclass
class Plan:
    models: list[str] = field(default_factory=lambda: ["efficientnet_lite0", "resnet50"])
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    modes: list[str] = field(default_factory=lambda: ["url", "upload"])
    subjects: list[str] = field(default_factory=lambda: list(SUBJECTS))
    duration: float = 8.0
    warmup: float = 1.0
    max_requests: int = 5000
    v2: bool = True
    first_start: bool = True
    photos: list[str] = field(default_factory=list)
    start_timeout: float = 180.0
    # issue 16's measurements with the production defaults (``stress.py``): closed-loop
    # uploads at these concurrencies (requests each: stress_requests x concurrency), slow
    # clients, concurrent near-limit 16-bit PNGs; all 0 to leave it out
    stress_concurrency: list[int] = field(default_factory=lambda: [16, 32, 64])
    stress_requests: int = 4
    stress_slow_clients: int = 64
    stress_decodes: int = 8
    # the serving peers (``bench.peers.PEERS``) measured beside ours, in the same phases
    peers: list[str] = field(default_factory=lambda: list(PEERS))

    def __post_init__(self) -> None:
        if not self.photos:
            self.photos = [name for name, p in PHOTOS.items() if _exists(p)]


def _exists(photo) -> bool:
    try:
        return photo.path.is_file()
    except FileNotFoundError:
        return False


def record_of(result, cpu: float, *, mode: str, concurrency: int, extra: dict) -> dict:
    lat = result.latencies

    def ms(q):
        value = percentile(lat, q)
        return None if value is None else value * 1000

    return {
        "mode": mode,
        "concurrency": concurrency,
        "requests": result.ok,
        "errors": result.errors,
        "error_samples": result.error_samples,
        "seconds": result.seconds,
        "throughput": result.throughput,
        "p50_ms": ms(50),
        "p95_ms": ms(95),
        "p99_ms": ms(99),
        "cpu_seconds": cpu,
        "cpu_ms_per_image": cpu / result.ok * 1000 if result.ok else None,
        "categories": {k: sorted(v) for k, v in result.categories.items()},
        **extra,
    }


def bodies_for(plan: Plan, photos_base: str, model: str | None = None) -> dict[str, list]:
    """The prepared requests of each mode (``model`` named in the body when given)."""
    files = {n: PHOTOS[n].path.read_bytes() for n in plan.photos}
    return {
        "url": url_requests(photos_base, plan.photos, model),
        "upload": upload_requests(files, model),
    }


def drive_phase(
    proc: procs.Process,
    base: str,
    bodies: list,
    n: int,
    mode: str,
    plan: Plan,
    photo_pid: int,
    make_client: Callable[[], HttpClient] | None = None,
) -> dict:
    """One (mode, concurrency) phase against a running server, with its CPU from /proc."""
    me = os.getpid()
    marks: dict = {}

    def mark() -> None:
        marks["server"] = procstats.sample(proc.pid)
        marks["client"] = procstats.cpu_seconds(me)
        marks["photos"] = procstats.sample(photo_pid)

    timer = threading.Timer(plan.warmup, mark)
    timer.start()
    result = run_load(
        make_client or (lambda: HttpClient(base)),
        bodies,
        concurrency=n,
        duration=plan.duration,
        warmup=plan.warmup,
        max_requests=plan.max_requests,
    )
    timer.join()
    server = procstats.sample(proc.pid)
    return record_of(
        result,
        server.cpu_since(marks["server"]),
        mode=mode,
        concurrency=n,
        extra={
            "client_cpu_seconds": procstats.cpu_seconds(me) - marks["client"],
            "photo_server_cpu_seconds": procstats.sample(photo_pid).cpu_since(marks["photos"])
            if mode == "url"
            else 0.0,
            "rss_bytes": server.rss,
        },
    )


class InProcessRunner:
    """The in-process subject in a child process, driven one phase at a time (line protocol)."""

    def __init__(self, model: str, plan: Plan, torch_home: Path, photos_base: str, log_path):
        cmd = [
            sys.executable, "-m", "hw5kit.bench", "inprocess", "--model", model,
            "--photos-url", photos_base, "--photos", ",".join(plan.photos),
        ]  # fmt: skip
        self.log_path = log_path
        self.stderr = log_path.open("w")
        self.popen = subprocess.Popen(
            cmd,
            env=subject_env(torch_home),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.plan = plan
        self._read()  # {"ready": true} once the model is loaded

    def _read(self) -> dict:
        line = self.popen.stdout.readline() if self.popen.stdout else ""
        if not line:
            self.stderr.flush()
            tail = procs.log_tail(self.log_path)
            raise RuntimeError(f"the in-process subject stopped; its log ends with:\n{tail}")
        return json.loads(line)

    def phase(self, mode: str, n: int) -> dict:
        request = {
            "mode": mode,
            "concurrency": n,
            "duration": self.plan.duration,
            "warmup": self.plan.warmup,
            "max_requests": self.plan.max_requests,
        }
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(request) + "\n")
        self.popen.stdin.flush()
        return self._read()

    def finish(self) -> dict:
        assert self.popen.stdin is not None
        self.popen.stdin.close()
        summary = self._read()
        self.popen.wait(30)
        self.stderr.close()
        return summary

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        self.stderr.close()


def ours_workers(model: str) -> dict[str, int]:
    """How many workers ours starts with ``model`` here (its default on this machine's memory)
    and on the default Cloud Run instance of ``deployment.yaml`` (``CLOUD_RUN_MEMORY``), which
    can be fewer: the report gives both."""
    from ..serving.settings import default_instance_workers

    env = {"MODEL_NAME": model}
    return {
        "workers": default_instance_workers(env),
        "workers_on_cloud_run": default_instance_workers(env, memory=CLOUD_RUN_MEMORY),
    }


def measure_model(
    model: str,
    plan: Plan,
    torch_home: Path,
    workdir: Path,
    photos: tuple[str, int],
    log: Log,
    peer_envs: dict[str, Path] | None = None,
) -> dict[str, dict]:
    """Every subject with ``model``, all running at once, measured phase by phase in turn.

    Interleaving (reference, ours, in-process for one phase, then the next phase, the order
    rotating) means a change in the machine's load hits every subject alike, which keeps the
    ratios honest on a shared machine. The servers whose turn it is not are paused
    (``procstats.pause``): each is measured as if it ran alone.
    """
    from . import peers as peer_subjects

    photos_base, photo_pid = photos
    bodies = bodies_for(plan, photos_base)
    files = {n: PHOTOS[n].path.read_bytes() for n in plan.photos}
    peer_bodies = {
        name: {mode: peer_subjects.requests_for(name, mode, photos_base, files) for mode in MODES}
        for name in peer_envs or {}
    }
    servers: dict[str, tuple[procs.Process, str, float]] = {}
    paused: dict[str, list[int]] = {}  # the servers whose turn it is not (procstats.pause)
    runner: InProcessRunner | None = None
    out: dict[str, dict] = {}
    try:
        for kind in ("reference", "ours"):
            if kind in plan.subjects:
                log(f"starting {kind} with {model}")
                servers[kind] = start_server(kind, model, torch_home, workdir)
                log(f"  ready in {servers[kind][2]:.2f} s")
                out[kind] = {"cold_start_s": servers[kind][2], "records": []}
                if kind == "ours":
                    out[kind].update(ours_workers(model))
        for name, python in (peer_envs or {}).items():
            log(f"starting {name} with {model}")
            try:
                servers[name] = peer_subjects.start(
                    name,
                    python,
                    model,
                    torch_home,
                    workdir,
                    peer_bodies[name]["url" if "url" in plan.modes else "upload"][0],
                    timeout=plan.start_timeout,
                )
            except (peer_subjects.PeerUnavailable, procs.ServiceFailed, OSError) as exc:
                log(f"  {name} could not serve {model}: {exc}")
                out[name] = {"failed": str(exc)[-2000:], "records": []}
                continue
            except subprocess.CalledProcessError as exc:
                log(f"  {name} could not be prepared for {model}: {exc.stderr!r}")
                out[name] = {"failed": f"{exc}: {exc.stderr!r}"[-2000:], "records": []}
                continue
            log(f"  ready in {servers[name][2]:.2f} s (first prediction answered)")
            out[name] = {"cold_start_s": servers[name][2], "records": []}
        if "inprocess" in plan.subjects:
            log(f"loading the in-process subject with {model}")
            runner = InProcessRunner(
                model, plan, torch_home, photos_base, workdir / f"inprocess-{model}.log"
            )
            out["inprocess"] = {"records": []}
        order = [s for s in SUBJECTS if s in plan.subjects]
        order += [name for name in peer_envs or {} if name in servers]
        phases = [(mode, n) for mode in plan.modes for n in plan.concurrency]
        for i, (mode, n) in enumerate(phases):
            for kind in order[i % len(order) :] + order[: i % len(order)]:
                for other, (proc, _, _) in servers.items():
                    if other != kind and other not in paused:
                        paused[other] = procstats.pause(proc.pid)
                if kind in paused:
                    procstats.resume(paused.pop(kind), servers[kind][0].pid)
                if kind == "inprocess":
                    assert runner is not None
                    rec = runner.phase(mode, n)
                elif kind in peer_bodies:
                    proc, base, _ = servers[kind]
                    rec = drive_phase(
                        proc,
                        base,
                        peer_bodies[kind][mode],
                        n,
                        mode,
                        plan,
                        photo_pid,
                        lambda kind=kind, base=base, mode=mode: peer_subjects.client(
                            kind, base, mode, model
                        ),
                    )
                else:
                    proc, base, _ = servers[kind]
                    rec = drive_phase(proc, base, bodies[mode], n, mode, plan, photo_pid)
                out[kind]["records"].append(rec)
                log(
                    f"  {kind:10s} {model} {mode:6s} c{n:<2d}: {rec['throughput']:6.1f} req/s, "
                    f"p50 {rec['p50_ms'] or 0:7.1f} ms, p99 {rec['p99_ms'] or 0:7.1f} ms, "
                    f"{rec['cpu_ms_per_image'] or 0:5.1f} CPU ms/img, errors {rec['errors']}"
                )
        for kind in list(paused):
            procstats.resume(paused.pop(kind), servers[kind][0].pid)
        for kind, (proc, _, _) in servers.items():
            sample = procstats.sample(proc.pid)
            out[kind].update(rss_bytes=sample.rss, processes=sample.processes)
        if runner is not None:
            out["inprocess"].update(runner.finish())
            runner = None
    finally:
        if runner is not None:
            runner.kill()
        for kind in list(paused):  # a stopped process would not see SIGTERM
            procstats.resume(paused.pop(kind), servers[kind][0].pid, settle=0)
        for proc, _, _ in servers.values():
            proc.stop()
    return out


def v2_memory(torch_home: Path, workdir: Path, photos_base: str, plan: Plan, log: Log) -> dict:
    """backend_v2 with its three default models: cold start, and RSS after using each model."""
    proc, base, cold = start_server("ours", None, torch_home, workdir, app="backend_v2")
    try:
        bodies = []
        for model in OFFLINE_MODELS:
            bodies += bodies_for(plan, photos_base, model)["url"]
        result = run_load(
            lambda: HttpClient(base),
            bodies,
            concurrency=4,
            duration=max(1.0, plan.duration / 2),
            max_requests=max(len(bodies), 60),
        )
        sample = procstats.sample(proc.pid)
        log(
            f"v2 ({', '.join(OFFLINE_MODELS)}): cold start {cold:.2f} s, "
            f"RSS {sample.rss / 2**20:.0f} MiB over {sample.processes} processes, "
            f"{result.ok} requests ({result.errors} errors)"
        )
        return {
            "models": list(OFFLINE_MODELS),
            "cold_start_s": cold,
            "rss_bytes": sample.rss,
            "processes": sample.processes,
            "requests": result.ok,
            "errors": result.errors,
        }
    finally:
        proc.stop()


def first_start(model: str, torch_home: Path, workdir: Path, log: Log) -> dict:
    """Cold start with the weights baked but no ONNX export yet (exported at start-up)."""
    home = workdir / "torch_home_no_onnx"
    (home / "hub").mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        (home / "hub" / "checkpoints").symlink_to(torch_home / "hub" / "checkpoints")
    proc, _, cold = start_server("ours", model, home, workdir)
    proc.stop()
    shutil.rmtree(home, ignore_errors=True)
    log(f"first start of {model} without a baked ONNX export: {cold:.2f} s")
    return {"model": model, "cold_start_s": cold}


def production_stress(plan: Plan, torch_home: Path, workdir: Path, log: Log) -> dict:
    """Issue 16's three measurements on backend_v1 started as its image starts it, with the
    production defaults whatever this process's environment says (``stress.py``)."""
    from . import stress

    out: dict = {"load": [], "slow": [], "decode": None}
    proc = stress.start_backend(workdir, torch_home)
    try:
        uploads = stress.photo_uploads(plan.photos)
        for n in plan.stress_concurrency:
            figures = stress.closed_loop(
                proc.url, uploads, concurrency=n, total=plan.stress_requests * n, max_seconds=180
            ).as_dict()
            out["load"].append(figures)
            log(
                f"  stress c{n}: {figures['requests']} uploads, {figures['errors']} errors, "
                f"{figures['throughput']} req/s, p99 {figures['p99_ms']} ms"
            )
        if plan.stress_slow_clients:
            for kind in ("headers", "body"):
                figures = stress.slow_clients(
                    proc.url, clients=plan.stress_slow_clients, kind=kind, seconds=6
                ).as_dict()
                out["slow"].append(figures)
                log(
                    f"  stress: {figures['clients']} slow clients ({kind}): /hello "
                    f"{figures['probes'] - figures['probes_unanswered']}/{figures['probes']} "
                    f"answered, at most {figures['probe_max_ms']} ms"
                )
        if plan.stress_decodes:
            flood = stress.decode_flood(proc.url, proc.pid, uploads=plan.stress_decodes).as_dict()
            out["decode"] = flood
            log(
                f"  stress: {flood['uploads']} x {flood['image']}: peak RSS "
                f"{flood['rss_peak_mib']} MiB, statuses {flood['statuses']}, then {flood['after']}"
            )
    finally:
        proc.stop()
    return out


# ---- the whole run -------------------------------------------------------------------------
def settings_used(plan: Plan) -> dict[str, str]:
    """The HW5_* settings our backend ran with: the caller's environment's, nothing added (the
    bench runs the production defaults unless the caller sets variables: a tuned run)."""
    return dict(environment_info()["hw5_settings"])


def run(plan: Plan, *, command: str, log: Log = print) -> dict:
    started = time.perf_counter()
    results: dict = {
        "meta": run_meta(command, plan, hw5_settings=settings_used(plan)),
        "models": {m: {"random_init": is_random_init(m)} for m in plan.models},
        "subjects": {s: {} for s in plan.subjects},
    }
    peer_envs: dict[str, Path] = {}
    if plan.peers:
        from . import peers as peer_subjects

        log(f"preparing the peers' environments: {', '.join(plan.peers)}")
        peer_envs, skipped = peer_subjects.prepare(plan.peers, log=log)
        results["peers"] = {
            "requested": list(plan.peers),
            "skipped": skipped,
            "versions": {name: peer_subjects.versions(py) for name, py in peer_envs.items()},
        }
        results["subjects"].update({name: {} for name in peer_envs})
    with tempfile.TemporaryDirectory(prefix="hw5-bench-") as tmp:
        workdir = Path(tmp)
        torch_home = workdir / "torch_home"
        needed = list(dict.fromkeys([*plan.models, *(OFFLINE_MODELS if plan.v2 else ())]))
        log(f"preparing weights and ONNX exports for {', '.join(needed)} (the build step)")
        results["meta"]["bake_seconds"] = prepare_in_subprocess(needed, torch_home, log)
        with photo_server(workdir, log) as (photos_base, photo_proc):
            for model in plan.models:
                measured = measure_model(
                    model, plan, torch_home, workdir, (photos_base, photo_proc.pid), log, peer_envs
                )
                for kind, entry in measured.items():
                    results["subjects"][kind][model] = entry
            if plan.v2:
                results["v2"] = v2_memory(torch_home, workdir, photos_base, plan, log)
        if plan.stress_concurrency or plan.stress_slow_clients or plan.stress_decodes:
            results["stress"] = production_stress(plan, torch_home, workdir, log)
        if plan.first_start and "efficientnet_lite0" in plan.models:
            results["first_start"] = first_start("efficientnet_lite0", torch_home, workdir, log)
    results["meta"]["load_average_after"] = procstats.load_average()
    results["meta"]["wall_seconds"] = time.perf_counter() - started
    return results
