"""Fixtures of the serving tests that start the backend as its image starts it."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def baked_home(tmp_path_factory):
    """Weights and ONNX export baked as the image build bakes them (so, as in the image, the
    service never imports torch)."""
    home = tmp_path_factory.mktemp("baked")
    done = subprocess.run(
        [sys.executable, "-m", "hw5kit.serving.models.weights", "bake", "efficientnet_lite0",
         "--torch-home", str(home)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return home
