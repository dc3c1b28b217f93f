"""Fixtures for the frontend tests.

* In-process backends: the real Flask apps (``create_app``) served by werkzeug on 127.0.0.1, for
  the client and ``AppTest`` tests (the page runs in this process and talks HTTP to them). A
  counter records every request, so tests can check that a page sends no useless ones.
* Streamlit processes for the browser tests, started like the deployed ones
  (``procs.streamlit_command``) with the network guard; their guard log must stay empty and
  their log must hold no traceback.
* Headless Chromium: the ``browser`` and ``new_page`` fixtures of ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from hw5kit import procs
from hw5kit.serving.http import create_app
from hw5kit.serving.models import load_classifier
from hw5kit.serving.registry import ModelRegistry
from hw5kit.serving.settings import FetchLimits, ServingSettings

from ..conftest import ROOT, subprocess_env

LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
APPS = ROOT / "apps"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


# ---- in-process backends -------------------------------------------------------------------
@dataclass
class LiveApp:
    url: str
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r == (method, path))


@contextlib.contextmanager
def serve_app(app) -> Iterator[LiveApp]:
    live = LiveApp("")
    inner = app.wsgi_app

    def recording(environ, start_response):
        live.requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        return inner(environ, start_response)

    app.wsgi_app = recording
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    live.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield live
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def app_v1() -> Iterator[LiveApp]:
    settings = ServingSettings(version="v1", load="sync", fetch=FetchLimits(allow_loopback=True))
    with serve_app(create_app(settings)) as live:
        yield live


@pytest.fixture(scope="session")
def app_v2() -> Iterator[LiveApp]:
    settings = ServingSettings(
        version="v2",
        models=LITE,
        default_model=LITE[0],
        load="sync",
        fetch=FetchLimits(allow_loopback=True),
    )
    with serve_app(create_app(settings)) as live:
        yield live


@pytest.fixture
def app_loading() -> Iterator[LiveApp]:
    """A real v1 backend whose model is still loading: /predict answers 503 not_ready."""
    gate = threading.Event()

    def slow_loader(name):
        gate.wait(60)
        return load_classifier(name)

    settings = ServingSettings(version="v1", load="background")
    app = create_app(settings, registry=ModelRegistry(settings.models, loader=slow_loader))
    with serve_app(app) as live:
        yield live
        gate.set()


@pytest.fixture
def closed_url() -> str:
    """A loopback URL where nothing listens (a backend that is down)."""
    return f"http://127.0.0.1:{procs.free_port()}"


# ---- Streamlit processes -------------------------------------------------------------------
@dataclass
class Frontend:
    process: procs.Process
    url: str
    netguard_log: Path

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")


def start_frontend(app: str, tmp: Path, **env: str) -> Frontend:
    tmp.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    environ = subprocess_env(tmp, **env)
    process = procs.start(
        app,
        procs.streamlit_command(APPS / app / "app.py", port=port),
        log_path=tmp / f"{app}.log",
        env=environ,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        procs.wait_http(url + procs.STREAMLIT_HEALTH, timeout=60, process=process)
    except Exception:
        process.stop()
        raise
    return Frontend(process, url, Path(environ["NETGUARD_LOG"]))


def check_frontend_stopped_clean(frontend: Frontend) -> None:
    frontend.process.stop()
    guard = frontend.netguard_log
    assert not guard.exists() or guard.read_text() == "", guard.read_text()
    assert "Traceback" not in frontend.log(), frontend.log()[-3000:]


@pytest.fixture
def frontend_factory(tmp_path) -> Iterator[Callable[..., Frontend]]:
    started: list[Frontend] = []

    def factory(app: str, **env: str) -> Frontend:
        frontend = start_frontend(app, tmp_path / f"{app}-{len(started)}", **env)
        started.append(frontend)
        return frontend

    yield factory
    for frontend in started:
        check_frontend_stopped_clean(frontend)
