"""Issue 15's attacks, our own variants, graded the way course staff grade (the CLI writing
results.json) in each isolation mode: bubblewrap, `user` (a uid of its own per script) and
`user` in a container's capabilities (Docker's default set: no CAP_SYS_ADMIN, so no tmpfs
workspace; no CAP_SYS_PTRACE, so /proc of other uids is closed to root).

For each attack: results.json is written, no byte of a planted root-only secret reaches it, the
CLI's output or its log, host paths that exist and that do not get the same message, the next
grading is unaffected, and the grader's peak memory stays bounded (printed with -s).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hw5kit.grading import Limits, Options, grade, report
from hw5kit.grading.cloud import CallLimits, FakeCloud

from ..support import submissions
from .conftest import TEST_LIMITS, lost_points, result, sandbox_for

SECRET = "hw5-ROOT-ONLY-SECRET-7f3a9c"
PEAK_LIMIT_MIB = 1024  # the grader and each fake gcloud call (measured: about 100-200 MiB)
# Docker's default capabilities: what a root grader keeps in a Gradescope-like container
DOCKER_CAPS = (
    "chown,dac_override,fowner,fsetid,kill,setgid,setuid,setpcap,net_bind_service,net_raw,"
    "sys_chroot,mknod,audit_write,setfcap"
)
PEAKS: dict[str, float] = {}


def modes():
    root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
    return [
        pytest.param("bwrap", id="bwrap"),
        pytest.param("user", id="user", marks=root),
        pytest.param("container", id="user-in-container-caps", marks=root),
    ]


@pytest.fixture
def host(tmp_path):
    """Host files a submission must never get at: a root-only secret and a FIFO."""
    folder = tmp_path / "host"
    folder.mkdir()
    secret = folder / "secret.txt"
    secret.write_text(f"FROM {SECRET}\n{SECRET}\n")
    secret.chmod(0o600)
    fifo = folder / "fifo"
    os.mkfifo(fifo)
    return {"secret": secret, "fifo": fifo, "missing": folder / "no-such-file"}


def hostile(materialize, name: str, body: str, script: str = "submit_build.sh") -> Path:
    """The good submission with one script replaced by ``body`` (the original kept as
    ``deployment/orig_<script>`` so that the body can still do the real work)."""
    submission = materialize(name)
    deployment = submission / "deployment"
    shutil.copy2(deployment / script, deployment / f"orig_{script}")
    (deployment / script).write_text("#!/bin/bash\n" + body)
    return submission


def grade_cli(submission: Path, mode: str, out: Path, timeout: float = 20) -> dict:
    """``python -m hw5kit.grading`` as staff run it; its results, output and peak memory
    (the largest resident size of the grader and everything it started and reaped)."""
    sandbox = "bwrap" if mode == "bwrap" else "user"
    cmd = [sys.executable, "-m", "hw5kit.grading", str(submission), "--sandbox", sandbox]
    cmd += ["--out", str(out), "--timeout", str(timeout), "--student-id", submissions.STUDENT_ID]
    if mode == "container":
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("no setpriv to drop capabilities")
        cmd = [setpriv, f"--bounding-set=-all,+{DOCKER_CAPS.replace(',', ',+')}", "--", *cmd]
    measure = (
        "import json, resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=600)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'code': done.returncode, 'stdout': done.stdout, "
        "'stderr': done.stderr, 'peak_kib': peak}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure, *cmd], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["code"] == 0, run["stderr"][-3000:]
    assert out.is_file(), "no results.json"
    run["results"] = out.read_text()
    run["data"] = json.loads(run["results"])
    run["peak_mib"] = run["peak_kib"] / 1024
    return run


def check_clean(run: dict, label: str) -> None:
    """No byte of the secret anywhere the grading wrote; memory bounded."""
    for where in ("results", "stdout", "stderr"):
        assert SECRET not in run[where], f"{label}: the secret reached {where}"
    assert run["peak_mib"] < PEAK_LIMIT_MIB, f"{label}: peak {run['peak_mib']:.0f} MiB"
    PEAKS[label] = run["peak_mib"]
    print(f"\n{label}: grader peak resident size {run['peak_mib']:.0f} MiB")


def outputs(run: dict) -> str:
    return "\n".join(str(t.get("output", "")) for t in run["data"]["tests"])


def full_score(run: dict) -> bool:
    return run["data"]["score"] == run["data"]["extra_data"]["automatic_max"]


def lost(run: dict) -> set[str]:
    """The automatic items that lost points."""
    return {
        t["name"].split()[0]
        for t in run["data"]["tests"]
        if "max_score" in t and t["score"] < t["max_score"]
    }


# --- 1. file flags naming host files --------------------------------------------------------

FLAGS_BODY = """\
cd "$(dirname "$0")/.."
gcloud services enable apigateway.googleapis.com secretmanager.googleapis.com > /dev/null 2>&1
mkfifo deployment/fifo.yaml
ln -s "{secret}" deployment/link.yaml
ln "{secret}" deployment/hard.yaml 2> /dev/null
i=0
for target in "{secret}" /etc/shadow "{missing}" /dev/zero "{fifo}" deployment/fifo.yaml \\
        deployment/link.yaml /proc/self/environ "{secret}/.."; do
    i=$((i+1))
    gcloud api-gateway api-configs create "c$i" --api=hw5api --openapi-spec="$target" 2>&1 \\
        | sed "s#$target#NAME#g" >> /tmp/spec.out
    gcloud builds submit --region=us-central1 --config="$target" . 2>&1 \\
        | sed "s#$target#NAME#g" >> /tmp/config.out
    gcloud builds submit --region=us-central1 --config=deployment/cloudbuild.yaml "$target" \\
        2>&1 | sed "s#$target#NAME#g" >> /tmp/source.out
    gcloud secrets create "s$i" --data-file="$target" 2>&1 | sed "s#$target#NAME#g" \\
        >> /tmp/secret.out
