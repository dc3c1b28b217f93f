"""The sandbox itself: the scrubbed environment, the gcloud relay, the user a script runs as,
how a mode is chosen, and what the grader says when no sandbox is available."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from hw5kit.grading import runas
from hw5kit.grading import sandbox as sb
from hw5kit.grading.cloud import FakeCloud
from hw5kit.grading.folders import grading_folder
from hw5kit.grading.limits import SandboxUnavailable
from hw5kit.grading.relay import GcloudRelay
from hw5kit.grading.sandbox import Sandbox

from ..conftest import need
from .conftest import TEST_LIMITS, sandbox_for

ALLOWED_ENV = {
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "CLOUDSDK_CORE_DISABLE_PROMPTS",
    "PYTHONDONTWRITEBYTECODE",
    "HW5_SANDBOX",
    "PWD",  # bash sets these three itself
    "SHLVL",
    "_",
}


def modes():
    return [
        "bwrap",
        pytest.param("user", marks=pytest.mark.skipif(os.geteuid() != 0, reason="needs root")),
    ]


def run_script(box: Sandbox, body: str, handler=None):
    """Run ``body`` as a script in a fresh workspace; (RunResult, relay calls)."""
    calls = []

    def record(argv, cwd, env):
        calls.append((argv, cwd, env))
        return {"stdout": "relayed\n", "stderr": "", "code": 0}

    with grading_folder() as base:
        workspace = base / "runs" / "1"
        workspace.mkdir(parents=True)
        (base / "runs").chmod(0o711)
        script = workspace / "script.sh"
        script.write_text("#!/bin/bash\n" + body)
        python = box.python or "/usr/bin/python3"
        with GcloudRelay(base, handler or record, python=python, limit=5) as relay:
            done = box.run(base, workspace, script, relay=relay)
    return done, calls


@pytest.mark.parametrize("mode", modes())
def test_scripts_get_a_scrubbed_environment(mode, monkeypatch):
    for name in (
        "GOOGLE_APPLICATION_CREDENTIALS",
        "CLOUDSDK_CONFIG",
        "AWS_SECRET_ACCESS_KEY",
        "GITHUB_TOKEN",
        "PYTHONPATH",
    ):
        monkeypatch.setenv(name, "grader-secret")
    done, _ = run_script(sandbox_for(mode), "env\n")
    assert done.ok, done.stderr
    names = {line.split("=", 1)[0] for line in done.stdout.splitlines() if "=" in line}
    assert names <= ALLOWED_ENV
    assert "grader-secret" not in done.stdout
    path = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)["PATH"]
    assert path.split(":")[0].endswith("/bin") and path.split(":")[1:] == list(sb.SANDBOX_PATH)


@pytest.mark.parametrize("mode", modes())
def test_gcloud_is_the_relay_even_by_its_full_path(mode):
    body = "gcloud config get-value project\n"
    if Path("/usr/bin/gcloud").exists() and mode == "bwrap":
        body += "/usr/bin/gcloud version\n"  # the real CLI is hidden behind the relay
    done, calls = run_script(sandbox_for(mode), body)
    assert done.ok, done.stderr
    assert done.stdout.count("relayed") == len(calls) >= 1
    assert calls[0][0] == ["config", "get-value", "project"]


def test_the_relay_answers_from_the_fake_gcloud(tmp_path):
    box = sandbox_for("bwrap")
    cloud = FakeCloud(tmp_path / "state", "hw5-20261234")
    done, _ = run_script(box, "gcloud config get-value project\ngcloud nope\n", cloud.handle)
    assert done.stdout.strip() == "hw5-20261234"
    assert "Invalid choice: 'nope'" in done.stderr
    assert [c.command for c in cloud.calls] == ["config get-value", None]
    assert cloud.calls[1].exit == 2


@pytest.mark.parametrize("mode", modes())
def test_each_run_gets_a_uid_of_its_own_when_the_grader_is_root(mode):
    box = sandbox_for(mode)
    body = "id -u\ntouch /etc/hw5-probe 2>&1 || true\n"
    first, _ = run_script(box, body)
    second, _ = run_script(box, body)
    uids = {int(first.stdout.split()[0]), int(second.stdout.split()[0])}
    if os.geteuid() == 0:
        assert len(uids) == 2 and min(uids) >= 100_000  # fresh, unused, never root's or nobody's
    else:
        assert uids == {os.getuid()}
    assert not Path("/etc/hw5-probe").exists()


def test_bubblewrap_hides_the_grader_s_files():
    here = Path(__file__).resolve()
    done, _ = run_script(
        sandbox_for("bwrap"),
        f"ls /root /home 2>&1 | head -2; cat {here} 2>&1 | head -1; ls /etc | wc -l\n",
    )
    assert "No such file" in done.stdout
    assert "The sandbox itself" not in done.stdout  # this test file's text
    assert int(done.stdout.split()[-1]) < 40  # a few entries of /etc, not the host's


def test_limits_stop_what_runs_too_long_or_prints_too_much():
    box = sandbox_for("bwrap", TEST_LIMITS)
    done, _ = run_script(box, "sleep 30\n")
    assert done.killed == f"the time limit ({TEST_LIMITS.timeout:g} s)"
    assert done.duration < TEST_LIMITS.timeout + 3
    done, _ = run_script(box, "yes\n")
    assert done.killed.startswith("it printed more than")
    assert len(done.stdout) <= 2 * TEST_LIMITS.output_kept + 100


def test_choosing_a_mode_without_bubblewrap(monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(sb.shutil, "which", lambda n: None if n == "bwrap" else real_which(n))
    with pytest.raises(SandboxUnavailable, match=r"bubblewrap \(bwrap\) is not installed"):
        Sandbox.detect("bwrap")
    if os.geteuid() == 0:
        assert Sandbox.detect("auto").mode == "user"
        described = Sandbox.detect("auto").describe()
        assert "network is not cut off" in described
        assert "bubblewrap is not installed: install it" in described
    monkeypatch.setattr(sb.os, "geteuid", lambda: 1000)
    with pytest.raises(SandboxUnavailable) as caught:
        Sandbox.detect("auto")
    message = str(caught.value)
    assert "apt-get install bubblewrap" in message and "--sandbox none" in message
    box = Sandbox.detect("none")
    assert box.mode == "none" and "NO ISOLATION" in box.describe()


def test_the_cli_stops_with_a_clear_message_when_no_sandbox_works(tmp_path):
    env = {"PATH": "/nonexistent", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "hw5kit.grading", str(tmp_path), "--sandbox", "bwrap"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "bubblewrap (bwrap) is not installed" in done.stderr
    assert not (tmp_path / "results.json").exists()


@pytest.mark.skipif(not runas.can_mount(), reason="needs root allowed to mount")
def test_a_grading_folder_that_cannot_be_removed_changes_nothing_outside_it(tmp_path, monkeypatch):
    parent = tmp_path / "parent"  # stands for /tmp
    parent.mkdir()
    parent.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(parent))
    stuck = None
    try:
        with grading_folder() as base:
            stuck = base / "stuck"
            stuck.mkdir()
            runas.mount_workspace(stuck, 2**20, 16)  # busy: rmtree cannot remove it
    finally:
        if stuck is not None:
            runas.unmount(stuck)
    assert stat.S_IMODE(parent.stat().st_mode) == 0o1777  # before: chmod 700 of /tmp itself


@pytest.fixture
def fake_bwrap(monkeypatch):
    """``fake_bwrap(body)``: a ``bwrap`` first on PATH running the shell ``body`` with the real
    one as $REAL, in a folder the runs' own uids can read."""
    real = shutil.which("bwrap")
    need(real is not None, "bubblewrap (bwrap) is not installed")
    folder = Path(tempfile.mkdtemp(prefix="hw5-fake-bwrap-"))
    folder.chmod(0o755)

    def make(body: str) -> Path:
        wrapper = folder / "bwrap"
        wrapper.write_text(f"#!/bin/sh\nREAL={real}\n" + textwrap.dedent(body))
        wrapper.chmod(0o755)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        return wrapper

    yield make
    shutil.rmtree(folder)


