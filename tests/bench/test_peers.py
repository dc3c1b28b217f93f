"""The serving peers as bench subjects: their request formats, answers, environments, plan and
report (units), and one real peer (LitServe, the lightest) in a smoke run beside ours."""

import base64
import json
import os
import subprocess
import sys

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request as WerkzeugRequest

from hw5kit import devenv
from hw5kit.bench import peers, peers_report, report
from hw5kit.bench.__main__ import parser, plan_from
from hw5kit.bench.load import HttpClient
from hw5kit.photos import CORE_PHOTOS, photo

from ..conftest import ROOT, SUPPORT

FILES = {"coffee.png": b"\x89PNG fake bytes \r\n--not-a-boundary", "chelsea.png": b"\xff\xd8cat"}
BASE = "http://127.0.0.1:9/photos"


def parsed(req):
    """What a WSGI server makes of one of our prepared requests: (JSON or None, files)."""
    environ = EnvironBuilder(
        method="POST", data=req.body, content_type=req.content_type
    ).get_environ()
    request = WerkzeugRequest(environ)
    if req.content_type == "application/json":
        return json.loads(request.get_data()), {}
    return None, {k: (f.filename, f.read()) for k, f in request.files.items()}


@pytest.mark.parametrize("name", list(peers.PEERS))
def test_each_peer_gets_its_documented_request_format_for_both_modes(name):
    urls = peers.requests_for(name, "url", BASE, FILES)
    uploads = peers.requests_for(name, "upload", BASE, FILES)
    assert [r.photo for r in urls] == [r.photo for r in uploads] == list(FILES)
    for req in urls:
        body, _ = parsed(req)
        url = f"{BASE}/{req.photo}"
        expected = {
            "bentoml": {"urls": [url]},
            "kserve": {"instances": [{"url": url}]},
        }.get(name, {"url": url})
        assert body == expected
    for req, (photo_name, data) in zip(uploads, FILES.items(), strict=True):
        body, files = parsed(req)
        if name == "kserve":  # v1 protocol: JSON, the image base64-encoded
            assert files == {}
            assert base64.b64decode(body["instances"][0]["image"]["b64"]) == data
        else:
            field = {"torchserve": "data", "bentoml": "images", "litserve": "file"}[name]
            assert files == {field: (photo_name, data)}
    assert peers.route(name, "url", "m").startswith("/")
    assert peers.route("bentoml", "url", "m") != peers.route("bentoml", "upload", "m")
    assert peers.route("kserve", "upload", "m") == "/v1/models/m:predict"


def test_top1_reads_every_peers_answer_shape_and_a_bad_answer_is_an_error():
    answer = {"category": "espresso", "probability": 0.9}
    assert peers.top1(answer) == "espresso"
    assert peers.top1([answer]) == "espresso"  # BentoML's batchable API: a list per request
    assert peers.top1({"predictions": [answer]}) == "espresso"  # KServe v1
    client = HttpClient("http://127.0.0.1:9", label=peers.top1)
    client.post = lambda req: (200, b'{"predictions": []}')
    ok, why = client.send(None)
    assert not ok and why.startswith("unexpected answer (IndexError)")


def test_the_plan_takes_every_peer_by_default_none_in_a_smoke_and_refuses_unknown_ones():
    def plan(*argv):
        return plan_from(parser().parse_args(["run", *argv]))

    assert plan().peers == list(peers.PEERS)
    assert plan("--smoke").peers == []
    assert plan("--smoke", "--peers").peers == list(peers.PEERS)
    assert plan("--smoke", "--peers", "litserve,kserve,litserve").peers == ["litserve", "kserve"]
    assert plan("--no-peers").peers == []
    with pytest.raises(SystemExit, match="unknown peer triton; known: torchserve"):
        plan("--peers", "triton")


def test_environments_are_stamped_by_their_requirements_and_a_missing_java_skips_torchserve(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("HW5_PEER_ENVS", str(tmp_path))
    peer = peers.PEERS["litserve"]
    assert peers.env_dir("litserve") == tmp_path / "litserve"
    assert not peers.is_current(peer)
    (tmp_path / "litserve" / "bin").mkdir(parents=True)
    (tmp_path / "litserve" / "bin" / "python").write_text("")
    (tmp_path / "litserve" / peers.STAMP).write_text(
        json.dumps({"fingerprint": peers.fingerprint(peer)})
    )
    assert peers.is_current(peer)
    (tmp_path / "litserve" / peers.STAMP).write_text(json.dumps({"fingerprint": "old"}))
    assert not peers.is_current(peer)
    # every requirements file pins every package it installs
    for p in peers.PEERS.values():
        lines = [x for x in p.requirements.read_text().splitlines() if x and x[0] != "#"]
        assert lines and all("==" in x for x in lines), p.name
    monkeypatch.setattr(devenv, "ensure_system_packages", lambda commands, log: list(commands))
    ready, skipped = peers.prepare(["torchserve"], log=lambda m: None)
    assert ready == {}
    assert "needs java" in skipped["torchserve"] and "default-jre-headless" in skipped["torchserve"]


def _peer_results():
    def rec(mode, c, thr, p50, cpu, errors=0):
        return {
            "mode": mode,
            "concurrency": c,
            "requests": 100,
            "errors": errors,
            "throughput": thr,
            "p50_ms": p50,
            "p95_ms": p50 * 2,
            "p99_ms": p50 * 3,
            "cpu_ms_per_image": cpu,
            "categories": {"coffee.png": ["espresso"]},
        }

    def entry(c1, c16, p50, cpu, rss, cold):
        return {
            "m": {
                "cold_start_s": cold,
                "rss_bytes": rss * 2**20,
                "processes": 2,
                "records": [rec("upload", 1, c1, p50, cpu), rec("upload", 16, c16, p50 * 9, cpu)],
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
                "modes": ["upload"],
                "concurrency": [1, 16],
                "subjects": ["ours"],
                "duration": 1,
                "warmup": 0,
                "max_requests": 10,
                "photos": ["coffee.png"],
                "peers": ["litserve", "kserve", "torchserve"],
            },
        },
        "models": {"m": {"random_init": False}},
        "subjects": {
            "ours": entry(60, 90, 15, 10, 300, 1.0),
            "litserve": entry(50, 60, 20, 20, 800, 3.0),
            "kserve": entry(55, 45, 18, 22, 600, 5.0),
        },
        "peers": {
            "requested": ["litserve", "kserve", "torchserve"],
            "skipped": {"torchserve": "needs java (Debian: default-jre-headless)"},
            "versions": {"litserve": {"litserve": "0.2.19", "onnxruntime": "1.32.0"}},
        },
    }