done
{{  # the run's last lines, on stderr: the grader shows them (no `gcloud run deploy` here)
    for f in spec config source secret; do
        echo "DISTINCT $f $(sort -u /tmp/$f.out | wc -l) of $(wc -l < /tmp/$f.out)"
    done
    sort -u /tmp/spec.out /tmp/config.out /tmp/source.out /tmp/secret.out | cut -c1-150
    echo "PROJECT $(gcloud config get-value project 2>&1)"
}} >&2
rm -f /tmp/spec.out /tmp/config.out /tmp/source.out /tmp/secret.out
exit 1
"""


@pytest.mark.parametrize("mode", modes())
def test_file_flags_naming_host_files_all_get_one_message(mode, host, materialize, tmp_path):
    body = FLAGS_BODY.format(**{k: str(v) for k, v in host.items()})
    submission = hostile(materialize, f"flags-{mode}", body, "deploy_backend_v1.sh")
    run = grade_cli(submission, mode, tmp_path / "results.json")
    check_clean(run, f"file flags ({mode})")
    text = outputs(run)
    # the secret, /etc/shadow, a missing path, /dev/zero, FIFOs, links: one message per flag
    for flag in ("spec", "config", "source", "secret"):
        assert f"DISTINCT {flag} 1 of 9" in text, text
    assert "Unable to read file [NAME]: no regular file of that name inside the submission" in text
    assert "could not find source [NAME]: no folder of that name inside the submission" in text
    assert f"PROJECT hw5-{submissions.STUDENT_ID}" in text  # the FIFO held no lock
    # the attack (in place of the v1 backend's deployment) costs that deployment only
    assert lost(run) and all(item.startswith("Q3.") for item in lost(run)), text


# --- 2. the link-swap race ------------------------------------------------------------------

RACE_BODY = """\
cd "$(dirname "$0")/.."
cp Dockerfile.base .keep-base
cp deployment/cloudbuild.yaml .keep-config
swap() {{  # $1 the file, $2 its good copy: a link to the secret, then the file, again and again
    python3 -c 'import os, sys
name, keep, secret = sys.argv[1:]
for _ in range(2000000):
    os.symlink(secret, name + ".l")
    os.replace(name + ".l", name)
    os.link(keep, name + ".r")
    os.replace(name + ".r", name)
' "$1" "$2" "{secret}"
}}
swap Dockerfile.base .keep-base > /dev/null 2>&1 &
swap deployment/cloudbuild.yaml .keep-config > /dev/null 2>&1 &
for i in $(seq 1 50); do bash deployment/orig_submit_build.sh > /dev/null 2>&1; done
exit 1
"""


@pytest.mark.parametrize("mode", modes())
def test_the_link_swap_race_never_shows_a_host_file(mode, host, materialize, tmp_path):
    body = RACE_BODY.format(secret=host["secret"])
    submission = hostile(materialize, f"race-{mode}", body)
    run = grade_cli(submission, mode, tmp_path / "results.json")
    check_clean(run, f"link-swap race ({mode})")
    submit = next(t["output"] for t in run["data"]["tests"] if t["name"].startswith("Q1.8"))
    assert "50 build(s) submitted" in submit, submit[:600]  # every submission was answered


# --- 3. leftovers aimed at the next run and the next grading ----------------------------------

LEFTOVER_BODY = """\
ws="$(cd "$(dirname "$0")/.." && pwd)"
client="$(command -v gcloud)"
cat > /tmp/hw5hostile-loop.sh <<EOF
sleep 2  # past the end of its script: aimed at the runs and gradings that follow
for i in \\$(seq 1 1200); do
    "$client" config set project hw5-evil > /dev/null 2>&1
    "$client" run deploy backendv1 --image=evil --region=us-central1 > /dev/null 2>&1
    for n in 1 2 3 4 5 6 7 8 9 10 11 12; do
        echo pwned > "$ws/../\\$n/PWNED" 2> /dev/null
        echo pwned > "$ws/../\\$n/deliverables.yaml" 2> /dev/null
    done
    for d in /tmp/hw5-grade-*/runs/*/; do echo pwned > "\\$d/PWNED" 2> /dev/null; done
    echo pwned > /tmp/hw5hostile-planted 2> /dev/null
    sleep 0.05
done
EOF
setsid env -i /bin/bash -c 'exec -a hw5hostile-leftover /bin/bash /tmp/hw5hostile-loop.sh' \\
    < /dev/null > /dev/null 2>&1 &
nohup setsid env -i /bin/sleep 3600 < /dev/null > /dev/null 2>&1 &
bash "$ws/deployment/orig_submit_build.sh"
"""


def _survivors() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "hw5hostile" in line or "sleep 3600" in line]


@pytest.mark.parametrize("mode", modes())
def test_leftovers_reach_neither_the_next_run_nor_the_next_grading(mode, materialize, tmp_path):
    submission = hostile(materialize, f"leftover-{mode}", LEFTOVER_BODY)
    run = grade_cli(submission, mode, tmp_path / "hostile.json")
    check_clean(run, f"setsid env -i leftovers ({mode})")
    assert full_score(run), outputs(run)  # later runs saw neither the project nor the files
    assert "hw5-evil" not in run["results"]
    assert _survivors() == []
    assert not Path("/tmp/hw5hostile-planted").exists()
    assert not Path("/tmp/hw5hostile-loop.sh").exists() or mode == "bwrap"  # bwrap: private
    after = grade_cli(materialize("after-leftover"), mode, tmp_path / "after.json")
    assert full_score(after), outputs(after)


# --- 4. deleted files kept open -------------------------------------------------------------

UNLINKED_BODY = """\
cd "$(dirname "$0")/.."
exec -a hw5hostile-unlinked python3 - <<'EOF'
import ctypes, os, sys, time
if {hide}:  # non-dumpable: its /proc/PID/fd closed to everyone but a CAP_SYS_PTRACE holder
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
held = []
for i in range({count}):
    name = os.path.join({folder!r}, f"hw5hostile-{{os.getpid()}}-{{i}}")
    fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o600)
    os.unlink(name)
    try:
        for _ in range(30):  # 30 MiB: under the 32 MiB per file
            os.write(fd, b"\\xa5" * 2**20)
    except OSError as exc:
        print("write refused:", exc.strerror, flush=True)
        sys.exit(3)
    held.append(fd)
    print("HELD", (i + 1) * 30, "MiB", flush=True)
time.sleep(60)
EOF
"""


@pytest.mark.parametrize("folder", ["workspace", "tmp"])
@pytest.mark.parametrize("mode", modes())
def test_deleted_files_kept_open_count_against_the_limit(mode, folder, materialize, tmp_path):
    where = "." if folder == "workspace" else "/tmp"
    body = UNLINKED_BODY.format(folder=where, hide=False, count=10)
    submission = hostile(materialize, f"unlinked-{mode}-{folder}", body, "deploy_backend_v1.sh")
    run = grade_cli(submission, mode, tmp_path / "results.json")
    check_clean(run, f"deleted files kept open in {folder} ({mode})")
    text = outputs(run)
    held = [int(n) for n in re.findall(r"HELD (\d+) MiB", text)]
    assert "it wrote more than 128 MiB" in text or "No space left on device" in text, text
    assert max(held, default=0) < 300, text  # stopped before all 10 x 30 MiB were held
    assert "the time limit" not in text


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_a_process_hiding_its_open_files_is_stopped(materialize, tmp_path):
    # A hidden process is stopped once it has hidden for HIDING_AFTER (100 ms: an execve hides
    # for a few ms), so on a quiet machine it can write a few hundred MiB first; what is checked
    # is that it is stopped long before it holds everything it tries to (40 x 30 MiB).
    body = UNLINKED_BODY.format(folder=".", hide=True, count=40)
    submission = hostile(materialize, "unlinked-hidden", body, "deploy_backend_v1.sh")
    run = grade_cli(submission, "container", tmp_path / "results.json")
    check_clean(run, "deleted files kept open by a non-dumpable process (container)")
    text = outputs(run)
    assert "hid its open files from the grader" in text or "wrote more than 128 MiB" in text
    assert max((int(n) for n in re.findall(r"HELD (\d+) MiB", text)), default=0) < 1200


# --- 5. each gcloud call is bounded ---------------------------------------------------------


def test_a_gcloud_call_over_its_limits_fails_and_the_next_one_works(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    steps = "".join(f"- name: ubuntu\n  args: [echo, '{i:06d}']\n" for i in range(12000))
    (ws / "cloudbuild.yaml").write_text("steps:\n" + steps)  # 0.5 MB, many objects
    limits = CallLimits(memory=16 * 2**20, timeout=5)
    cloud = FakeCloud(tmp_path / "state", "hw5-20261234", limits)
    cloud.workspace = ws
    build = ["builds", "submit", "--region=us-central1", "--config=cloudbuild.yaml", "."]
    answer = cloud.run_bounded(build, ws, {})
    # short of memory, the call fails at once (MemoryError) or thrashes until a bound stops it
    assert answer["code"] == 1 and "the grader stopped this call" in answer["stderr"], answer
    cloud.limits = CallLimits(timeout=0.001)
    answer = cloud.run_bounded(build, ws, {})
    assert "it took more than 0.001 s" in answer["stderr"]
    cloud.limits = CallLimits()
    answer = cloud.run_bounded(["config", "get-value", "project"], Path("/"), {})
    assert answer == {"stdout": "hw5-20261234\n", "stderr": "", "code": 0}  # no lock held
    assert 0 < cloud.peak_call_kib < PEAK_LIMIT_MIB * 1024


def test_a_grading_whose_gcloud_calls_all_time_out_still_ends_with_results(materialize):
    limits = Limits(timeout=TEST_LIMITS.timeout, gcloud_timeout=0.001)
    box = sandbox_for("bwrap", limits)
    grading = grade(materialize("good"), Options(sandbox="bwrap", limits=limits), sandbox=box)
    assert "it took more than 0.001 s" in result(grading, "Q1.10").output
    assert {"Q1.10", "Q3.1"} <= set(lost_points(grading))  # no build, no deployment
    assert report.results_json(grading)["tests"]
