"""Running the bundle the way Gradescope does, in a container built here.

Gradescope builds an image from its base image with the bundle unzipped in
``/autograder/source`` and ``setup.sh`` run once; for each submission it starts a container,
puts the submission in ``/autograder/submission`` and its metadata in
``/autograder/submission_metadata.json``, runs ``/autograder/run_autograder`` as root in
``/autograder`` and reads ``/autograder/results/results.json``
(https://gradescope-autograders.readthedocs.io/en/latest/specs/,
https://gradescope-autograders.readthedocs.io/en/latest/tech/). This module does the same
with the project's container engine (``hw5kit.containers``: docker, or podman/buildah).

Base images (``--base``):

``ubuntu-22.04``
    Gradescope's default base image
    (https://gradescope-autograders.readthedocs.io/en/latest/base_images/), made here with
    debootstrap from Ubuntu's archive over HTTPS (this machine has no Ubuntu archive key, so
    the download is as safe as its TLS), with the sources of Docker's ``ubuntu:22.04``.
``debian-12``
    where Ubuntu's archive is unreachable: the project's Debian 12 Python image
    (``hw5kit.containers.pybase``; its python3 is 3.11).
``auto``
    Ubuntu when its archive answers, else Debian.

User namespaces (``userns``): with them, the container is started with nothing of ``/proc``
masked and no seccomp filter, so bubblewrap can mount its own ``/proc`` and set its hostname
and the grader uses its ``bwrap`` sandbox (Ubuntu 22.04's bubblewrap 0.6.1 lacks ``--size``:
the grader then bounds ``/tmp`` and ``/dev/shm`` itself, ``grading/bwrap.py``); without
them, a seccomp profile refuses every new namespace (``unshare``, namespace flags of
``clone``, ``clone3``), as Docker's default profile does for a container without
``CAP_SYS_ADMIN``, so the grader falls back on its ``user`` sandbox.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..containers import pybase
from ..containers.engine import ContainerError, Engine
from . import bundle as bundle_mod

UBUNTU_ARCHIVE = "https://archive.ubuntu.com/ubuntu"
UBUNTU_PROBE = f"{UBUNTU_ARCHIVE}/dists/jammy/Release"
# /etc/apt/sources.list of Docker's ubuntu:22.04, the image Gradescope's base starts from
UBUNTU_SOURCES = """\
deb http://archive.ubuntu.com/ubuntu/ jammy main restricted universe multiverse
deb http://archive.ubuntu.com/ubuntu/ jammy-updates main restricted universe multiverse
deb http://security.ubuntu.com/ubuntu/ jammy-security main restricted universe multiverse
"""
BASES = ("auto", "ubuntu-22.04", "debian-12")
BASE_IMAGE = "hw5-gradescope-base:ubuntu-22.04"
IMAGE_REPO = "hw5-gradescope"
LABEL = "hw5kit.gradescope"
# Linux namespace flags of clone(2): NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
CLONE_NAMESPACES = 0x7E020000
DEFAULT_SECCOMP = Path("/usr/share/containers/seccomp.json")
CHECK = "/hw5-check"  # the harness's own folder in the container (not Gradescope's)
# Run in the container: the bundle's and the kit's files hashed before and after, then the
# processes left behind (run_autograder must leave none).
HARNESS = f"""
digest() {{
  find /autograder/source /opt/hw5kit /autograder/run_autograder -xdev -type f \\
    -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum
}}
digest > {CHECK}/before
bash -c "$HW5_PREPARE" > {CHECK}/prepare.log 2>&1
start=$(date +%s.%N)
cd /autograder && /autograder/run_autograder > {CHECK}/stdout 2>&1
echo $? > {CHECK}/status
echo "$start $(date +%s.%N)" > {CHECK}/times
sleep 0.5
digest > {CHECK}/after
ps -eo pid=,user=,args= > {CHECK}/ps
"""


# Asked in a child process, like debootstrap's own downloads: a package archive, not a service
PROBE = """
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).close()
except Exception:
    sys.exit(1)
