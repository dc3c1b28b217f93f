"""The Python image the base starts FROM, made locally where no image registry is reachable.

``Dockerfile.base`` starts ``FROM python:3.11-slim-bookworm``. With a registry, the engine pulls
it. Without one (this project's machines reach the package registries, not Docker Hub), a
stand-in is made from Debian's own packages: ``debootstrap`` bookworm (``minbase`` plus
python3, python3-venv, ca-certificates) from the machine's apt mirror, imported under the same
name, so the production Dockerfiles build unchanged. The stand-in is Debian's Python 3.11
(``/usr/bin/python3``, ``python`` linked to it); the Dockerfiles install into a virtual
environment, which works the same on both.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from .engine import ContainerError, Engine

PYTHON_IMAGE = "python:3.11-slim-bookworm"
REGISTRY_PROBE = "https://registry-1.docker.io/v2/"
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates")
MODES = ("auto", "pull", "debootstrap")
MADE_LABEL = "hw5kit.python-image"  # set on the stand-in, so reports can say which one was used
SLIM_REMOVES = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale")
# The official image's PATH; the Dockerfiles extend it (ENV PATH=/opt/venv/bin:$PATH).
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def registry_reachable(url: str = REGISTRY_PROBE, timeout: float = 5.0) -> bool:
    """True when Docker Hub's registry API answers at all (401 is an answer)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 - fixed https URL
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 sources first, then sources.list)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        for line in sources.read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1]
    return "http://deb.debian.org/debian"


def debootstrap_image(
    engine: Engine,
    name: str = PYTHON_IMAGE,
    *,
    workdir: Path,
    suite: str = "bookworm",
    mirror: str | None = None,
    packages: tuple[str, ...] = DEBIAN_PACKAGES,
    check_gpg: bool = True,
    sources: str | None = None,
    label: str = "debootstrap",
) -> None:
    """Make a ``suite`` root filesystem (minbase plus ``packages``; bookworm with Python 3.11
    by default) and import it as image ``name``.

    ``mirror`` defaults to this machine's apt mirror; ``sources`` replaces the image's
    ``/etc/apt/sources.list`` (debootstrap writes only ``SUITE main``); ``check_gpg=False`` is
    for a distribution whose archive key this machine lacks (the download is then only as safe
    as its HTTPS); ``label`` is the value of the ``hw5kit.python-image`` label.
    """
    if engine.kind != "podman":
        raise ContainerError("the local Python base is made with podman; docker pulls it")
    if shutil.which("debootstrap") is None:
        raise ContainerError("debootstrap is not installed: apt-get install debootstrap")
    mirror = mirror or apt_mirror()
    rootfs = workdir / "rootfs"
    log_path = workdir / "debootstrap.log"
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.mkdir(parents=True)
    engine.log(f"making {name} with debootstrap from {mirror} (about 1-2 min; log {log_path})")
    try:
        with log_path.open("w") as log:
            done = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    *([] if check_gpg else ["--no-check-gpg"]),
                    "--include=" + ",".join(packages),
                    suite,
                    str(rootfs),
                    mirror,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if done.returncode != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            raise ContainerError(f"debootstrap failed (exit {done.returncode}):\n{tail}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / junk).glob("*"):
                if item.is_file():
                    item.unlink()
        for docs in SLIM_REMOVES:  # as Debian's slim images: no manuals, no translations
            shutil.rmtree(rootfs / docs, ignore_errors=True)
        python = rootfs / "usr" / "bin" / "python"
        if not python.exists():
            python.symlink_to("python3")
        if sources is not None:
            (rootfs / "etc" / "apt" / "sources.list").write_text(sources)
        _import_rootfs(engine, rootfs, name, label)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    engine.log(f"{name} ready ({engine.image_size(name) / 1e6:.0f} MB)")


def _import_rootfs(engine: Engine, rootfs: Path, name: str, label: str = "debootstrap") -> None:
    """``tar -C rootfs -c . | podman import - name`` with the Python image's defaults."""
    tar = subprocess.Popen(
        ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        done = subprocess.run(
            [
                engine.cli,
                "import",
                "--change",
                f"ENV PATH={IMAGE_PATH}",
                "--change",
                "ENV LANG=C.UTF-8",
                "--change",
                f"LABEL {MADE_LABEL}={label}",
                "--change",
                'CMD ["python3"]',
                "-",
                name,
            ],
            stdin=tar.stdout,
            capture_output=True,
            env=engine.environ(),
            timeout=600,
        )
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        tar_code = tar.wait()
    if tar_code != 0 or done.returncode != 0:
        raise ContainerError(
            f"importing the root filesystem as {name} failed (tar exit {tar_code}, import exit "
            f"{done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}"
        )


def ensure_python_image(engine: Engine, name: str = PYTHON_IMAGE, *, mode: str = "auto") -> str:
    """Make sure image ``name`` exists locally; return how (``present``, ``pulled``, ``made``).

    ``mode``: ``auto`` pulls when a registry answers, else makes it with debootstrap;
    ``pull`` only pulls; ``debootstrap`` never touches a registry (what the tests use).
    """
    if mode not in MODES:
        raise ContainerError(f"python base mode must be one of {', '.join(MODES)}, not {mode!r}")
    if engine.image_exists(name):
        return "present"
    if engine.kind == "docker":
        return "pulled-at-build"  # docker build pulls the FROM image itself
    if mode == "pull" or (mode == "auto" and registry_reachable()):
        engine.log(f"pulling {name}")
        engine.call(["pull", f"docker.io/library/{name}"], timeout=900, capture=False)
        return "pulled"
    if mode == "auto":
        engine.log("no image registry answers: making the Python base locally")
    assert engine.store is not None
    debootstrap_image(engine, name, workdir=engine.store / "pybase")
    return "made"