# bubblewrap 0.6.1 (Ubuntu 22.04, Gradescope's default image) as the grader meets it: --size
# (bubblewrap 0.7.0, containers/bubblewrap#509) is an unknown option, the rest works
OLD_BWRAP = """\
    if [ "$1" = --version ]; then echo "bubblewrap 0.6.1"; exit 0; fi
    for arg in "$@"; do
        if [ "$arg" = --size ]; then echo "bwrap: Unknown option --size" >&2; exit 1; fi
    done
    exec "$REAL" "$@"
"""


@pytest.mark.parametrize(
    "mount",
    [
        pytest.param(True, marks=pytest.mark.skipif(not runas.can_mount(), reason="cannot mount")),
        False,  # a container without CAP_SYS_ADMIN: the grader watches the folders instead
    ],
    ids=["tmpfs", "watched"],
)
def test_a_bubblewrap_without_size_is_still_used_and_its_tmp_still_bounded(
    fake_bwrap, monkeypatch, mount
):
    fake_bwrap(OLD_BWRAP)
    if not mount:
        monkeypatch.setattr(runas, "mount_workspace", lambda *args: False)
    limits = replace(TEST_LIMITS, tmpfs=8 * 2**20)
    box = Sandbox.detect("auto", limits)
    assert box.mode == "bwrap" and not box.tmpfs_size
    assert "no --size: /tmp and /dev/shm are folders the grader holds to 8 MiB" in box.describe()
    # still bubblewrap: its hostname, a few files of /etc, no home of the host's; /tmp and
    # /dev/shm writable, and private (the host's /tmp does not get the file)
    marker = f"hw5-old-bwrap-{os.getpid()}"
    done, _ = run_script(
        box,
        f"hostname; ls /etc | wc -l; ls /root 2>&1 | head -1\n"
        f"echo a > /tmp/{marker} && echo b > /dev/shm/{marker}\n"
        f"cat /tmp/{marker} /dev/shm/{marker}\n"
        "touch /usr/x 2>/dev/null || echo read-only\n",
    )
    assert done.ok, done.stderr
    lines = done.stdout.split()
    assert lines[0] == "hw5-sandbox" and int(lines[1]) < 40 and "No such file" in done.stdout
    assert "a\nb\nread-only" in done.stdout
    assert not Path("/tmp", marker).exists() and not Path("/dev/shm", marker).exists()
    # past the limit, in /tmp or /dev/shm: refused (a tmpfs of that size) or stopped (watched)
    for folder in ("/tmp", "/dev/shm"):
        body = (
            "for i in $(seq 1 24); do\n"
            f"  dd if=/dev/zero of={folder}/f$i bs=1M count=1 2>/dev/null \\\n"
            "    || { echo refused at $i; exit 0; }\n"
            "  sleep 0.05\n"
            "done\necho all written\n"
        )
        done, _ = run_script(box, body)
        assert "all written" not in done.stdout, folder
        if mount:
            assert "refused at" in done.stdout and int(done.stdout.split()[-1]) <= 9, folder
        else:
            assert done.killed == "it wrote more than 8 MiB into /tmp and /dev/shm", folder


