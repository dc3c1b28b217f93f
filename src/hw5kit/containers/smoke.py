"""Smoke tests of built images: run them for real and check what a user would check.

Backend image, on the host network: ``/readyz`` turns 200, ``GET /hello`` answers ``Hello!``,
a real photo uploaded from the host and a photo URL on a loopback server are classified
correctly. Then again with no network at all (``--network none``): the service must start and
classify a photo sent from inside the container, which proves that start-up needs no network.
Frontend image: Streamlit's health route and page, on the host network and with no network.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .. import photos
from .engine import ContainerError, Engine
from .run import Container, run

SMOKE_PHOTO = "chelsea.png"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        return f"  [{'ok' if self.ok else 'FAILED'}] {self.name}" + (
            f": {self.detail}" if self.detail else ""
        )


@dataclass
class Smoke:
    service: str
    image: str
    checks: list[Check] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str = "") -> Check:
        check = Check(name, bool(ok), detail)
        self.checks.append(check)
        return check


def _category(body: str) -> str:
    try:
        return str(json.loads(body).get("category"))
    except (ValueError, AttributeError):
        return f"<not JSON: {body[:200]!r}>"


def _checked(smoke: Smoke, name: str, fn: Callable[[], tuple[bool, str]], log) -> bool:
    try:
        ok, detail = fn()
    except (ContainerError, requests.RequestException, OSError) as exc:
        ok, detail = False, str(exc)
    log(smoke.add(name, ok, detail).line())
    return ok


def smoke_backend(
    engine: Engine,
    service: str,
    image: str,
    *,
    photo_name: str = SMOKE_PHOTO,
    offline: bool = True,
    timeout: float = 180.0,
    log: Callable[[str], None] = print,
) -> Smoke:
    smoke = Smoke(service, image)
    pic = photos.photo(photo_name)
    data = pic.path.read_bytes()
    with tempfile.TemporaryDirectory(prefix="hw5-smoke-") as tmp:
        with (
            photos.serve_photos(Path(tmp)) as photo_base,
            run(service, image, engine=engine, env={"HW5_ALLOW_LOOPBACK": "1"}) as box,
        ):
            if _checked(smoke, "starts, /readyz 200", lambda: _ready(box, timeout), log):
                _checked(smoke, "GET /hello", lambda: _hello(box), log)
                models: list[str] = []
                _checked(smoke, "GET /models", lambda: _models(box, models), log)
                for model in models:
                    _checked(
                        smoke,
                        f"upload {photo_name} to {model}",
                        lambda m=model: _upload(box, pic, data, m),
                        log,
                    )
                _checked(
                    smoke,
                    f"URL {photo_name}",
                    lambda: _by_url(box, pic, f"{photo_base}/{photo_name}"),
                    log,
                )
        smoke.logs["host network"] = box.logs()
    if offline:
        with run(service, image, engine=engine, network="none") as box:
            if _checked(smoke, "starts with no network", lambda: _ready(box, timeout), log):
                _checked(
                    smoke,
                    f"classifies {photo_name} with no network",
                    lambda: _inside(box, pic, data),
                    log,
                )
        smoke.logs["no network"] = box.logs()
    return smoke


def smoke_frontend(
    engine: Engine,
    service: str,
    image: str,
    *,
    env: Mapping[str, str] | None = None,
    offline: bool = True,
    timeout: float = 180.0,
    log: Callable[[str], None] = print,
) -> Smoke:
    smoke = Smoke(service, image)
    with run(service, image, engine=engine, env=env) as box:
        if _checked(smoke, "starts, Streamlit health 200", lambda: _ready(box, timeout), log):
            _checked(smoke, "serves the page", lambda: _page(box), log)
    smoke.logs["host network"] = box.logs()
    if offline:
        with run(service, image, engine=engine, network="none", env=env) as box:
            _checked(smoke, "starts with no network", lambda: _ready(box, timeout), log)
        smoke.logs["no network"] = box.logs()
    return smoke


def _ready(box: Container, timeout: float) -> tuple[bool, str]:
    seconds = box.wait_ready(timeout=timeout)
    return True, f"{seconds:.1f} s"


def _hello(box: Container) -> tuple[bool, str]:
    answer = requests.get(f"{box.url}/hello", timeout=10)
    return answer.status_code == 200 and answer.text == "Hello!", repr(answer.text[:80])


def _models(box: Container, into: list[str]) -> tuple[bool, str]:
    """The models the backend serves (``GET /models``: one for v1, several for v2)."""
    answer = requests.get(f"{box.url}/models", timeout=10)
    names = answer.json() if answer.status_code == 200 else []
    into.extend(n for n in names if isinstance(n, str))
    return bool(into), ", ".join(into) or f"{answer.status_code} {answer.text[:200]}"


def _upload(box: Container, pic: photos.Photo, data: bytes, model: str) -> tuple[bool, str]:
    answer = requests.post(
        f"{box.url}/predict", files={"file": (pic.name, data)}, data={"model": model}, timeout=60
    )
    category = _category(answer.text)
    ok = answer.status_code == 200 and pic.matches(category) and _model(answer.text) == model
    return ok, f"{answer.status_code} {category}"


def _model(body: str) -> str | None:
    try:
        return json.loads(body).get("model")
    except (ValueError, AttributeError):
        return None


def _by_url(box: Container, pic: photos.Photo, url: str) -> tuple[bool, str]:
    answer = requests.post(f"{box.url}/predict", json={"url": url}, timeout=60)
    category = _category(answer.text)
    return answer.status_code == 200 and pic.matches(category), f"{answer.status_code} {category}"


def _inside(box: Container, pic: photos.Photo, data: bytes) -> tuple[bool, str]:
    status, body = box.request("POST", "/predict", data)
    category = _category(body)
    return status == 200 and pic.matches(category), f"{status} {category}"


def _page(box: Container) -> tuple[bool, str]:
    answer = requests.get(f"{box.url}/", timeout=10)
    ok = answer.status_code == 200 and "<title>Streamlit</title>" in answer.text
    return ok, f"{answer.status_code}, {len(answer.text)} bytes"
