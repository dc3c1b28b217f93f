"""The deployment pipeline: one config (``deployment.yaml``), Jinja templates rendered into
``deployment/``, and build / deploy / verify on the local, container and gcp targets.

Modules: ``config`` (read and check ``deployment.yaml`` against ``deployment.schema.json``) and
``deployment`` (the objects it makes); ``yamlschema`` (how both YAML files are checked);
``context`` (what templates see) and ``render``; ``deliverables`` (+ ``deliverables.schema.json``);
``targets`` (``base.Target``, the interface each of local, container and gcp implements);
``verify`` (+ ``report``); ``setup`` (+ ``setup_plan``) for the Google Cloud project; ``gcloud``
(calling it: bounded waits, per-thread configurations); ``project`` (the repository, its config,
target and state); ``rerun`` (the commands hints print); and ``cli`` (``python -m
hw5kit.pipeline``, which the nox sessions call).
"""
