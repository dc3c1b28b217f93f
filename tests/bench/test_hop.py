"""The extra-hop measurement (question 5): its arithmetic, the committed report, the CLI, and a
reduced run end to end against a real gunicorn backend and a real Streamlit frontend (bounded,
no thresholds: the machine is shared)."""

import itertools
import json
import os
import subprocess
import sys
import time

import pytest

from hw5kit.bench import hop, hop_report
from hw5kit.bench.__main__ import main
from hw5kit.photos import photo
from hw5kit.serving.settings import default_instance_workers

from ..conftest import ROOT, SUPPORT, need

REPORT = ROOT / "reports" / "hop"


def test_summary_subtracts_the_servers_own_time_request_by_request():
    s = hop.summarize([0.010, 0.020, 0.030], [8.0, 15.0, 29.0])
    assert s["n"] == 3 and s["p50_ms"] == pytest.approx(20.0)
    assert s["server_p50_ms"] == pytest.approx(15.0)
    assert s["outside_server_p50_ms"] == pytest.approx(2.0)  # of 2, 5, 1 ms
    assert "server_p50_ms" not in hop.summarize([0.2, 0.3], [])


def test_hop_figures_compare_the_client_with_in_process_and_direct():
    latency = {
        "url": {
            "inprocess": {"p50_ms": 10.0},
            "direct": {"p50_ms": 12.0},
            "client": {"p50_ms": 13.5, "server_p50_ms": 10.5, "outside_server_p50_ms": 2.5},
        },
        "upload": {"inprocess": {"p50_ms": 9.0}, "client": {"p50_ms": 11.0}},  # no direct
    }
    figures = hop.hop_figures(latency)
    assert list(figures) == ["url"]
    assert figures["url"] == {
        "client_p50_ms": 13.5,
        "backend_p50_ms": 10.5,
        "hop_ms": 2.5,
        "client_minus_inprocess_ms": 3.5,
        "client_minus_direct_ms": 1.5,
    }


def test_the_page_sequence_never_repeats_a_label_or_waits_on_a_substring():
    labels = {"a.png": "cat", "b.png": "tiger cat", "c.png": "palace", "d.png": "espresso"}
    sequence = hop.page_sequence(labels, 7)
    assert "a.png" not in sequence and "b.png" not in sequence  # "cat" is inside "tiger cat"
    assert all(x != y for x, y in itertools.pairwise(sequence))
    with pytest.raises(RuntimeError, match="two photos with distinct labels"):
        hop.page_sequence({"a.png": "cat", "b.png": "tiger cat"}, 3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["hop", "--model", "resnet9000"], "resnet9000"),
        (["hop", "--page-rounds", "-1"], "page_rounds at least 0"),
    ],
)
def test_the_hop_command_refuses_bad_settings(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_the_committed_report_is_its_results_rendered():
    results = json.loads((REPORT / "results.json").read_text())
    assert (REPORT / "README.md").read_text() == hop_report.report_markdown(results)
    assert results["meta"]["command"] == "python -m hw5kit.bench hop"
    assert results["meta"]["page_skipped"] is None  # the committed run includes the page
    assert set(results["services"]) == {"backend_v1", "frontend_v1"}
    for mode in hop.MODES:
        assert {"inprocess", "direct", "client"} <= set(results["latency"][mode])
        assert results["latency"][mode]["client"]["n"] == results["meta"]["plan"]["rounds"]


@pytest.mark.slow
def test_smoke_run_measures_both_services_and_every_path(tmp_path):
    browser = hop.browser_problem() is None
    need(browser, f"the page path: {hop.browser_problem()}")
    out = tmp_path / "report"
    guard_log = tmp_path / "netguard.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HW5_", "GUNICORN_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT / "netguard"), str(ROOT / "src")])
    env["NETGUARD_LOG"] = str(guard_log)
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "hw5kit.bench", "hop", "--smoke", "--out", str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not guard_log.exists() or guard_log.read_text() == ""
    print(f"hop smoke run took {time.monotonic() - start:.0f} s")

    results = json.loads((out / "results.json").read_text())
    backend, frontend = results["services"]["backend_v1"], results["services"]["frontend_v1"]
    # gunicorn's master and the workers its defaults start here (one per CPU as memory allows)
    workers = default_instance_workers({"MODEL_NAME": "efficientnet_lite0"})
    assert backend["after_run"]["processes"] == 1 + workers
    assert frontend["after_run"]["processes"] == 1
    assert backend["after_start"]["rss_bytes"] > 50 * 2**20  # the model is loaded
    # the page's first session imports the client and the charts into the Streamlit process
    assert frontend["after_run"]["rss_bytes"] > frontend["after_start"]["rss_bytes"]
    for mode in hop.MODES:
        paths = results["latency"][mode]
        for name in ("inprocess", "direct", "client"):
            assert paths[name]["n"] == hop.SMOKE["rounds"]
            assert 0 < paths[name]["p50_ms"] <= paths[name]["p90_ms"]
        assert 0 < paths["client"]["server_p50_ms"] < paths["client"]["p50_ms"]
        assert results["hop"][mode]["hop_ms"] > 0
    page = results["latency"]["url"]["page"]
    assert page["n"] == hop.SMOKE["page_rounds"] and page["p50_ms"] > 0
    assert photo("chelsea.png").matches(results["labels"]["chelsea.png"])
    assert photo("coffee.png").matches(results["labels"]["coffee.png"])
    assert (out / "README.md").read_text() == hop_report.report_markdown(results)
