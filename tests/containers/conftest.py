"""Fixtures of the container tests: the engine, and backend_v1 + frontend_v1 built once per
session (tag ``:test``, in the project's container store, so a later run reuses the base while
nothing it depends on changed, and the container target's build reuses the layers)."""

from __future__ import annotations

import pytest

from hw5kit import devenv
from hw5kit.containers.engine import PODMAN_TOOLS, detect, docker_daemon_answers
from hw5kit.containers.images import Builder

from ..conftest import need

BUILD_TIMEOUT_NOTE = "a cold build (Python image, bases, services) takes 3-5 min on 2 cores"


@pytest.fixture(scope="session")
def engine():
    if not docker_daemon_answers():
        missing = devenv.ensure_system_packages(PODMAN_TOOLS)  # as root with apt-get
        need(not missing, f"a Docker daemon, or {', '.join(PODMAN_TOOLS)} (missing: {missing})")
    return detect(install=False, log=print)


@pytest.fixture(scope="session")
def builder(engine):
    return Builder(engine, python_base="debootstrap", tag="test")


@pytest.fixture(scope="session")
def images(builder):
    """{service: Built}: backend_v1 and frontend_v1 with their bases."""
    print(BUILD_TIMEOUT_NOTE)
    return {s: builder.build(s) for s in ("backend_v1", "frontend_v1")}