"""


def ubuntu_reachable(timeout: float = 8.0) -> bool:
    """True when Ubuntu's archive answers (its jammy Release file)."""
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", PROBE, UBUNTU_PROBE, str(timeout)],
            capture_output=True,
            timeout=timeout + 10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def base_image(engine: Engine, base: str = "auto") -> tuple[str, str]:
    """``(image, flavor)``: the base image for ``base``, made when missing."""
    if base not in BASES:
        raise ContainerError(f"base must be one of {', '.join(BASES)}, not {base!r}")
    if base == "auto":
        if engine.image_exists(BASE_IMAGE) or ubuntu_reachable():
            base = "ubuntu-22.04"
        else:
            engine.log("Ubuntu's archive does not answer: using the Debian 12 base instead")
            base = "debian-12"
    if base == "debian-12":
        pybase.ensure_python_image(engine, mode="debootstrap")
        return pybase.PYTHON_IMAGE, base
    if not engine.image_exists(BASE_IMAGE):
        if engine.store is None:
            raise ContainerError("the Ubuntu 22.04 base is made with podman (debootstrap)")
        pybase.debootstrap_image(
            engine,
            BASE_IMAGE,
            workdir=engine.store / "gradescope-base",
            suite="jammy",
            mirror=UBUNTU_ARCHIVE,
            packages=("python3", "ca-certificates"),
            check_gpg=False,
            sources=UBUNTU_SOURCES,
            label="ubuntu-22.04",
        )
    return BASE_IMAGE, base


CONTAINERFILE = """\
FROM {base}
COPY source/ /autograder/source/
RUN bash /autograder/source/setup.sh \\
 && cp /autograder/source/run_autograder /autograder/run_autograder \\
 && chmod 0755 /autograder/run_autograder \\
 && mkdir -p /autograder/results /autograder/submission
WORKDIR /autograder
"""


@dataclass
class Image:
    ref: str
    flavor: str
    built: bool  # False when an image of the same bundle and base was there already
    seconds: float


def image_for(engine: Engine, bundle: Path, base: str = "auto") -> Image:
    """The autograder image of ``bundle`` (setup.sh run once), built unless it exists."""
    started = time.monotonic()
    base_ref, flavor = base_image(engine, base)
    digest = hashlib.sha256(Path(bundle).read_bytes()).hexdigest()[:16]
    ref = f"{IMAGE_REPO}:{flavor}-{digest}"
    if engine.image_exists(ref):
        return Image(ref, flavor, False, time.monotonic() - started)
    with tempfile.TemporaryDirectory(prefix="hw5-gradescope-image-") as tmp:
        context = Path(tmp)
        bundle_mod.extract(Path(bundle), context / "source")
        (context / "Containerfile").write_text(CONTAINERFILE.format(base=base_ref))
        cmd = engine.build_command(
            dockerfile=context / "Containerfile",
            tag=ref,
            context=context,
            build_args={},
            labels={LABEL: flavor},
            host_ca=False,  # apt may update ca-certificates; the kit installs offline
        )
        engine.log(f"building {ref}: setup.sh on {flavor} (log below)")
        code = engine.stream(cmd, log_path=Path(tmp) / "build.log")
        if code != 0:
            tail = (Path(tmp) / "build.log").read_text(errors="replace").splitlines()[-30:]
            raise ContainerError(f"building {ref} failed (exit {code}):\n" + "\n".join(tail))
    _remove_older(engine, ref, flavor)
    return Image(ref, flavor, True, time.monotonic() - started)


