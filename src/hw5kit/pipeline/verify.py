"""``verify``: is what the deliverables file says really deployed and working?

1. The file: read, then checked against ``deliverables.schema.json``; any problem stops here
   with one line per entry saying what is wrong and what to do.
2. Live checks on every listed URL: a backend answers ``/hello`` with ``Hello!`` and classifies
   a real photo (by URL from a loopback photo server when the backend is on this machine, by
   upload otherwise) with each of its models; a frontend answers its health check and serves
   its page.
3. Where the deployment came from:
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
import json
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from .. import naming, photos
from . import deliverables
from .deployment import Service
from .project import Project

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DEFAULT_PHOTO = "coffee.png"
PARTIAL = 3  # exit status: what is deployed passes, but not everything is deployed


@dataclass
class Check:
    where: str  # e.g. "services.v1.back_end (backend_v1)"
    what: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        text = f"  {mark} {self.where}: {self.what}: {self.detail}"
        if not self.ok and self.fix:
            text += f"\n         -> {self.fix}"
        return text


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
        self.target = project.target
        self.path = deliverables_path or project.deliverables_path
        self.http = http
        self.gcloud = gcloud
        self.photo = photos.photo(photo)
        self.timeout = timeout
        self.checks: list[Check] = []
        self.notes: list[str] = []
        self.photo_base: str | None = None
        self.selected = self.config.select(only)
        self.not_deployed: dict[str, str] = {}  # service -> "not deployed" | "built, not ..."

    # -- entry point -- #
    def run(self) -> int:
        log = self.project.log
        log(f"verify: {self.path.name} on the {self.target} target")
        try:
            data = deliverables.read(self.path)
        except deliverables.DeliverablesError as exc:
            log(f"  FAIL {exc}")
            return 1
        problems = deliverables.problems(data, self.target)
        recorded = any(
            deliverables.entry(data, *s.deliverable_key).get(field)
            for s in self.config.services
            for field in ("build_id", "service_url")
        )
        if problems and all(p.kind == "empty" for p in problems) and not recorded:
            log(
                f"  FAIL {self.path.name} holds no build ID and no URL yet: nothing was "
                f"built or deployed on the {self.target} target"
            )
        else:
            problems = self._set_aside_undeployed(data, problems)
        if problems:
            for p in problems:
                log(f"  FAIL {p.where}: {p.message}\n         -> {p.fix}")
            log(f"verify: {self.path.name} does not pass its schema ({len(problems)} problem(s))")
            return 1
        missing = [s for s in self.selected if s.name in self.not_deployed]
        self._add(
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
        for check in self.checks:
            log(check.line())
        for s in missing:
            log(f"  --   {self._where(s)}: {self.not_deployed[s.name]}")
        skipped = [s.name for s in self.config.services if s not in self.selected]
        if skipped:
            log(f"  --   not checked (--only): {', '.join(skipped)}")
        for note in self.notes:
            log(f"  note: {note}")
        failed = [c for c in self.checks if not c.ok]
        if failed:
            log(f"verify: {len(failed)} of {len(self.checks)} checks failed")
            return 1
        if missing:
            flag = "" if self.target == "local" else f" --target {self.target}"
            names = ",".join(s.name for s in self.selected if s not in missing)
            log(
                f"verify: all {len(self.checks)} checks passed, but {len(missing)} service(s) "
                f"are not deployed ({', '.join(s.name for s in missing)}): a partial "
                f"deployment (exit {PARTIAL}); deploy them, or check only what is deployed "
                f"with `nox -s verify --{flag} --only {names}`"
            )
            return PARTIAL
        log(f"verify: all {len(self.checks)} checks passed")
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

    def _add(self, where: str, what: str, ok: bool, detail: str, fix: str = "") -> bool:
        self.checks.append(Check(where, what, ok, detail, fix))
        return ok

    def _where(self, s: Service) -> str:
        return f"services.{'.'.join(s.deliverable_key)} ({s.name})"

    def _service_checks(self, s: Service, data: Any) -> None:
        entry = deliverables.entry(data, *s.deliverable_key)
        flag = "" if self.target == "local" else f" -- --target {self.target}"
        if not entry.get("service_url"):
            self._add(
                self._where(s),
                "recorded",
                False,
                f"not in {self.path.name}",
                f"run `nox -s build{flag} {s.group or s.name}` and `nox -s deploy{flag} "
                f"{s.group or s.name}`",
            )
            return
        url = str(entry["service_url"]).rstrip("/")
        if self.http:
            if s.kind == "backend":
                self._backend_http(s, url)
            else:
                self._frontend_http(s, url)
        if self.target == "gcp" and self.gcloud:
            self._gcp_checks(s, entry, data)
        if self.target == "local":
            self._local_checks(s, entry, data)
        if self.target == "container":
            from .verify_container import container_checks

            container_checks(self, s, entry, data)

    # -- HTTP -- #
    def _redeploy_fix(self, s: Service) -> str:
        flag = "" if self.target == "local" else f" -- --target {self.target}"
        if self.target == "gcp":
            return (
                f"check the service's logs (gcloud run services logs read "
                f"{s.cloud_run_name} --region={self.config.region}), then `nox -s deploy{flag}`"
            )
        return f"read {self.project.logs_dir / (s.name + '.log')}, then `nox -s deploy{flag}`"

    def _fix(self, s: Service, status: int | None = None) -> str:
        """What to do about a failed request: a 403 from Cloud Run means the service is not
        public (an organization policy refused --allow-unauthenticated), the same remedy deploy
        stops with; anything else, the service's logs and a redeploy."""
        if status == 403 and self.target == "gcp":
            from .gcloud import public_access_fix

            return public_access_fix(s.cloud_run_name, self.config.region, self.config.project_id)
        return self._redeploy_fix(s)

    def _backend_http(self, s: Service, url: str) -> None:
        where = self._where(s)
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
            # only the local target's backends may fetch from loopback (HW5_ALLOW_LOOPBACK)
            if self.photo_base and is_loopback(url) and self.target == "local":
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
            self._add(self._where(s), what, False, f"no answer ({exc})", self._redeploy_fix(s))
            return
        category = answer.get("category")
        if r.status_code != 200 or not category:
            message = (answer.get("error") or {}).get("message") or r.text[:200]
            self._add(
                self._where(s),
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
        self._add(self._where(s), what, ok, detail if ok else f"{detail}, expected {expected}", fix)

    # -- v3: the API gateway -- #
    def gateway_key(self) -> str | None:
        gateway = self.config.gateway
        if gateway is None or not gateway.api_key:
            return None
        if self.target in ("local", "container"):  # the gateway process's own key file
            import threading

            from .targets.common import HostGateway

            return HostGateway(self.project, threading.Lock()).key()
        if self.target == "gcp":  # $API_GATEWAY_KEY, else .hw5/gcp/gateway.key, as deploy
            from .targets.gcp import GcpTarget

            return GcpTarget(self.project).gateway_key()
        return self.project.env.get("API_GATEWAY_KEY") or None

    def _gateway_checks(self, data: Any) -> None:
        where = "services.v3.gateway_url (API gateway)"
        url = deliverables.gateway_url(data)
        flag = "" if self.target == "local" else f" -- --target {self.target}"
        if not url:
            self._add(
                where, "recorded", False, f"not in {self.path.name}", f"run `nox -s deploy{flag}`"
            )
            return
        if not self.http:
            return
        url = url.rstrip("/")
        key = self.gateway_key()
        headers = {"x-api-key": key} if key else {}
        fix = f"read the gateway's log, then `nox -s deploy{flag}`"
        if self.config.gateway and self.config.gateway.api_key:
            if key is None:
                self.notes.append(
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
            # by URL only where the backends may fetch from loopback (the local target's)
            by_url = self.photo_base and is_loopback(url) and self.target == "local"
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
        if r.status_code == 403 and self.target == "gcp":
            backend = next((b for b in self.config.v3_backends() if b.model == model), None)
            if backend is not None:
                fix = f"the gateway or {backend.cloud_run_name} refused it: " + self._fix(
                    backend, 403
                )
        self._add(where, what, ok, detail, fix)

    def _frontend_http(self, s: Service, url: str) -> None:
        where = self._where(s)
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
        self._add(where, f"GET {url}/", ok, detail, self._redeploy_fix(s))

    # -- gcp: Cloud Build and Cloud Run -- #
    def _gcloud_json(self, *args: str) -> tuple[dict | None, str]:
        cmd = ["gcloud", *args, f"--project={self.config.project_id}", "--format=json"]
        try:
            done = subprocess.run(
                cmd,
                env=dict(self.project.env),
                capture_output=True,
                text=True,
                timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, str(exc)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            errors = [line for line in lines if line.startswith("ERROR")]
            return None, (errors or lines or [f"exit {done.returncode}"])[0]
        try:
            return json.loads(done.stdout), ""
        except ValueError:
            return None, "gcloud printed something that is not JSON"

    def _gcp_checks(self, s: Service, entry: dict, data: Any) -> None:
        if self.project.which("gcloud") is None:
            note = "gcloud is not on PATH: the Cloud Build and Cloud Run checks were skipped"
            if note not in self.notes:
                self.notes.append(note)
            return
        where = self._where(s)
        build_id = str(entry["build_id"])
        image = self.config.image_uri(s, build_id)
        build, error = self._gcloud_json(
            "builds", "describe", build_id, f"--region={self.config.region}"
        )
        if build is None:
            self._add(
                where,
                f"build {build_id}",
                False,
                f"not found in {self.config.project_id} ({self.config.region}): {error}",
                "paste the ID of the build that made this service's image (gcloud builds list "
                f"--region={self.config.region}), or run `nox -s build -- --target gcp`",
            )
        else:
            status = build.get("status")
            pushed = [i.get("name") for i in (build.get("results") or {}).get("images", [])]
            ok = status == "SUCCESS" and image in pushed
            detail = f"status {status}" + ("" if image in pushed else f"; did not push {image}")
            self._add(
                where,
                f"build {build_id}",
                ok,
                detail + (f", pushed {image}" if ok else ""),
                f"this build did not make {s.image}: record the build of {s.image} "
                "(nox -s build -- --target gcp)",
            )
        service, error = self._gcloud_json(
            "run", "services", "describe", s.cloud_run_name, f"--region={self.config.region}"
        )
        if service is None:
            self._add(
                where,
                f"Cloud Run service {s.cloud_run_name}",
                False,
                error,
                "run `nox -s deploy -- --target gcp`",
            )
            return
        container = (((service.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
            "containers"
        ) or [{}]
        running = container[0].get("image")
        self._add(
            where,
            f"Cloud Run service {s.cloud_run_name} image",
            running == image,
            f"runs {running}",
            f"deliverables say build {build_id}, so it should run {image}: redeploy "
            "(nox -s deploy -- --target gcp) or record the build it runs",
        )
        url = ((service.get("status") or {}).get("url") or "").rstrip("/")
        recorded = str(entry["service_url"]).rstrip("/")
        self._add(
            where,
            "service URL",
            url == recorded,
            f"Cloud Run answers at {url}" + ("" if url == recorded else f", recorded {recorded}"),
            "record the URL gcloud run services describe prints (nox -s deploy -- --target gcp)",
        )
        # --allow-unauthenticated only warns when an organization policy refuses allUsers:
        # the service must let anyone invoke it (allUsers, or its Invoker IAM check off)
        from .gcloud import INVOKER_IAM_DISABLED, is_public, public_access_fix

        policy, error = self._gcloud_json(
            "run", "services", "get-iam-policy", s.cloud_run_name, f"--region={self.config.region}"
        )
        annotations = (service.get("metadata") or {}).get("annotations") or {}
        public = policy is not None and is_public(policy, service)
        how = (
            "its Invoker IAM check is off"
            if str(annotations.get(INVOKER_IAM_DISABLED, "")).lower() == "true"
            else "allUsers may invoke it"
        )
        self._add(
            where,
            "public access",
            public,
            how if public else (error or "allUsers may not invoke it (IAM policy)"),
            public_access_fix(s.cloud_run_name, self.config.region, self.config.project_id),
        )
        port = ((container[0].get("ports") or [{}])[0]).get("containerPort")
        self._add(
            where,
            "port",
            port == self.config.serving_port,
            f"container port {port}",
            f"deploy with --port={self.config.serving_port}",
        )
        if s.kind == "frontend":
            env = {e.get("name"): e.get("value") for e in container[0].get("env") or []}
            self._frontend_wiring(where, s, env, data)

    def _frontend_wiring(self, where: str, s: Service, env: dict, data: Any) -> None:
        if s.version == "v3":
            expected = deliverables.gateway_url(data) or ""
            self._wiring(where, env.get(s.url_var), expected, "the API gateway", s.url_var)
            return
        backend = self.config.service(s.backend or "")
        self._wiring(where, env.get(s.url_var), self.backend_url(backend, data), backend)

    def backend_url(self, backend: Service, data: Any) -> str:
        """The backend's recorded URL ("" when it is not deployed)."""
        return str(deliverables.entry(data, *backend.deliverable_key).get("service_url") or "")

    def _wiring(
        self,
        where: str,
        actual: str | None,
        expected: str,
        backend: Service | str,
        var: str = "SERVING_URL",
    ) -> None:
        backend = backend.name if isinstance(backend, Service) else backend
        if not expected:
            self._add(
                where,
                var,
                False,
                f"{actual!r}, but its backend {backend} is not deployed",
                f"deploy {backend} first, then this frontend",
            )
            return
        ok = (actual or "").rstrip("/") == expected.rstrip("/")
        detail = f"{actual!r}" + ("" if ok else f", but {backend} is at {expected!r}")
        if not ok and actual and naming.parse_run_url(expected):
            # Cloud Run's two URL forms of one service (hw5kit.naming)
            same = naming.compare_run_urls(actual, expected)
            ok = same.same is not False
            detail = (
                f"{actual!r}: {same.note}"
                if ok
                else f"{actual!r}, but {backend} is at {expected!r} ({same.describe()})"
            )
        flag = "" if self.target == "local" else f" -- --target {self.target}"
        self._add(
            where,
            var,
            ok,
            detail,
            f"redeploy the frontend with its backend's URL (nox -s deploy{flag})",
        )

    # -- local: builds and processes -- #
    def _local_checks(self, s: Service, entry: dict, data: Any) -> None:
        from .targets.local import LocalTarget, env_of_running

        target = LocalTarget(self.project)
        where = self._where(s)
        build_id = str(entry["build_id"])
        record = target.builds().get(build_id)
        if not self._add(
            where,
            f"build {build_id}",
            bool(record and record.get("service") == s.name),
            "a local build of this service" if record else "no such local build",
            "run `nox -s build`",
        ):
            return
        running = target.deployment()["services"].get(s.name)
        env = env_of_running(running) if running else None
        if env is None:
            self._add(where, "process", False, "not running", "run `nox -s deploy`")
            return
        self._add(
            where,
            f"process {running['pid']}",
            env.get("HW5_BUILD_ID") == build_id,
            f"started from build {env.get('HW5_BUILD_ID')}",
            "the running process comes from another build: run `nox -s deploy`",
        )
        if s.kind == "frontend":
            self._frontend_wiring(where, s, env, data)
