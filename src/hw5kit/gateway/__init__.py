"""v3's API gateway on this machine: a small WSGI proxy driven by the OpenAPI 2.0 document
that Google API Gateway gets on gcp (``deployment/openapi_v3.yaml``, rendered with the
backends' URLs).

It routes by the document's ``x-google-backend`` entries, as Google's gateway does:

* a request whose method and path match an operation goes to that operation's backend
  (``address``; ``APPEND_PATH_TO_ADDRESS`` appends the request path, ``CONSTANT_ADDRESS`` does
  not), anything else is 404 (``x-google-allow: configured``, the default);
* the backend has ``deadline`` seconds to answer: past it 504; a backend that refuses the
  connection or cannot be reached is 502 at once;
* when the operation (or the document) requires an API key (``securityDefinitions`` of type
  ``apiKey``: ``?key=`` or the ``x-api-key`` header), a request without one is 401 and one with
  an unknown key 403;
* bodies stream both ways, requests above ``--max-body-mb`` are 413, the caller's
  ``X-Request-ID`` (or a new one) goes to the backend and comes back.

Errors are JSON, ``{"error": {"code", "message"}}``, like the backends'.
Run: ``python -m hw5kit.gateway --spec FILE --port N`` (``--help``).
"""

from __future__ import annotations

from .. import lazy

# Imported on first use: the pipeline reads ``spec`` (standard library and PyYAML) in the light
# environment, which has no Flask or serving stack for ``app`` to pull in.
_EXPORTS = {
    "GatewayApp": "app",
    "GatewaySpec": "spec",
    "Route": "spec",
    "SpecError": "spec",
    "load_spec": "spec",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy.exports(__name__, _EXPORTS)