def _doctor() -> str:
    """What the Gradescope bundle's ``doctor`` prints here (the environment's PATH)."""
    done = subprocess.run(
        [sys.executable, "-m", "hw5kit.gradescope", "doctor"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_doctor_names_an_old_bubblewrap_and_still_uses_it(fake_bwrap):
    fake_bwrap(OLD_BWRAP)
    said = _doctor()
    assert "(bubblewrap 0.6.1); uid" in said
    assert "sandbox here and now: bwrap (" in said and "this bubblewrap has no --size" in said
    assert "install bubblewrap" not in said.lower()


def test_a_bubblewrap_refused_its_namespaces_is_named_not_said_missing(fake_bwrap, monkeypatch):
    """Installed, but refused user namespaces (Docker's default seccomp profile): the grader
    falls back on `user` and says why, not "install bubblewrap"; so does the bundle's doctor."""
    fake_bwrap(
        """\
        echo "bwrap: Creating new namespace failed: Operation not permitted" >&2
        exit 1
        """
    )
    with pytest.raises(SandboxUnavailable, match="Creating new namespace failed"):
        Sandbox.detect("bwrap")
    with monkeypatch.context() as patched:  # not root either: no sandbox at all, and why
        patched.setattr(sb.os, "geteuid", lambda: 1000)
        with pytest.raises(SandboxUnavailable) as caught:
            Sandbox.detect("auto")
    said = str(caught.value)
    assert "user namespaces are refused here" in said and "Make bubblewrap work here" in said
    assert "install bubblewrap" not in said.lower()
    need(os.geteuid() == 0, "the user sandbox needs root")
    box = Sandbox.detect("auto")
    described = box.describe()
    assert box.mode == "user" and "install bubblewrap" not in described
    assert "bubblewrap is installed, but user namespaces are refused here" in described
    said = _doctor()
    assert "bubblewrap is installed, but user namespaces are refused here" in said
    assert "install bubblewrap" not in said.lower()
