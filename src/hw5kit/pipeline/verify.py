"""``verify``: is what the deliverables file says really deployed and working?

1. The file: read, then checked against ``deliverables.schema.json``; any problem stops here
   with one line per entry saying what is wrong and what to do.
2. Live checks on every listed URL: a backend answers ``/hello`` with ``Hello!`` and classifies
   a real photo (by URL from a loopback photo server when the backend is on this machine, by
   upload otherwise) with each of its models; a frontend answers its health check and serves
   its page.
3. Where the deployment came from: each target's own checks (``Target.check_service``):
   * gcp, with gcloud on PATH: every build ID exists, succeeded and pushed the service's image;
     every Cloud Run service runs ``<repository>/<image>:<build id>`` on the configured port,
     answers at the recorded URL, is public (its IAM policy lets allUsers invoke it, or its
     Invoker IAM check is off: ``--allow-unauthenticated`` only warns when an organization
     policy refuses it), and frontends have ``SERVING_URL`` = their backend's URL. A 403 from a
     Cloud Run URL gets the same remedy (``--no-invoker-iam-check``).
   * local: every build ID is a recorded local build, each running process was started from
     that build, and each frontend process has ``SERVING_URL`` = its backend's URL.
   * container: every build ID names a recorded image build and the image still has that ID;
     each service's container runs that image; a photo is classified from inside the backend's
     container; a frontend's container has ``SERVING_URL`` = its backend's URL and reaches it
     from inside; and start-up made no network call: the container has no network interface
     but loopback (``--network none``, the published port is relayed), or, on the host network,
     the same image started again with no network becomes ready and classifies.

4. v3 (when configured): the API gateway lists every model (``GET /models``) and classifies
   the photo with each model through ``POST /model/<name>/predict``; with ``gateway.api_key``
   on, a request without a key is refused (401) and one with the key
   (``.hw5/<target>/gateway.key`` on the local and container targets; on gcp
   ``$API_GATEWAY_KEY``, else ``.hw5/gcp/gateway.key``) passes; the v3 frontend's
   ``API_GATEWAY`` is the gateway's URL (on the container target, its container also lists the
   models through it from inside).

Partial deployments: a service whose entry is empty is reported "not deployed" (or "built, not
deployed" when only its build ID is there) instead of failing the schema check, and its live
checks are skipped; ``--only`` limits the checks to some services.

Exit status: 0 every (selected) service is deployed and passes; 1 a check failed (or the file
is unreadable, off-schema, or holds nothing at all); 3 everything deployed passes but some
selected services are not deployed (a partial deployment: use ``--only`` to check just those).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from .. import photos
from . import deliverables, targets
from .deployment import Service
from .project import Project
from .report import Check, Report

__all__ = ["DEFAULT_PHOTO", "PARTIAL", "Check", "Verifier", "is_loopback"]

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DEFAULT_PHOTO = "coffee.png"
PARTIAL = 3  # exit status: what is deployed passes, but not everything is deployed


def is_loopback(url: str) -> bool:
    return (urlparse(url).hostname or "") in LOOPBACK_HOSTS


class Verifier:
    def __init__(
        self,
        project: Project,
        *,
        deliverables_path: Path | None = None,
        http: bool = True,
        gcloud: bool = True,
        photo: str = DEFAULT_PHOTO,
        timeout: float = 60.0,
        only: list[str] | None = None,
    ):
        self.project = project
        self.config = project.config
        self.target = targets.get(project)
        self.path = deliverables_path or project.deliverables_path
        self.http = http
        self.gcloud = gcloud
        self.photo = photos.photo(photo)
        self.timeout = timeout
        self.report = Report()
        self.photo_base: str | None = None
        self.selected = self.config.select(only)
        self.not_deployed: dict[str, str] = {}  # service -> "not deployed" | "built, not ..."

    # -- entry point -- #
    def run(self) -> int:
        log = self.project.log
        target = self.target.name
        log(f"verify: {self.path.name} on the {target} target")
        try:
            data = deliverables.read(self.path)
        except deliverables.DeliverablesError as exc:
            log(f"  FAIL {exc}")
            return 1
        problems = deliverables.problems(data, target)
        recorded = any(
            deliverables.entry(data, *s.deliverable_key).get(field)
            for s in self.config.services
            for field in ("build_id", "service_url")
        )
        if problems and all(p.kind == "empty" for p in problems) and not recorded:
            log(
                f"  FAIL {self.path.name} holds no build ID and no URL yet: nothing was "
                f"built or deployed on the {target} target"
            )
        else:
            problems = self._set_aside_undeployed(data, problems)
        if problems:
            for p in problems:
                log(f"  FAIL {p.where}: {p.message}\n         -> {p.fix}")
            log(f"verify: {self.path.name} does not pass its schema ({len(problems)} problem(s))")
            return 1
        missing = [s for s in self.selected if s.name in self.not_deployed]
        self.report.add(
            self.path.name,
            "schema",
            True,
            "passes deliverables.schema.json"
            + (f" (with {len(missing)} service(s) not deployed)" if missing else ""),
        )
        with self._photo_server():
            for s in self.selected:
                if s.name not in self.not_deployed:
                    self._service_checks(s, data)
            deployed_v3 = [
                s for s in self.selected if s.version == "v3" and s.name not in self.not_deployed
            ]
            if self.config.v3_backends() and deployed_v3:
                self._gateway_checks(data)
        for check in self.report.checks:
            log(check.line())
        for s in missing:
            log(f"  --   {Report.where(s)}: {self.not_deployed[s.name]}")
        skipped = [s.name for s in self.config.services if s not in self.selected]
        if skipped:
            log(f"  --   not checked (--only): {', '.join(skipped)}")
        for note in self.report.notes:
            log(f"  note: {note}")
        checks, failed = self.report.checks, self.report.failed
        if failed:
            log(f"verify: {len(failed)} of {len(checks)} checks failed")
            return 1
        if missing:
            names = ",".join(s.name for s in self.selected if s not in missing)
            log(
                f"verify: all {len(checks)} checks passed, but {len(missing)} service(s) "
                f"are not deployed ({', '.join(s.name for s in missing)}): a partial "
                f"deployment (exit {PARTIAL}); deploy them, or check only what is deployed "
                f"with `{self.target.command('verify', '--only', names)}`"
            )
            return PARTIAL
        log(f"verify: all {len(checks)} checks passed")
        return 0

    def _set_aside_undeployed(self, data: Any, problems: list) -> list:
        """Drop the "empty" problems of services that are simply not deployed (nothing, or only
        a build ID, recorded); note them in ``not_deployed``. Returns the other problems."""
        rest = list(problems)
        for s in self.config.services:
            prefix = f"services.{'.'.join(s.deliverable_key)}."
            mine = [p for p in rest if p.where.startswith(prefix)]
            entry = deliverables.entry(data, *s.deliverable_key)
            absent_v3 = s.version == "v3" and not mine and not entry  # the optional block
            if not absent_v3 and (not mine or any(p.kind != "empty" for p in mine)):
                continue
            if entry.get("service_url"):
                continue  # a URL without a build ID: the file is incomplete, not partial
            self.not_deployed[s.name] = (
                "built, not deployed (no service_url)" if entry.get("build_id") else "not deployed"
            )
            rest = [p for p in rest if p not in mine]
        v3 = [s for s in self.config.services if s.version == "v3"]
        if v3 and all(s.name in self.not_deployed for s in v3):
            # nothing of v3 is deployed: its empty gateway URL is part of that
            rest = [
                p for p in rest if not (p.where.startswith("services.v3.") and p.kind == "empty")
            ]
        return rest

    @contextlib.contextmanager
    def _photo_server(self) -> Iterator[None]:
        if not self.http:
            yield
            return
        with tempfile.TemporaryDirectory(prefix="hw5-verify-photos-") as tmp:
            workdir = Path(tmp)
            (workdir / self.photo.name).write_bytes(self.photo.path.read_bytes())
            with photos.serve_directory(workdir) as base:
                self.photo_base = base
                try:
                    yield
                finally:
                    self.photo_base = None

    @property
    def checks(self) -> list[Check]:
        return self.report.checks

    def _add(self, where: str, what: str, ok: bool, detail: str, fix: str = "") -> bool:
        return self.report.add(where, what, ok, detail, fix)

    def _service_checks(self, s: Service, data: Any) -> None:
        entry = deliverables.entry(data, *s.deliverable_key)
        if not entry.get("service_url"):
            name = s.group or s.name
            self._add(
                Report.where(s),
                "recorded",
                False,
                f"not in {self.path.name}",
                f"run `{self.target.command('build', name)}` and "
                f"`{self.target.command('deploy', name)}`",
            )
            return
        url = str(entry["service_url"]).rstrip("/")
        if self.http:
            if s.kind == "backend":
                self.backend_http(s, url)
            else:
                self.frontend_http(s, url)
        if self.gcloud or not self.target.uses_gcloud:  # where it came from: the target knows
            self.target.check_service(s, entry, data, self.report, self.photo)

    # -- HTTP -- #
    def _fix(self, s: Service, status: int | None = None) -> str:
        """What to do about a failed request: a refusal (403) the target explains (on Cloud Run:
        the service is not public, the remedy deploy stops with), else the service's logs and a
        redeploy."""
        return (status == 403 and self.target.refusal_fix(s)) or self.target.redeploy_fix(s)

    def backend_http(self, s: Service, url: str) -> None:
        where = Report.where(s)
        status = None
        try:
            r = requests.get(f"{url}/hello", timeout=15)
            status = r.status_code
            ok = r.status_code == 200 and r.text.strip() == "Hello!"
            detail = f"{r.status_code} {r.text.strip()[:60]!r}"
        except requests.RequestException as exc:
            ok, detail = False, f"no answer ({type(exc).__name__}: {exc})"
        if not self._add(where, f"GET {url}/hello", ok, detail, self._fix(s, status)):
            return
        for model in s.models() or [None]:
            # only backends the target lets fetch from loopback get the photo by URL
            if self.photo_base and is_loopback(url) and self.target.fetches_loopback:
                self._predict(s, url, model, by_url=True)
            self._predict(s, url, model, by_url=False)

    def _predict(self, s: Service, url: str, model: str | None, *, by_url: bool) -> None:
        how = "by URL" if by_url else "by upload"
        what = f"POST /predict {self.photo.name} {how}" + (f", model {model}" if model else "")
        try:
            if by_url:
                body = {"url": f"{self.photo_base}/{self.photo.name}"}
                if model:
                    body["model"] = model
                r = requests.post(f"{url}/predict", json=body, timeout=self.timeout)
            else:
                with self.photo.path.open("rb") as fh:
                    r = requests.post(
                        f"{url}/predict",
                        files={"file": (self.photo.name, fh)},
                        data={"model": model} if model else {},
                        timeout=self.timeout,
                    )
            answer = (
                r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            )
        except (requests.RequestException, ValueError) as exc:
            self._add(Report.where(s), what, False, f"no answer ({exc})", self._fix(s))
            return
        category = answer.get("category")
        if r.status_code != 200 or not category:
            message = (answer.get("error") or {}).get("message") or r.text[:200]
            self._add(
                Report.where(s),
                what,
                False,
                f"{r.status_code}: {message}",
                self._fix(s, r.status_code),
            )
            return
        ok = self.photo.matches(category) and (model is None or answer.get("model") == model)
        expected = " or ".join(sorted(self.photo.expected))
        detail = f"{category!r} by {answer.get('model')}"
        fix = (
            f"expected {expected}: the backend loads wrong or untrained weights; check "
            "TORCH_HOME and the model's preprocessing"
        )
        self._add(
            Report.where(s), what, ok, detail if ok else f"{detail}, expected {expected}", fix
        )

    # -- v3: the API gateway -- #
    def gateway_key(self) -> str | None:
        """The key the gateway wants, found where the target's deploy put it."""
        gateway = self.config.gateway
        if gateway is None or not gateway.api_key:
            return None
        return self.target.gateway_key()

    def _gateway_checks(self, data: Any) -> None:
        where = "services.v3.gateway_url (API gateway)"
        url = deliverables.gateway_url(data)
        deploy = self.target.command("deploy")
        if not url:
            self._add(where, "recorded", False, f"not in {self.path.name}", f"run `{deploy}`")
            return
        if not self.http:
            return
        url = url.rstrip("/")
        key = self.gateway_key()
        headers = {"x-api-key": key} if key else {}
        fix = f"read the gateway's log, then `{deploy}`"
        if self.config.gateway and self.config.gateway.api_key:
            if key is None:
                self.report.note(
                    "the gateway requires an API key: set API_GATEWAY_KEY to check it end to end"
                )
                return
            try:
                r = requests.get(f"{url}/models", timeout=15)
                self._add(
                    where,
                    "GET /models without an API key",
                    r.status_code in (401, 403),
                    f"{r.status_code} (refused as expected)"
                    if r.status_code in (401, 403)
                    else f"{r.status_code}: answered without a key",
                    "the gateway must require a key (gateway.api_key): redeploy it",
                )
            except requests.RequestException as exc:
                self._add(where, "GET /models without an API key", False, str(exc), fix)
        try:
            r = requests.get(f"{url}/models", headers=headers, timeout=15)
            listed = r.json() if r.status_code == 200 else None
        except (requests.RequestException, ValueError) as exc:
            self._add(where, f"GET {url}/models", False, f"no answer ({exc})", fix)
            return
        expected = [str(b.model) for b in self.config.v3_backends()]
        self._add(
            where,
            f"GET {url}/models",
            listed == expected,
            f"{r.status_code} {listed if listed is not None else r.text[:100]}",
            f"expected {expected}: check MODELS of the v3 backends",
        )
        for model in expected:
            # by URL only where the backends may fetch from loopback
            by_url = self.photo_base and is_loopback(url) and self.target.fetches_loopback
            ways = [True, False] if by_url else [False]
            for by_url in ways:
                self._gateway_predict(where, url, model, headers, by_url=by_url)

    def _gateway_predict(self, where, url, model, headers, *, by_url: bool) -> None:
        what = (
            f"POST /model/{model}/predict {self.photo.name} {'by URL' if by_url else 'by upload'}"
        )
        target = f"{url}/model/{model}/predict"
        try:
            if by_url:
                r = requests.post(
                    target,
                    json={"url": f"{self.photo_base}/{self.photo.name}"},
                    headers=headers,
                    timeout=self.timeout,
                )
            else:
                with self.photo.path.open("rb") as fh:
                    r = requests.post(
                        target,
                        files={"file": (self.photo.name, fh)},
                        headers=headers,
                        timeout=self.timeout,
                    )
            answer = r.json()
        except (requests.RequestException, ValueError) as exc:
            self._add(where, what, False, f"no answer ({exc})", "check the gateway's log")
            return
        category = answer.get("category") if isinstance(answer, dict) else None
        ok = r.status_code == 200 and bool(category) and self.photo.matches(category)
        ok = ok and answer.get("model") == model
        detail = (
            f"{category!r} by {answer.get('model')}"
            if category
            else f"{r.status_code}: {(answer.get('error') or {}).get('message', r.text[:200])}"
        )
        fix = (
            f"expected {' or '.join(sorted(self.photo.expected))} from {model}: check the "
            "model's backend and the gateway's routes"
        )
        backend = next((b for b in self.config.v3_backends() if b.model == model), None)
        refusal = self.target.refusal_fix(backend) if r.status_code == 403 and backend else None
        if refusal:
            fix = f"the gateway or {backend.cloud_run_name} refused it: {refusal}"
        self._add(where, what, ok, detail, fix)

    def frontend_http(self, s: Service, url: str) -> None:
        where = Report.where(s)
        status = None
        try:
            r = requests.get(f"{url}/_stcore/health", timeout=15)
            status = r.status_code
            ok = r.status_code == 200 and r.text.strip() == "ok"
            detail = f"{r.status_code} {r.text.strip()[:40]!r}"
        except requests.RequestException as exc:
            ok, detail = False, f"no answer ({type(exc).__name__})"
        self._add(where, f"GET {url}/_stcore/health", ok, detail, self._fix(s, status))
        if not ok:
            return
        try:
            r = requests.get(f"{url}/", timeout=15)
            ok = r.status_code == 200 and "<title>" in r.text and "streamlit" in r.text.lower()
            detail = f"{r.status_code}, {len(r.text)} bytes of Streamlit page"
        except requests.RequestException as exc:
            ok, detail = False, f"no answer ({type(exc).__name__})"
        self._add(where, f"GET {url}/", ok, detail, self.target.redeploy_fix(s))
