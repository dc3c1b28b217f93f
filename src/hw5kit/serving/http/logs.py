"""Logs as one JSON object per line, the structured form Cloud Logging reads.

Cloud Run forwards every line a container writes; a line that is a JSON object becomes a
structured entry: ``severity`` sets the level, ``message`` the text, ``httpRequest`` the request
panel, ``logging.googleapis.com/trace`` links the entry to the request's trace. Other keys land
in ``jsonPayload``. ``HW5_LOG_FORMAT=text`` gives plain lines for a terminal instead.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}
# attributes every LogRecord has: anything else came through ``extra=`` and is kept
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
TRACE_KEY = "logging.googleapis.com/trace"
TRACE_HEADER = "X-Cloud-Trace-Context"


class RequestContextFilter(logging.Filter):
    """Adds the request id to every record logged while a request is handled, and the Cloud
    trace (from Cloud Run's ``X-Cloud-Trace-Context``) when ``GOOGLE_CLOUD_PROJECT`` is set."""

    def filter(self, record: logging.LogRecord) -> bool:
        from flask import g, has_request_context, request

        if has_request_context():
            rid = g.get("request_id")
            if rid and not hasattr(record, "request_id"):
                record.request_id = rid
            project = os.environ.get("GOOGLE_CLOUD_PROJECT")
            trace = request.headers.get(TRACE_HEADER, "").split("/", 1)[0]
            if project and trace.isalnum():
                setattr(record, TRACE_KEY, f"projects/{project}/traces/{trace}")
        return True


class CloudLoggingFormatter(logging.Formatter):
    """``{"severity", "message", "time", "logger", ...extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            # Error Reporting finds a stack trace inside the message
            message = f"{message}\n{self.formatException(record.exc_info)}"
        elif record.stack_info:
            message = f"{message}\n{self.formatStack(record.stack_info)}"
        entry: dict = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": message,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "logger": record.name,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                entry[key] = value
        if record.levelno >= logging.ERROR:
            entry.setdefault("process", record.process)
        return json.dumps(entry, default=str, ensure_ascii=False)


def log_format() -> str:
    fmt = os.environ.get("HW5_LOG_FORMAT", "json").strip().lower() or "json"
    if fmt not in ("json", "text"):
        raise ValueError(f"HW5_LOG_FORMAT must be 'json' or 'text', got {fmt!r}")
    return fmt


def logging_config(level: str = "INFO", fmt: str = "json") -> dict:
    """A ``logging.config.dictConfig`` dict (gunicorn's ``logconfig_dict``): the app's loggers,
    gunicorn's error log and everything else go to stdout in one format."""
    level = level.upper()
    formatter = (
        {"()": f"{__name__}.CloudLoggingFormatter"}
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "main",
        "filters": ["request"],
        "stream": "ext://sys.stdout",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "filters": {"request": {"()": f"{__name__}.RequestContextFilter"}},
        "handlers": {"console": handler},
        "root": {"level": level, "handlers": ["console"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["console"], "propagate": False},
            # requests are logged by the app, with httpRequest; gunicorn's own access log is off
            "gunicorn.access": {"level": "WARNING", "handlers": ["console"], "propagate": False},
            "hw5kit": {"level": level, "propagate": True},
        },
    }
