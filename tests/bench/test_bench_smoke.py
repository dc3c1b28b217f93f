"""The reduced benchmark run, end to end: every subject started, driven and reported.

No thresholds here (the machine is shared and small); the figures must exist, be sane, and the
answers must be right. Everything runs on 127.0.0.1 under the network guard."""

import json
import os
import subprocess
import sys
import time

import pytest

from hw5kit.bench import procstats
from hw5kit.photos import photo
from hw5kit.serving.models import runtime

from ..conftest import ROOT, SUPPORT

pytestmark = pytest.mark.slow


def test_smoke_run_measures_every_subject_and_writes_the_report(tmp_path):
    out = tmp_path / "report"
    guard_log = tmp_path / "netguard.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HW5_", "GUNICORN_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT / "netguard"), str(ROOT / "src")])
    env["NETGUARD_LOG"] = str(guard_log)
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "hw5kit.bench", "run", "--smoke", "--out", str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not guard_log.exists() or guard_log.read_text() == ""
    print(f"smoke run took {elapsed:.0f} s")

    results = json.loads((out / "results.json").read_text())
    model = "efficientnet_lite0"
    for subject in ("reference", "ours", "inprocess"):
        entry = results["subjects"][subject][model]
        phases = {(r["mode"], r["concurrency"]) for r in entry["records"]}
        assert phases == {("url", 1), ("url", 4), ("upload", 1), ("upload", 4)}, subject
        for rec in entry["records"]:
            assert rec["errors"] == 0, (subject, rec["error_samples"])
            assert rec["requests"] > 0 and rec["throughput"] > 0
            assert 0 < rec["p50_ms"] <= rec["p95_ms"] <= rec["p99_ms"]
            assert rec["cpu_ms_per_image"] > 0
            for name in ("chelsea.png", "coffee.png"):
                if name in rec["categories"]:  # a short phase may not reach every photo
                    assert all(photo(name).matches(c) for c in rec["categories"][name]), rec
        assert entry["rss_bytes"] > 50 * 2**20
    for subject in ("reference", "ours"):
        assert results["subjects"][subject][model]["cold_start_s"] > 0
        assert results["subjects"][subject][model]["processes"] >= 2  # gunicorn master + worker
    assert results["subjects"]["reference"][model]["processes"] == 3  # 2 workers
    # the production default: OpenVINO where the CPU has native bfloat16, else ONNX Runtime
    assert results["subjects"]["inprocess"][model]["inference"]["runtime"] == (
        runtime.resolve_runtime("auto")
    )

    text = (out / "README.md").read_text()
    assert "## Targets" in text and "python -m hw5kit.bench run --smoke" in text
    assert "throughput at c4 >= 3x the reference" in text
    for png in ("throughput.png", "latency.png", "cpu_per_image.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_terminated_run_stops_every_server_it_started(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HW5_", "GUNICORN_"))}
    env["PYTHONPATH"] = str(ROOT / "src")
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        run = subprocess.Popen(
            [sys.executable, "-u", "-m", "hw5kit.bench", "run", "--smoke", "--no-peers",
             "--duration", "30", "--out", str(tmp_path / "report")],
            env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 150
        while " c1 " not in log.read_text():  # every subject is up: the first phase ran
            assert run.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        started = set(procstats.tree(run.pid)) - {run.pid}
        assert len(started) >= 4, started  # photo server, reference, ours, in-process
        run.terminate()
        assert run.wait(timeout=30) != 0
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in started if _alive(pid)], log.read_text()[-2000:]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