def test_peers_table_ratios_targets_chart_and_readme_line(tmp_path):
    results = _peer_results()
    assert peers_report.advantage(results, "m", "upload", "c16") == (1.5, "litserve")
    assert peers_report.advantage(results, "m", "upload", "p50") == (18 / 15, "kserve")
    assert peers_report.advantage(results, "m", "upload", "rss") == (2.0, "kserve")
    table = peers_report.table(results, "m", "upload")
    assert "| **ours** (production defaults) | 60.0 | 90.0 | 15.0 |" in table
    assert "| ours vs the best peer | 1.09x (KServe) | 1.50x (LitServe) | 1.20x (KServe) |" in table
    rows = {r["target"]: r for r in peers_report.targets(results)}
    thr = rows["throughput at c16 ahead of every peer"]
    assert thr["verdict"] == "met" and "aim 1.5x: reached" in thr["margin"]
    assert rows["p50 at c1 ahead of every peer"]["verdict"] == "met"
    results["subjects"]["ours"]["m"]["records"][1]["throughput"] = 55.0  # behind LitServe
    rows = {r["target"]: r for r in peers_report.targets(results)}
    missed = rows["throughput at c16 ahead of every peer"]
    assert missed["verdict"] == "MISSED" and "LitServe 0.2 needs 20.0 CPU ms" in missed["why"]
    # less CPU per image yet less throughput: the reason is the cores kept busy
    assert "keeps 0.6 cores busy against 1.2" in missed["why"]
    results["subjects"]["ours"]["m"]["records"][1]["cpu_ms_per_image"] = 25.0
    rows = {r["target"]: r for r in peers_report.targets(results)}
    assert "cores busy" not in rows["throughput at c16 ahead of every peer"]["why"]
    results["subjects"]["ours"]["m"]["records"][1]["cpu_ms_per_image"] = 10.0

    results["subjects"]["kserve"]["m"]["records"][0]["categories"] = {"coffee.png": ["cup"]}
    line = peers_report.agreement_line(results, "m")
    assert "LitServe 0.2 1/1" in line
    assert (
        "KServe ModelServer 0.21 0/1 (differs on coffee.png: ours espresso, theirs cup/espresso)"
        in line
    )
    path = report.write_report(results, tmp_path)
    text = path.read_text()
    assert "## Against the serving peers (same run)" in text
    assert "**TorchServe 0.12 skipped**: needs java" in text
    assert "![peers.png](peers.png)" in text
    assert (tmp_path / "peers.png").read_bytes().startswith(b"\x89PNG")
    summary = report.summary_markdown(results)
    assert "Against the serving peers (LitServe 0.2, KServe ModelServer 0.21" in summary
    assert "Skipped here: torchserve." in summary


@pytest.mark.slow
def test_smoke_run_with_the_lightest_peer_beside_ours(tmp_path):
    """CI's peer smoke: LitServe from its own environment, the same photos, both modes."""
    out = tmp_path / "report"
    guard_log = tmp_path / "netguard.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HW5_", "GUNICORN_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT / "netguard"), str(ROOT / "src")])
    env["NETGUARD_LOG"] = str(guard_log)
    argv = ["--smoke", "--no-stress", "--subjects", "ours", "--peers", peers.LIGHTEST]
    done = subprocess.run(
        [sys.executable, "-m", "hw5kit.bench", "run", *argv, "--out", str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,  # the first run creates the peer's environment (pip)
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not guard_log.exists() or guard_log.read_text() == ""
    results = json.loads((out / "results.json").read_text())
    assert results["peers"]["skipped"] == {}
    assert results["peers"]["versions"]["litserve"]["litserve"] == "0.2.19"
    entry = results["subjects"]["litserve"]["efficientnet_lite0"]
    assert entry["cold_start_s"] > 0 and entry["rss_bytes"] > 50 * 2**20
    assert entry["processes"] >= 3  # the server and its worker processes
    phases = {(r["mode"], r["concurrency"]) for r in entry["records"]}
    assert phases == {("url", 1), ("url", 4), ("upload", 1), ("upload", 4)}
    for rec in entry["records"]:
        assert rec["errors"] == 0, rec["error_samples"]
        assert rec["requests"] > 0 and rec["cpu_ms_per_image"] > 0
        for name, labels in rec["categories"].items():  # the same model, the right answers
            if name in CORE_PHOTOS:  # the photos every model gets right
                assert all(photo(name).matches(label) for label in labels), (name, labels)
    text = (out / "README.md").read_text()
    assert "### efficientnet_lite0, upload" in text and "| LitServe 0.2 |" in text
    assert "ours vs the best peer" in text
    assert (out / "peers.png").read_bytes().startswith(b"\x89PNG")
