"""The grader's tracker against processes that hide their open files (non-dumpable), without
CAP_SYS_PTRACE as in a Docker container: a hiding process is stopped the first time it is seen,
one that shows its files again (an execve's moment) is let go on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from hw5kit.grading import runas
from hw5kit.paths import ROOT

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv"
)

# the tracker in a process of its own without CAP_SYS_PTRACE (what Docker grants root by
# default): it looks every 10 ms for ``seconds`` or until the watched process ends, then prints
# the most processes it held stopped at once, whether it ever counted one hidden, and whether
# the watched process ended
TRACK = textwrap.dedent(
    """
    import json, os, sys, time
    from hw5kit.grading import runas
    uid, pid, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    tracker = runas.Tracker(runas.Identity(uid, uid))
    most = hidden = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        held = tracker.held()
        most, hidden = max(most, len(tracker.stopped)), max(hidden, held.hidden)
        if not os.path.exists(f"/proc/{pid}"):
            break
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    print(json.dumps({"most_stopped": most, "hidden": hidden}))
    """
)


def _track(identity: runas.Identity, pid: int, seconds: float) -> dict:
    import json

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        ["setpriv", "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace",
         sys.executable, "-c", TRACK, str(identity.uid), str(pid), str(seconds)],
        capture_output=True, text=True, env=env, timeout=seconds + 30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


def test_a_process_that_hides_is_stopped_at_first_sight():
    identity = runas.fresh_identity()
    # non-dumpable, then it counts as fast as it can: stopped, it stops counting
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 (the kit's may not be readable by another uid)")
    child = subprocess.Popen(
        [python, "-c",
         "import ctypes\nctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\nn = 0\nwhile True: n += 1\n"],
        **identity.popen(),
    )  # fmt: skip
    try:
        found = _track(identity, child.pid, 0.5)
        assert found["most_stopped"] == 1 and found["hidden"] == 1, found
        assert _state(child.pid) == "T"  # still stopped when the grader ends the run
    finally:
        child.kill()
        child.wait()


def test_processes_that_hide_only_while_they_exec_are_let_go_on():
    identity = runas.fresh_identity()
    # 300 execs in a row: each may hide its files for a moment; stopped then, it must be let
    # go on, or the loop never ends
    child = subprocess.Popen(
        ["/bin/sh", "-c", "i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done"],
        **identity.popen(),
    )
    try:
        found = _track(identity, child.pid, 20)
        assert child.wait(timeout=20) == 0  # it ended: nothing left stopped
        assert found["hidden"] == 0, found
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
