"""The grader's tracker against processes that hide their open files (non-dumpable), without
CAP_SYS_PTRACE as in a Docker container: one that hides for longer than ``HIDING_AFTER`` is
counted hidden (the run is then ended), one that hides for a moment is not. (Stopping a hiding
process at first sight was tried and undone: a process that is non-dumpable by its own doing for
a moment, as bubblewrap is while it sets up, could then never show its files again.)"""

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
    most = hidden = 0  # most processes seen hiding at once; most counted hidden
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        held = tracker.held()
        most, hidden = max(most, len(tracker.hiding)), max(hidden, held.hidden)
        if not os.path.exists(f"/proc/{pid}"):
            break
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    print(json.dumps({"most_hiding": most, "hidden": hidden}))
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


def test_a_process_that_keeps_hiding_is_counted_hidden():
    identity = runas.fresh_identity()
    # non-dumpable for good, counting as fast as it can
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
        assert found["most_hiding"] == 1 and found["hidden"] == 1, found
    finally:
        child.kill()
        child.wait()


def test_a_process_that_hides_for_a_moment_is_not_counted(tmp_path):
    identity = runas.fresh_identity()
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 (the kit's may not be readable by another uid)")
    # once the tracker looks (1 s), non-dumpable for 60 ms (under HIDING_AFTER), then dumpable
    # again for 0.5 s
    code = (
        "import ctypes, time\n"
        "libc = ctypes.CDLL(None)\n"
        "time.sleep(1)\n"
        "libc.prctl(4, 0, 0, 0, 0)\n"
        "time.sleep(0.06)\n"
        "libc.prctl(4, 1, 0, 0, 0)\n"
        "time.sleep(0.5)\n"
    )
    assert runas.HIDING_AFTER > 0.06
    child = subprocess.Popen([python, "-c", code], **identity.popen())
    try:
        found = _track(identity, child.pid, 5)
        assert child.wait(timeout=10) == 0
        assert found["most_hiding"] == 1, found  # the tracker saw it hide
        assert found["hidden"] == 0, found  # and did not count it
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
