"""Shared fixtures: labelled photos on a loopback HTTP server, live gunicorn backends."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hw5kit import photos, procs

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = Path(__file__).resolve().parent / "support"
REQUIRE_ALL = os.environ.get("HW5_REQUIRE_ALL") == "1"
# Debian's Chromium driven by Playwright (never a downloaded browser): the frontend and docs tests
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# The test process itself runs under the network guard too: a test that would resolve or
# connect outside loopback fails instead of sending traffic (see support/netguard).
_GUARD_LOG = Path(tempfile.mkdtemp(prefix="hw5-netguard-")) / "pytest.log"
os.environ["NETGUARD_LOG"] = str(_GUARD_LOG)
sys.path.insert(0, str(SUPPORT / "netguard"))
import sitecustomize as _netguard  # noqa: E402

assert _netguard.connect is not None
sys.path.pop(0)


@pytest.fixture(autouse=True)
def _no_traffic_off_loopback():
    before = _GUARD_LOG.stat().st_size if _GUARD_LOG.exists() else 0
    yield
    if _GUARD_LOG.exists() and _GUARD_LOG.stat().st_size > before:
        text = _GUARD_LOG.read_text()[before:]
        pytest.fail(f"the test tried to reach the network outside loopback:\n{text[:2000]}")


def need(condition: bool, reason: str) -> None:
    """Skip when a machine lacks an optional tool; in CI (HW5_REQUIRE_ALL=1) fail instead."""
    if not condition:
        if REQUIRE_ALL:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


def subprocess_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for a service under test: this checkout's code, the network guard, loopback
    fetching allowed, an empty TORCH_HOME unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HW5_", "GUNICORN_"))}
    env.pop("PORT", None)
    env.pop("SERVING_PORT", None)
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT / "netguard"), str(ROOT / "src")])
    env["NETGUARD_LOG"] = str(tmp / "netguard.log")
    env["HW5_ALLOW_LOOPBACK"] = "1"
    env["TORCH_HOME"] = str(tmp / "torch_home")
    env["HW5_THREADS"] = "8"
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def photo_base_url(tmp_path_factory) -> Iterator[str]:
    with photos.serve_photos(tmp_path_factory.mktemp("photos")) as base:
        yield base


@pytest.fixture(scope="session")
def photo_url(photo_base_url) -> Callable[[str], str]:
    return lambda name: f"{photo_base_url}/{name}"


class Backend:
    def __init__(self, process: procs.Process, url: str, netguard_log: Path):
        self.process = process
        self.url = url
        self.netguard_log = netguard_log

    def blocked_network(self) -> str:
        return self.netguard_log.read_text() if self.netguard_log.exists() else ""


def start_backend(app: str, tmp: Path, *, wait: bool = True, **env: str) -> Backend:
    tmp.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    environ = subprocess_env(tmp, **env)
    process = procs.start(
        app,
        procs.gunicorn_command(ROOT / "apps" / app, port=port, python=sys.executable),
        log_path=tmp / f"{app}.log",
        env=environ,
        url=url,
    )
    backend = Backend(process, url, Path(environ["NETGUARD_LOG"]))
    if wait:
        try:
            procs.wait_http(f"{url}/readyz", timeout=120, process=process)
        except Exception:
            process.stop()
            raise
    return backend


@pytest.fixture
def backend_factory(tmp_path) -> Iterator[Callable[..., Backend]]:
    started: list[Backend] = []

    def factory(app: str, *, wait: bool = True, **env: str) -> Backend:
        backend = start_backend(app, tmp_path / f"{app}-{len(started)}", wait=wait, **env)
        started.append(backend)
        return backend

    yield factory
    for backend in started:
        backend.process.stop()


def _session_backend(tmp_path_factory, app: str, **env: str) -> Iterator[Backend]:
    backend = start_backend(app, tmp_path_factory.mktemp(app), **env)
    yield backend
    backend.process.stop()
    assert backend.blocked_network() == "", "the backend tried to reach the network"


@pytest.fixture(scope="session")
def backend_v1(tmp_path_factory) -> Iterator[Backend]:
    yield from _session_backend(tmp_path_factory, "backend_v1")


@pytest.fixture(scope="session")
def backend_v2(tmp_path_factory) -> Iterator[Backend]:
    yield from _session_backend(tmp_path_factory, "backend_v2")


@pytest.fixture(scope="session")
def int8_torch_home(tmp_path_factory) -> Path:
    """A TORCH_HOME baked as an image build bakes it, with every int8 model (once a session:
    quantizing takes 10-30 s a model)."""
    from hw5kit.serving.models import INT8_MODELS
    from hw5kit.serving.models.weights import bake

    home = tmp_path_factory.mktemp("int8_torch_home")
    bake(list(INT8_MODELS), home, log=lambda message: None)
    return home


# ---- the browser (frontend and docs tests) ----------------------------------------------
@pytest.fixture(scope="session")
def browser():
    need(CHROMIUM.exists(), f"{CHROMIUM} (install: python -m hw5kit.devenv system chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser):
    contexts = []

    def factory(width: int = 1280, height: int = 1500):
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(60_000)
        contexts.append(context)
        return context.new_page()

    yield factory
    for context in contexts:
        context.close()
