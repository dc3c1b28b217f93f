"""Fixtures for the grader's tests: the sandbox (bubblewrap, installed by `nox -s tests`), and
grading a materialized submission in one call."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from hw5kit.grading import Grading, Limits, Options, Sandbox, grade
from hw5kit.grading.limits import SandboxUnavailable

from ..conftest import need
from ..support import submissions

# Short enough that the hostile scripts (endless loops) keep the suite quick.
# Generous: a script making several fake gcloud calls must finish even on a loaded machine.
TEST_LIMITS = Limits(timeout=20.0)
# For the tests that expect the time limit to stop a script.
SHORT_LIMITS = Limits(timeout=4.0)


def sandbox_for(mode: str, limits: Limits = TEST_LIMITS) -> Sandbox:
    if mode == "bwrap":
        need(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is not installed")
    if mode == "user":
        need(os.geteuid() == 0, "the `user` sandbox needs the grader to run as root")
    try:
        return Sandbox.detect(mode, limits)
    except SandboxUnavailable as exc:
        need(False, f"sandbox {mode} unavailable: {exc}")
        raise


@pytest.fixture(scope="session")
def bwrap_sandbox() -> Sandbox:
    return sandbox_for("bwrap")


@pytest.fixture
def grade_submission(bwrap_sandbox) -> Callable[..., Grading]:
    def run(path: Path, sandbox: Sandbox | None = None, **options) -> Grading:
        box = sandbox or bwrap_sandbox
        opts = Options(sandbox=box.mode, limits=box.limits, **options)
        return grade(path, opts, sandbox=box)

    return run


@pytest.fixture
def materialize(tmp_path) -> Callable[..., Path]:
    def make(name: str, spec: dict | None = None) -> Path:
        """A corpus entry by name, else the good submission (named ``name`` on disk)."""
        if spec is None and name not in submissions.corpus():
            spec = {}
        return submissions.materialize(name, tmp_path / "submissions" / name, spec)

    return make


def lost_points(grading: Grading) -> dict[str, float]:
    return {r.item.id: r.lost for r in grading.results if not r.manual and r.lost}


def result(grading: Grading, item: str):
    return next(r for r in grading.results if r.item.id == item)
