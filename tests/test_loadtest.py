"""The bounded load session, at a reduced size: 400 requests at concurrency 32, good and bad
inputs mixed, against a live gunicorn backend (``nox -s loadtest`` runs the full 5,000)."""

import json

import pytest

from hw5kit import loadtest
from hw5kit.testkit.badinputs import cases

from .conftest import subprocess_env

pytestmark = pytest.mark.slow


def test_the_plan_mixes_good_and_bad_inputs_reproducibly():
    items = loadtest.plan(1000, bad_fraction=0.4, seed=1)
    assert items == loadtest.plan(1000, bad_fraction=0.4, seed=1)
    kinds = {item.kind for item in items}
    assert {"upload", "url"} <= kinds
    bad = [item for item in items if item.case is not None]
    assert 300 < len(bad) < 500
    mixable = {c.name for c in cases("v1") if c.in_load_mix}
    assert {item.kind for item in bad} == mixable  # every cheap case takes part


def test_a_reduced_load_session_passes_and_prints_its_figures(tmp_path, capsys):
    env = subprocess_env(tmp_path)
    report = loadtest.run(requests=400, concurrency=32, env=env, workdir=tmp_path)
    print("\n".join(report.lines()))
    out = capsys.readouterr().out
    assert "requests      400 at concurrency 32" in out and "memory (RSS)" in out
    assert report.unexpected == [], report.unexpected[:5]
    assert report.server_errors == 0
    assert report.good_ok > 0 and report.kinds["bad"] > 100
    assert report.rss_after_warmup_mb > 100
    assert report.rss_growth <= 0.10, report.lines()
    assert report.passed
    guard = tmp_path / "netguard.log"  # the backend never tried to leave the machine
    assert not guard.exists() or guard.read_text() == ""


def test_the_cli_writes_json_and_fails_on_a_violated_memory_bound(tmp_path, monkeypatch):
    """``--rss-tolerance -1`` cannot be met (memory never shrinks by 100%): exit status 1."""
    for key, value in subprocess_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "figures.json"
    code = loadtest.main(
        ["--requests", "40", "--concurrency", "4", "--warmup", "8", "--rss-tolerance", "-1",
         "--json", str(out)]
    )  # fmt: skip
    figures = json.loads(out.read_text())
    assert code == 1 and figures["passed"] is False
    assert figures["requests"] == 40 and figures["unexpected"] == []