def _remove_older(engine: Engine, keep: str, flavor: str) -> None:
    """Older autograder images of the same base (an image per bundle would pile up)."""
    out = engine.text(["images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPO], check=False)
    for line in out.splitlines():
        ref = line.strip().removeprefix("localhost/")
        if ref and ref != keep and ref.startswith(f"{IMAGE_REPO}:{flavor}-"):
            engine.remove_image(ref)


def seccomp_without_userns(dest: Path, default: Path = DEFAULT_SECCOMP) -> Path:
    """The engine's default seccomp profile, refusing every new namespace."""
    try:
        profile = json.loads(default.read_text())
    except (OSError, ValueError) as exc:
        raise ContainerError(f"cannot read the default seccomp profile {default}: {exc}") from None
    blocked = {"unshare", "clone", "clone3"}
    for rule in profile.get("syscalls", []):
        if "names" in rule:
            rule["names"] = [n for n in rule["names"] if n not in blocked]
    masked = {"index": 0, "value": CLONE_NAMESPACES, "op": "SCMP_CMP_MASKED_EQ"}
    profile["syscalls"] += [
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [{**masked, "valueTwo": 0}]},
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "args": [{**masked, "valueTwo": CLONE_NAMESPACES}],
        },
        {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        # glibc falls back on clone when clone3 is missing (ENOSYS), as under Docker's profile
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    ]
    dest.write_text(json.dumps(profile))
    return dest


@dataclass
class Run:
    """One submission graded in a fresh container."""

    results: dict[str, Any] | None
    problem: str | None  # why results.json is missing or unreadable
    stdout: str
    status: int | None  # run_autograder's exit status
    seconds: float  # run_autograder alone
    total_seconds: float  # the container's start and stop included
    source_changed: bool
    leftovers: list[str] = field(default_factory=list)
    prepare_log: str = ""


def metadata(sid: str | None, *, name: str = "Student User", users: int = 1) -> dict[str, Any]:
    """A submission_metadata.json in Gradescope's documented layout
    (https://gradescope-autograders.readthedocs.io/en/latest/submission_metadata/), plus the
    roster's ``sid`` that real files carry (``None``: the roster has none)."""
    people = []
    for n in range(users):
        person: dict[str, Any] = {
            "email": f"student{n}@example.com",
            "id": 1234 + n,
            "name": name if n == 0 else f"{name} {n + 1}",
        }
        if sid is not None:
            person["sid"] = sid if n == 0 else f"{sid}{n}"
        people.append(person)
    return {
        "id": 123456,
        "created_at": "2026-03-01T14:22:32.365935-05:00",
        "assignment": {
            "due_date": "2026-03-15T23:00:00.000000-04:00",
            "group_size": None,
            "group_submission": users > 1,
            "id": 25828,
            "course_id": 1234,
            "late_due_date": None,
            "release_date": "2026-02-20T00:00:00.000000-05:00",
            "title": "HW5",
            "total_points": "100.0",
        },
        "submission_method": "upload",
        "users": people,
        "previous_submissions": [],
    }


def run_submission(
    engine: Engine,
    image: str,
    submission: Path,
    meta: dict[str, Any] | None,
    *,
    userns: bool = True,
    config: Path | None = None,
    prepare: str = "true",
    timeout: float = 900.0,
) -> Run:
    """Grade ``submission`` in a fresh container of ``image`` as Gradescope would.

    ``meta`` is written as the metadata file (``None``: no file); ``config`` replaces the
    bundle's autograder.yaml; ``prepare`` is shell run as root before run_autograder (the
    tests use it to break the installation)."""
    with tempfile.TemporaryDirectory(prefix="hw5-gradescope-run-") as tmp:
        work = Path(tmp)
        sub = work / "submission"
        shutil.copytree(submission, sub, symlinks=True)
        results_dir = work / "results"
        results_dir.mkdir()
        check = work / "check"
        check.mkdir()
        args = ["run", "--rm", "--network", "none", "--label", f"{LABEL}=run"]
        args += ["--security-opt", "unmask=ALL"]
        if userns:  # bubblewrap also sets its hostname, which the default profile refuses
            args += ["--security-opt", "seccomp=unconfined"]
        else:
            profile = seccomp_without_userns(work / "seccomp.json")
            args += ["--security-opt", f"seccomp={profile}"]
        args += ["-v", f"{sub}:/autograder/submission:rw"]
        args += ["-v", f"{results_dir}:/autograder/results:rw", "-v", f"{check}:{CHECK}:rw"]
        if meta is not None:
            (work / "meta").mkdir()
            (work / "meta" / "submission_metadata.json").write_text(json.dumps(meta, indent=2))
            args += [
                "-v",
                f"{work / 'meta' / 'submission_metadata.json'}:"
                "/autograder/submission_metadata.json:rw",
            ]
        if config is not None:
            shutil.copy2(config, work / "autograder.yaml")
            args += ["-v", f"{work / 'autograder.yaml'}:/autograder/source/autograder.yaml:rw"]
        args += ["-e", f"HW5_PREPARE={prepare}", "-w", "/autograder", image, "bash", "-c", HARNESS]
        started = time.monotonic()
        engine.call(args, timeout=timeout, check=False)
        total = time.monotonic() - started

        def read(name: str) -> str:
            path = check / name
            return path.read_text(errors="replace") if path.exists() else ""

        status_text = read("status").strip()
        times = read("times").split()
        seconds = float(times[1]) - float(times[0]) if len(times) == 2 else total
        results: dict[str, Any] | None = None
        problem = None
        results_path = results_dir / "results.json"
        if not results_path.exists():
            problem = "run_autograder left no results.json"
        else:
            try:
                results = json.loads(results_path.read_text())
            except ValueError as exc:
                problem = f"results.json is not JSON: {exc}"
        leftovers = []  # besides the harness (PID 1) and its ps
        for line in read("ps").splitlines():
            pid, _, rest = line.strip().partition(" ")
            args = rest.split(None, 1)[-1] if rest.strip() else ""
            if pid and pid != "1" and not args.startswith("ps "):
                leftovers.append(line.strip())
        return Run(
            results=results,
            problem=problem,
            stdout=read("stdout"),
            status=int(status_text) if status_text.lstrip("-").isdigit() else None,
            seconds=seconds,
            total_seconds=total,
            source_changed=read("before") != read("after") or not read("before"),
            leftovers=leftovers,
            prepare_log=read("prepare.log"),
        )
