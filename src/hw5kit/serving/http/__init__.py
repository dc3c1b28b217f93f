"""The Flask application factory for every backend version (v1, v2, v3).

``apps/<service>/app.py`` is one line over this: ``app = create_app(version="v2")``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from flask import Flask, Request, request
from flask.sessions import SecureCookieSessionInterface

from ..errors import ModelUnavailable
from ..instance import Instance
from ..registry import ModelRegistry, settings_loader
from ..service import PredictionService
from ..settings import ServingSettings
from . import handlers, observability, routes
from .observability import AdmissionQueue, Metrics

log = logging.getLogger("hw5kit.serving")


def served_over_https() -> bool:
    """The request came over https: to this server, or to the proxy in front of it (Cloud Run
    terminates TLS and says so in ``X-Forwarded-Proto``; a caller who fakes it only makes its
    own cookie Secure)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.scheme == "https" or forwarded == "https"


class ServingRequest(Request):
    """Uploaded files stay in memory. Werkzeug spools a file part over 500 kB to a temporary
    file on disk (written, then read back); here the whole request is already in memory (the
    buffering front read it, within ``MAX_CONTENT_LENGTH`` and ``HW5_FRONT_BUFFER_MB``) and the
    image is read whole at once, so the disk round trip only costs time: a phone photo is
    always over 500 kB."""

    def _get_file_stream(
        self, total_content_length, content_type, filename=None, content_length=None
    ):
        return io.BytesIO()


class SessionCookies(SecureCookieSessionInterface):
    """v2's session cookie (signed with ``SECRET_KEY``), ``Secure`` when served over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(super().get_cookie_secure(app)) or served_over_https()


@dataclass
class ServingState:
    settings: ServingSettings
    registry: ModelRegistry
    service: PredictionService
    metrics: Metrics
    limiter: AdmissionQueue
    instance: Instance | None = None  # the workers sharing this instance (gunicorn_conf)


def create_app(
    settings: ServingSettings | None = None,
    *,
    version: str | None = None,
    registry: ModelRegistry | None = None,
    start: bool = True,
    flavor: str | None = None,
) -> Flask:
    """Build a backend. ``settings`` default to the environment (see ``settings.py``).

    With ``start`` the weights are checked at once (a missing file stops start-up with a message
    naming it and how to provide it) and the models load, in the background unless
    ``HW5_LOAD=sync``: ``/readyz`` answers 503 until they are all loaded.
    """
    if flavor is not None:  # the name before "version" (apps written against it keep working)
        if version is not None and version != flavor:
            raise ValueError(f"flavor {flavor!r} (the old name of version) contradicts {version!r}")
        version = flavor
    if settings is None:
        settings = ServingSettings.from_env(version or "v1")
    elif version is not None and version != settings.version:
        raise ValueError(f"version {version!r} contradicts settings.version {settings.version!r}")
    registry = registry or ModelRegistry(settings.models, loader=settings_loader(settings))
    # a prediction that reaches a worker still loading waits for it rather than failing
    registry.load_wait = settings.queue_timeout
    instance = Instance.from_env(settings.workers)
    service = PredictionService(
        settings, registry, instance=instance if settings.workers > 1 else None
    )

    app = Flask("hw5kit.serving")
    app.request_class = ServingRequest
    app.config.update(
        SECRET_KEY=settings.secret_key,
        # the multipart envelope adds a little to the file itself
        MAX_CONTENT_LENGTH=settings.max_upload_bytes + 256 * 1024,
        SESSION_COOKIE_NAME="hw5_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.json.sort_keys = False
    app.session_interface = SessionCookies()
    metrics = Metrics(registry)
    limiter = AdmissionQueue(
        settings.max_inflight,
        metrics,
        queue_length=settings.queue_length,
        timeout=settings.queue_timeout,
    )
    app.extensions["hw5kit"] = ServingState(settings, registry, service, metrics, limiter, instance)
    observability.install(app, metrics)
    app.register_blueprint(routes.common)
    if settings.version == "v2":
        app.register_blueprint(routes.v2)
    if settings.version == "v3":
        app.register_blueprint(routes.v3)
    handlers.register(app)

    if start:
        if instance is not None:
            registry.on_ready(instance.mark_ready)
        try:
            registry.start(background=settings.load == "background")
        except ModelUnavailable as exc:
            log.critical("cannot start: %s", exc.message)
            raise
    return app


__all__ = ["ServingState", "create_app"]
