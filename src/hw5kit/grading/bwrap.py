"""The bubblewrap command line of the ``bwrap`` sandbox: new user, PID, network, IPC and UTS
namespaces, a read-only view of ``/usr`` and a few files of ``/etc`` only, a private
size-limited ``/tmp`` and ``/dev/shm``, read-only ``/``, the workspace the only writable folder
on disk, the gcloud relay's client and socket, and any real gcloud hidden behind the relay.

The private ``/tmp`` and ``/dev/shm`` are tmpfs mounts bubblewrap makes of ``--size`` bytes.
``--size`` came with bubblewrap 0.7.0 (containers/bubblewrap#509, merged October 2022); an older
bubblewrap (Ubuntu 22.04, Gradescope's default image, ships 0.6.1) stops at "Unknown option
--size", and a set-uid one refuses it too ("The --size option is not permitted in setuid
mode"). With those, ``/tmp`` and ``/dev/shm`` are two folders of the run's own bound in their
place (``private``), which the grader bounds itself (``sandbox.py``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .limits import Limits
from .runas import Identity

# Paths inside bubblewrap's own private tmpfs, not the host's /tmp.
SANDBOX_TMP = "/tmp"  # noqa: S108
SANDBOX_HOME = "/tmp/home"  # noqa: S108
SANDBOX_SHM = "/dev/shm"  # noqa: S108
# /etc entries a shell and python3 need; everything else in /etc stays invisible.
ETC_ALLOWED = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "hosts",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "mime.types",
    "os-release",
    "debian_version",
    "python3",
    "python3.11",
    "python3.12",
    "profile",
    "bash.bashrc",
    "inputrc",
    "terminfo",
)
TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
SANDBOX_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
# what the kernel or a container says when it refuses bubblewrap the namespaces it needs
# (seccomp: "Creating new namespace failed: Operation not permitted"; a kernel setting: "No
# permissions to creating new namespace"; AppArmor: "setting up uid map: Permission denied")
USERNS_REFUSED = ("namespace", "operation not permitted", "permission denied", "uid map")


def lacks_size(error: str) -> bool:
    """Whether bubblewrap refused ``--size`` (older than 0.7.0, or set-uid)."""
    return "--size" in error


def version(bwrap: str) -> str:
    """What ``bwrap --version`` says ("bubblewrap 0.6.1"), or why it says nothing."""
    try:
        done = subprocess.run(
            [bwrap, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"no version ({exc})"
    said = (done.stdout or done.stderr).strip().splitlines()
    return said[0][:80] if said else f"no version, exit status {done.returncode}"


def why_it_fails(error: str) -> str:
    """What a failed probe of bubblewrap means for whoever installs the grader."""
    if any(word in error.lower() for word in USERNS_REFUSED):
        return (
            f"bubblewrap is installed, but user namespaces are refused here ({error}): a "
            "container started without them, or a kernel setting; allow them for full isolation"
        )
    return f"bubblewrap is installed but does not run here ({error})"


def command(
    bwrap: str,
    limits: Limits,
    base: Path,
    workspace: Path,
    cmd: list[str],
    bin_dir: Path | None,
    identity: Identity | None,
    private: tuple[Path, Path] | None = None,
) -> list[str]:
    """``cmd`` run by ``bwrap`` in ``workspace`` (under ``base``, where the run's own
    ``/etc/passwd`` and ``/etc/group`` are written), as ``identity`` (None: the grader's uid).
    ``private``: the folders to bind as ``/tmp`` and ``/dev/shm`` (a bubblewrap without
    ``--size``), else tmpfs mounts of ``limits.tmpfs`` bytes."""
    lim = limits
    out = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "hw5-sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for name in TOP_LEVEL_LINKS:
        path = Path("/") / name
        if path.is_symlink():
            out += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            out += ["--ro-bind", str(path), str(path)]
    etc = base / f"etc-{identity.uid if identity else os.getuid()}"
    etc.mkdir(exist_ok=True)
    uid = identity.uid if identity else os.getuid()
    gid = identity.gid if identity else os.getgid()
    (etc / "passwd").write_text(
        f"root:x:0:0:root:/root:/bin/bash\nstudent:x:{uid}:{gid}:student:/tmp/home:/bin/bash\n"
    )
    (etc / "group").write_text(f"root:x:0:\nstudent:x:{gid}:\n")
    for name in ("passwd", "group"):
        (etc / name).chmod(0o644)
    etc.chmod(0o755)
    for name in ETC_ALLOWED:
        out += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    out += ["--ro-bind", str(etc / "passwd"), "/etc/passwd"]
    out += ["--ro-bind", str(etc / "group"), "/etc/group"]
    if private is None:
        shm = ["--size", str(lim.tmpfs), "--tmpfs", SANDBOX_SHM]
        tmp = ["--size", str(lim.tmpfs), "--tmpfs", SANDBOX_TMP]
    else:
        shm = ["--bind", str(private[1]), SANDBOX_SHM]
        tmp = ["--bind", str(private[0]), SANDBOX_TMP]
    out += ["--dev", "/dev", *shm]
    out += ["--remount-ro", "/dev", "--proc", "/proc"]  # /dev only: /dev/shm stays writable
    out += [*tmp, "--dir", SANDBOX_HOME]
    if bin_dir is not None:
        out += ["--ro-bind", str(bin_dir), str(bin_dir)]
        socket_dir = bin_dir.parent / "relay"
        out += ["--ro-bind", str(socket_dir), str(socket_dir)]
        for directory in SANDBOX_PATH:  # hide any real gcloud behind the relay
            real = Path(directory) / "gcloud"
            if real.exists():
                out += ["--ro-bind", str(bin_dir / "gcloud"), str(real)]
    out += ["--bind", str(workspace), str(workspace)]
    out += ["--remount-ro", "/", "--chdir", str(workspace), "--", *cmd]
    return out
