"""``python -m hw5kit.gateway --spec FILE``: the local API gateway under gunicorn."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gunicorn.app.base import BaseApplication

from ..serving.settings import serving_port
from .app import GatewayApp
from .spec import SpecError, load_spec

KEYS_ENV = "HW5_GATEWAY_API_KEYS"
# gunicorn's default format without the query string (%(r)s, %(q)s) nor the referer
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss "%(a)s"'


class _Server(BaseApplication):
    def __init__(self, app, options: dict):
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return self.application


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hw5kit.gateway",
        description="The v3 API gateway on this machine: routes requests by the x-google-backend "
        "entries of an OpenAPI 2.0 document (deployment/openapi_v3.yaml rendered with the "
        f"backends' URLs). API keys, when the document asks for them, come from ${KEYS_ENV} "
        "(comma-separated).",
    )
    p.add_argument("--spec", type=Path, required=True, help="the OpenAPI 2.0 document")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (PORT, SERVING_PORT, else 8000)")
    p.add_argument(
        "--threads", type=int, default=64, help="requests forwarded at once (64); more wait"
    )
    p.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body (32)")
    p.add_argument("--check", action="store_true", help="only read the document and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    keys = [k.strip() for k in os.environ.get(KEYS_ENV, "").split(",") if k.strip()]
    if any(r.keys for r in spec.routes) and not keys:
        print(
            f"error: {args.spec} requires an API key but ${KEYS_ENV} names none",
            file=sys.stderr,
        )
        return 2
    routes = ", ".join(f"{r.method} {r.path}" for r in spec.routes)
    print(f"gateway {spec.title!r}: {len(spec.routes)} routes ({routes})", file=sys.stderr)
    if args.check:
        return 0
    app = GatewayApp(spec, api_keys=keys, max_body_bytes=int(args.max_body_mb * 1024 * 1024))
    deadline = max(r.deadline for r in spec.routes)
    port = args.port if args.port is not None else serving_port()
    # the backends' front: a request reaches a thread only once all of it has arrived, so slow
    # clients cannot hold the threads; bodies past the limit are handed on at once (413 here)
    os.environ.setdefault("HW5_FRONT_MAX_BODY_MB", str(args.max_body_mb))
    _Server(
        app,
        {
            "bind": f"{args.host}:{port}",
            "workers": 1,
            "worker_class": "hw5kit.serving.http.worker.BufferingThreadWorker",
            "threads": args.threads,
            "worker_connections": max(1000, 4 * args.threads),
            # no query string in the access log: an API key may be in it (?key=...)
            "access_log_format": ACCESS_LOG_FORMAT,
            "timeout": int(deadline) + 30,
            "graceful_timeout": 8,
            "keepalive": 5,
            "accesslog": "-",
            "errorlog": "-",
            "loglevel": os.environ.get("HW5_LOG_LEVEL", "info"),
        },
    ).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
