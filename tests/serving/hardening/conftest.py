"""A backend run with the catalog's limits, and the hostile loopback server."""

from collections.abc import Iterator

import pytest

from hw5kit.testkit.badinputs import BACKEND_ENV
from hw5kit.testkit.hostile import HostileServer

from ...conftest import Backend, start_backend


@pytest.fixture(scope="session")
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


@pytest.fixture(scope="session")
def catalog_backend(tmp_path_factory) -> Iterator[Backend]:
    """backend_v2 with one model (fast to load) and the small limits of ``BACKEND_ENV``."""
    backend = start_backend(
        "backend_v2",
        tmp_path_factory.mktemp("catalog-backend"),
        MODELS="efficientnet_lite0",
        **BACKEND_ENV,
    )
    yield backend
    backend.process.stop()
    assert backend.blocked_network() == "", "the backend tried to reach the network"
