"""v3 tests share the pipeline tests' fixtures (the fake gcloud project)."""

from ..pipeline.conftest import cloud  # noqa: F401
