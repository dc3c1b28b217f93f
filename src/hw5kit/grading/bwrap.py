"""The bubblewrap command line of the ``bwrap`` sandbox: new user, PID, network, IPC and UTS
namespaces, a read-only view of ``/usr`` and a few files of ``/etc`` only, a private
size-limited ``/tmp`` and ``/dev/shm``, read-only ``/``, the workspace the only writable folder
on disk, the gcloud relay's client and socket, and any real gcloud hidden behind the relay.
"""

from __future__ import annotations

import os
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


def command(
    bwrap: str,
    limits: Limits,
    base: Path,
    workspace: Path,
    cmd: list[str],
    bin_dir: Path | None,
    identity: Identity | None,
) -> list[str]:
    """``cmd`` run by ``bwrap`` in ``workspace`` (under ``base``, where the run's own
    ``/etc/passwd`` and ``/etc/group`` are written), as ``identity`` (None: the grader's uid)."""
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
    out += ["--dev", "/dev", "--size", str(lim.tmpfs), "--tmpfs", SANDBOX_SHM]
    out += ["--remount-ro", "/dev", "--proc", "/proc"]
    out += ["--size", str(lim.tmpfs), "--tmpfs", SANDBOX_TMP, "--dir", SANDBOX_HOME]
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
