"""``--live``: is what deliverables.yaml records really there?

* builds: ``gcloud builds describe ID --project=hw5-<id> --region=us-central1`` (the gcloud on
  the grader's PATH, with the grader's credentials): the build exists, succeeded and pushed
  ``<registry>/<app>:<build id>``. Without gcloud this part is skipped and said so.
* backends: ``GET /hello`` answers, then a labelled photo (``hw5kit.photos``) is classified: by
  upload (multipart ``file``) first; a backend that only takes ``{"url": ...}`` (the course's)
  is sent the photo's URL when it runs on this machine (a loopback photo server), otherwise the
  grader says it could not check classification (it cannot serve a photo on a public URL) and
  leaves it to a person, without failing the item.
* frontends: the page answers with Streamlit's HTML.

Only the URLs in deliverables.yaml that pass its schema (``https://*.run.app``) are contacted.
``--url-map FROM=TO`` sends the requests for FROM to TO instead (the tests point recorded Cloud
Run URLs at services on 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import requests

from .. import photos
from .context import SLOTS, Context

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TIMEOUT = 30
MAX_BODY = 2 * 2**20


@dataclass
class LiveResults:
    builds: dict[str, tuple[bool | None, str]] = field(default_factory=dict)
    services: dict[str, tuple[bool | None, list[str]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def mapped(url: str, url_map: dict[str, str]) -> str:
    for source, target in url_map.items():
        if url.rstrip("/") == source.rstrip("/"):
            return target.rstrip("/")
    return url.rstrip("/")


def _fetch(method: str, url: str, **kwargs) -> requests.Response:
    """One request to a URL the submission named: no redirect followed (a service could send
    the grader anywhere, its cloud's metadata server included), at most ``MAX_BODY`` bytes
    read, and a total time bound (``TIMEOUT`` applies to each socket read, which a service
    dripping bytes would otherwise stretch without end)."""
    deadline = time.monotonic() + 2 * TIMEOUT
    response = requests.request(
        method, url, timeout=TIMEOUT, stream=True, allow_redirects=False, **kwargs
    )
    body = bytearray()
    try:
        for chunk in response.raw.stream(2**16, decode_content=False):
            body += chunk
            if len(body) >= MAX_BODY or time.monotonic() > deadline:
                break
    finally:
        response.close()
    response._content = bytes(body[:MAX_BODY])
    return response


def _get(url: str) -> requests.Response:
    return _fetch("GET", url)


def describe_build(ctx: Context, app: str, build_id: str, gcloud: str) -> tuple[bool, str]:
    cmd = [
        gcloud,
        "builds",
        "describe",
        build_id,
        f"--project={ctx.project}",
        f"--region={ctx.assignment['region']}",
        "--format=json",
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"gcloud builds describe failed: {exc}"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        errors = [line for line in lines if line.startswith("ERROR")]
        return False, f"not found in {ctx.project}: {(errors or lines or ['?'])[0]}"
    try:
        build = json.loads(done.stdout)
    except ValueError:
        return False, "gcloud builds describe printed something that is not JSON"
    status = build.get("status")
    image = f"{ctx.registry}/{app}:{build_id}"
    pushed = [i.get("name") for i in (build.get("results") or {}).get("images", [])]
    if status != "SUCCESS":
        return False, f"the build's status is {status}"
    if image not in pushed:
        return False, f"the build did not push {image} (it pushed {', '.join(pushed) or 'nothing'})"
    return True, f"exists, SUCCESS, pushed {image}"


def check_backend(
    url: str, photo: photos.Photo, photo_base: str | None
) -> tuple[bool | None, list[str]]:
    lines = []
    try:
        r = _get(f"{url}/hello")
    except requests.RequestException as exc:
        return False, [f"GET {url}/hello: no answer ({type(exc).__name__})"]
    text = r.text.strip()
    if r.status_code != 200 or "hello" not in text.lower():
        return False, [f"GET {url}/hello: {r.status_code} {text[:80]!r} (expected 200 Hello!)"]
    lines.append(f"GET {url}/hello: 200 {text[:40]!r}")
    expected = " or ".join(sorted(photo.expected))
    answer, how, error = None, "", ""
    try:
        with photo.path.open("rb") as fh:
            r = _fetch("POST", f"{url}/predict", files={"file": (photo.name, fh)})
        answer, how = _category(r), "by upload"
        if answer is None:
            error = f"upload: {r.status_code} {r.text.strip()[:120]!r}"
    except requests.RequestException as exc:
        error = f"upload: no answer ({type(exc).__name__})"
    if answer is None and photo_base and (urlparse(url).hostname or "") in LOOPBACK:
        try:
            r = _fetch("POST", f"{url}/predict", json={"url": f"{photo_base}/{photo.name}"})
            answer, how = _category(r), "by URL"
            if answer is None:
                error += f"; by URL: {r.status_code} {r.text.strip()[:120]!r}"
        except requests.RequestException as exc:
            error += f"; by URL: no answer ({type(exc).__name__})"
    if answer is None:
        return None, [
            *lines,
            f"POST {url}/predict: the backend did not classify an uploaded photo ({error}). It "
            'may accept only image URLs ({"url": ...}), and the grader cannot serve a photo on '
            "a public URL: classification NOT checked; check it through the frontend by hand",
        ]
    ok = photo.matches(answer)
    lines.append(
        f"POST {url}/predict {photo.name} {how}: {answer!r}"
        + ("" if ok else f", expected {expected}")
    )
    return ok, lines


def _category(r: requests.Response) -> str | None:
    if r.status_code != 200:
        return None
    try:
        data = r.json()
    except ValueError:
        return None
    if isinstance(data, dict):
        for key in ("category", "label", "prediction", "class"):
            if isinstance(data.get(key), str):
                return data[key]
    return None


def check_frontend(url: str) -> tuple[bool, list[str]]:
    try:
        r = _get(f"{url}/")
    except requests.RequestException as exc:
        return False, [f"GET {url}/: no answer ({type(exc).__name__})"]
    page = r.text.lower()
    ok = r.status_code == 200 and "<html" in page and "streamlit" in page
    detail = f"GET {url}/: {r.status_code}, {len(r.content)} bytes"
    return ok, [detail + (", a Streamlit page" if ok else ", not a Streamlit page")]


def run(ctx: Context) -> LiveResults:
    results = LiveResults()
    gcloud = shutil.which("gcloud")
    for app in SLOTS:
        build_id = ctx.build_id(app)
        if not build_id:
            continue
        if gcloud is None or not ctx.project:
            results.builds[app] = (None, "not checked: gcloud is not on PATH")
            continue
        results.builds[app] = describe_build(ctx, app, build_id, gcloud)
    photo = photos.photo(ctx.options.photo)
    with tempfile.TemporaryDirectory(prefix="hw5-grade-photos-") as tmp:
        (Path(tmp) / photo.name).write_bytes(photo.path.read_bytes())
        with photos.serve_directory(Path(tmp)) as base:
            for app in SLOTS:
                url = ctx.service_url(app)
                if not url:
                    continue
                target = mapped(url, ctx.options.url_map)
                with contextlib.suppress(Exception):
                    if app.startswith("backend"):
                        results.services[app] = check_backend(target, photo, base)
                    else:
                        results.services[app] = check_frontend(target)
                if app not in results.services:
                    results.services[app] = (False, [f"{target}: the live check failed"])
                if target != url.rstrip("/"):
                    ok, lines = results.services[app]
                    results.services[app] = (ok, [f"({url} checked at {target})", *lines])
    return results
