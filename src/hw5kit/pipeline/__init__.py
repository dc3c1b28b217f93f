"""The deployment pipeline: one config (``deployment.yaml``), Jinja templates rendered into
``deployment/``, and build / deploy / verify on the local, container and gcp targets.

Modules: ``config`` (load and validate), ``context`` (what templates see), ``render``,
``deliverables`` (+ ``deliverables.schema.json``), ``targets`` (local, gcp), ``verify``, and
``cli`` (``python -m hw5kit.pipeline``, which the nox sessions call).
"""
