"""The benchmark's parts: load generator, /proc readings, target verdicts, README update."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import ClassVar

import pytest

from hw5kit.bench import procstats, report
from hw5kit.bench.__main__ import main as bench_main
from hw5kit.bench.load import run_load, upload_requests, url_requests

from ..conftest import ROOT


class CountingClient:
    sent: ClassVar[list] = []
    lock = threading.Lock()

    def __init__(self, fail_every: int = 0, delay: float = 0.002):
        self.fail_every = fail_every
        self.delay = delay

    def send(self, payload):
        time.sleep(self.delay)
        with self.lock:
            self.sent.append(payload)
            n = len(self.sent)
        if self.fail_every and n % self.fail_every == 0:
            return False, "HTTP 503: busy"
        return True, f"label-{payload.photo}"

    def close(self):
        pass


@pytest.fixture(autouse=True)
def _reset():
    CountingClient.sent = []


def test_run_load_counts_only_the_measured_window_and_stops_at_max_requests():
    payloads = url_requests("http://127.0.0.1:1", ["a.png", "b.png"], None)
    result = run_load(
        lambda: CountingClient(), payloads, concurrency=3, duration=5, warmup=0.1, max_requests=40
    )
    assert result.ok == 40 and result.errors == 0
    assert len(CountingClient.sent) > 40  # the warm-up requests were sent but not counted
    assert result.seconds < 2
    assert result.categories == {"a.png": {"label-a.png"}, "b.png": {"label-b.png"}}


def test_run_load_is_bounded_in_time_and_records_errors():
    payloads = url_requests("http://127.0.0.1:1", ["a.png"], "m")
    start = time.perf_counter()
    result = run_load(lambda: CountingClient(fail_every=4), payloads, concurrency=2, duration=0.3)
    assert time.perf_counter() - start < 1.5
    assert result.errors > 0 and result.ok > result.errors
    assert result.error_samples[0] == "HTTP 503: busy"
    assert b'"model": "m"' in payloads[0].body


def test_upload_bodies_are_valid_multipart():
    (req,) = upload_requests({"x.png": b"\x89PNGdata"}, "efficientnet_lite1")
    boundary = req.content_type.split("boundary=")[1]
    assert req.body.startswith(f"--{boundary}\r\n".encode())
    assert b'name="file"; filename="x.png"' in req.body and b"\x89PNGdata\r\n" in req.body
    assert b'name="model"\r\n\r\nefficientnet_lite1\r\n' in req.body
    assert req.body.endswith(f"--{boundary}--\r\n".encode())


def test_percentile():
    from hw5kit.bench.load import percentile

    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(list(range(101)), 99) == 99
    assert percentile([1.0, 2.0], 75) == 1.75


def test_procstats_sees_a_busy_child_and_its_memory():
    burn = (
        "import sys, time\n"
        "while time.process_time() < 0.4: pass\n"
        "print('done', flush=True)\n"
        "time.sleep(10)\n"
    )
    me = procstats.os.getpid()
    child = subprocess.Popen([sys.executable, "-c", burn], stdout=subprocess.PIPE, text=True)
    try:
        first = procstats.sample(me)
        assert child.stdout.readline() == "done\n"  # it has burnt 0.4 s of CPU
        later = procstats.sample(me)
        assert child.pid in later.cpu and later.processes >= 2
        assert later.cpu_since(first) >= 0.4 - first.cpu.get(child.pid, 0.0) - 0.02
        assert later.rss > 10 * 2**20
    finally:
        child.kill()
        child.wait(5)
    assert procstats.cpu_seconds(child.pid) == 0.0  # gone: nothing to read


def _results(ours_c16=120.0, ref_c16=30.0, inp_c16=140.0, ours_p50=12.0, inp_p50=10.0):
    def rec(mode, c, thr, p50, cpu=10.0):
        return {
            "mode": mode,
            "concurrency": c,
            "requests": 100,
            "errors": 0,
            "throughput": thr,
            "p50_ms": p50,
            "p95_ms": p50 * 2,
            "p99_ms": p50 * 3,
            "cpu_ms_per_image": cpu,
            "client_cpu_seconds": 0.05,
            "categories": {"coffee.png": ["espresso"]},
        }

    def subject(c16, p50, cpu):
        return {
            "m": {
                "cold_start_s": 1.2,
                "rss_bytes": 300 * 2**20,
                "processes": 2,
                "records": [rec("url", 1, 50.0, p50, cpu), rec("url", 16, c16, p50 * 8, cpu)],
            }
        }

    return {
        "meta": {
            "date": "2026-01-01 00:00 UTC",
            "command": "python -m hw5kit.bench run",
            "load_average_before": [0.1, 0.1, 0.1],
            "load_average_after": [0.2, 0.2, 0.2],
            "plan": {
                "models": ["m"],
                "modes": ["url"],
                "concurrency": [1, 16],
                "subjects": ["reference", "ours", "inprocess"],
                "duration": 1,
                "warmup": 0,
                "max_requests": 10,
                "photos": ["coffee.png"],
            },
        },
        "models": {"m": {"random_init": True}},
        "subjects": {
            "reference": subject(ref_c16, 40.0, 40.0),
            "ours": subject(ours_c16, ours_p50, 12.0),
            "inprocess": {
                "m": {
                    "rss_bytes": 1,
                    "records": [rec("url", 1, 60, inp_p50), rec("url", 16, inp_c16, 50)],
                }
            },
        },
        "v2": {
            "models": ["a", "b", "c"],
            "cold_start_s": 2,
            "rss_bytes": 900 * 10**6,
            "processes": 2,
        },
    }


def test_a_paused_subject_spends_no_cpu_and_resumes_children_first():
    # a supervisor whose child burns CPU without end, as LitServe's idle workers poll
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    root = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        child = int(root.stdout.readline())
        time.sleep(0.2)
        stopped = procstats.pause(root.pid)
        assert stopped[-1] == root.pid and child in stopped  # the root last
        before = procstats.cpu_seconds(child)
        time.sleep(0.5)
        assert procstats.cpu_seconds(child) - before < 0.05  # paused: no CPU
        procstats.resume(stopped, root.pid)
        time.sleep(0.5)
        assert procstats.cpu_seconds(child) - before > 0.2  # burning again
        for pid in (root.pid, child):
            with open(f"/proc/{pid}/stat") as fh:
                assert fh.read().rsplit(")", 1)[1].split()[0] != "T"
    finally:
        for pid in procstats.tree(root.pid)[::-1]:
            os.kill(pid, signal.SIGKILL)
        root.wait(5)


def test_targets_met_and_missed_with_margins():
    met = report.targets(_results())
    # no lite0 row: no cold start; a row for errors at every concurrency
    assert [r["verdict"] for r in met] == ["met", "met", "met", "met", "met"]
    assert met[2]["target"] == "no error at any concurrency with the production defaults"
    assert met[0]["measured"].startswith("4.00x") and met[0]["margin"] == "33% margin"
    missed = report.targets(_results(ours_c16=60.0, ours_p50=15.0))
    by_target = {r["target"]: r for r in missed}
    ref = by_target["throughput at c16 >= 3x the reference"]
    assert ref["verdict"] == "MISSED" and ref["margin"] == "by 33%" and ref["why"]
    inp = by_target["throughput at c16 >= 75% of the in-process limit"]
    assert inp["verdict"] == "MISSED" and inp["margin"] == "by 43%"
    p50 = by_target["p50 at c1 <= 1.25x in-process single-image latency"]
    assert p50["verdict"] == "MISSED" and "adds 5.0 ms" in p50["why"]
    assert by_target["v2 with three models < 1 GB resident"]["verdict"] == "met"


def test_errors_stress_figures_and_a_tuned_run_are_reported(tmp_path):
    results = _results()
    results["subjects"]["ours"]["m"]["records"][1].update(errors=3, error_samples=["HTTP 503"])
    results["meta"]["hw5_settings"] = {"HW5_ALLOW_LOOPBACK": "1", "HW5_MAX_INFLIGHT": "16"}
    results["stress"] = {
        "load": [{"concurrency": 64, "requests": 256, "errors": 0, "statuses": {"200": 256},
                  "throughput": 50.0, "p50_ms": 900.0, "p99_ms": 1500.0, "samples": []}],
        "slow": [{"clients": 64, "kind": "headers", "probes": 20, "probes_unanswered": 0,
                  "probe_max_ms": 8.0}],
        "decode": {"uploads": 8, "image": "6000x6600 16-bit greyscale PNG, 93,030 bytes",
                   "rss_before_mib": 370, "rss_peak_mib": 1700, "rss_after_mib": 370,
                   "statuses": {"200": 8}, "after": "tiger cat"},
    }  # fmt: skip
    by_target = {r["target"]: r for r in report.targets(results)}
    errors = by_target["no error at any concurrency (tuned run)"]
    assert errors["verdict"] == "MISSED" and "HTTP 503" in errors["why"]
    assert by_target["no error at c64 (production defaults)"]["verdict"] == "met"
    assert by_target["/hello under 1 s while 64 clients drip (headers)"]["verdict"] == "met"
    flood = by_target["peak RSS < 1.5 GiB under concurrent near-limit 16-bit PNGs"]
    assert flood["verdict"] == "MISSED" and flood["measured"] == "1700 MiB"
    text = report.write_report(results, tmp_path / "out").read_text()
    assert "TUNED, not the production defaults: HW5_MAX_INFLIGHT=16" in text
    assert "HW5_ALLOW_LOOPBACK" not in text.split("Our settings")[1].split("\n")[0]
    assert "## Under load and attack, with the production defaults" in text
    page = tmp_path / "benchmarks.md"
    page.write_text(f"{report.BEGIN}\n{report.END}\n")
    report.update_page(page, results)
    block = page.read_text()
    assert "Ours: TUNED" in block and "c64: 0 errors" in block and "peak RSS 1700 MiB" in block


def test_report_files_and_docs_section(tmp_path):
    results = _results()
    path = report.write_report(results, tmp_path / "out")
    text = path.read_text()
    assert "## Targets" in text and "m (random-init weights)" in text
    for png in ("throughput.png", "latency.png", "cpu_per_image.png"):
        assert (tmp_path / "out" / png).read_bytes().startswith(b"\x89PNG")
        assert f"]({png})" in text
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# x\n\n## Performance\n\n{report.BEGIN}\nold\n{report.END}\n\n## Next\n")
    assert report.update_page(page, results)
    new = page.read_text()
    assert "old" not in new and "`python -m hw5kit.bench run`" in new and new.endswith("## Next\n")
    assert "Targets: 5 of 5 met" in new
    page.write_text("no markers")
    assert not report.update_page(page, results)
    assert page.read_text() == "no markers"


def test_the_docs_performance_figures_are_the_committed_run():
    """The benchmarks page shows what reports/bench/results.json gives (nox -s bench rewrites
    both); a hand edit or a report committed without its page fails here."""
    page = ROOT / "docs" / "maintainer" / "benchmarks.md"
    results = json.loads((ROOT / "reports" / "bench" / "results.json").read_text())
    text = page.read_text()
    assert text.count(report.BEGIN) == 1 and text.count(report.END) == 1
    assert report.render_page(text, results) == text, (
        f"{page} is stale: run python -m hw5kit.bench run (or update_page from the results)"
    )
    edited = text.replace("Targets: ", "Targets (edited): ", 1)
    assert edited != text and report.render_page(edited, results) == text


def test_cli_help_and_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_main(["run", "--help"])
    assert exit_info.value.code == 0
    assert "--smoke" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown mode or subject: carrier-pigeon"):
        bench_main(["run", "--modes", "carrier-pigeon"])
    assert bench_main(["run", "--models", "no_such_model"]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err


def test_the_report_says_how_many_workers_ours_ran_here_and_on_cloud_run():
    results = _results()
    results["subjects"]["ours"]["m"].update(workers=2, workers_on_cloud_run=1)
    text = report.report_markdown(results, [])
    assert "(here m (random-init weights): 2 (on Cloud Run's default 2 GiB: 1))" in text
    results["subjects"]["ours"]["m"]["workers_on_cloud_run"] = 2
    assert "(here m (random-init weights): 2)" in report.report_markdown(results, [])


def test_the_bench_counts_workers_with_the_deployment_default_memory():
    from hw5kit.bench import run
    from hw5kit.pipeline.deployment import Resources

    assert Resources().memory == "2Gi" and run.CLOUD_RUN_MEMORY == 2 * 1024**3
    lite0, resnet = run.ours_workers("efficientnet_lite0"), run.ours_workers("resnet50")
    from hw5kit.serving.settings import cpu_count

    assert lite0["workers_on_cloud_run"] == min(2, cpu_count())  # 2 fit in 2 GiB
    assert resnet["workers_on_cloud_run"] == 1  # one ResNet-50 worker is about 1 GiB
    assert resnet["workers"] >= resnet["workers_on_cloud_run"]
