"""The project's one heavy virtual environment, shared by every nox session that needs it.

torch is several GB; installing it once per nox session would be slow and wasteful, so the
sessions that need the serving stack (tests, build, deploy, verify, bench, grade) all run in one
environment, ``.nox/kit``, rebuilt only when ``requirements/lock.txt`` or ``pyproject.toml``
change. This module uses the standard library only: the noxfile imports it before anything is
installed.

Why ``PIP_FIND_LINKS`` is overridden during the install: some machines point pip at a folder of
CPU-only torch wheels (``torch-X+cpu``). pip ranks ``X+cpu`` above ``X``, but PyPI's torchvision is
built against PyPI's torch and fails to import next to the ``+cpu`` build ("operator
torchvision::nms does not exist"). The kit therefore takes torch and torchvision from the same
index. Set ``HW5_KEEP_FIND_LINKS=1`` to keep your own find-links.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = Path("requirements") / "lock.txt"
STAMP = ".hw5kit-stamp.json"

# Debian packages behind the commands some tests and targets need.
SYSTEM_PACKAGES: dict[str, tuple[str, ...]] = {
    "chromium": ("chromium",),
    "podman": ("podman",),
    "buildah": ("buildah",),
    "runc": ("runc",),
    "debootstrap": ("debootstrap",),
    "bwrap": ("bubblewrap",),  # the grader's sandbox for submitted scripts
}

Log = Callable[[str], None]


def env_dir(root: Path = ROOT) -> Path:
    """Where the shared environment lives (``HW5_KIT_ENV`` overrides ``.nox/kit``)."""
    return Path(os.environ.get("HW5_KIT_ENV") or root / ".nox" / "kit")


def env_python(root: Path = ROOT) -> Path:
    return env_dir(root) / "bin" / "python"


def fingerprint(root: Path = ROOT) -> str:
    """A hash of everything that decides the environment's contents."""
    digest = hashlib.sha256()
    for rel in (LOCK, Path("pyproject.toml")):
        path = root / rel
        digest.update(rel.as_posix().encode())
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
    digest.update(sys.version.split()[0].encode())
    return digest.hexdigest()


def is_current(root: Path = ROOT) -> bool:
    stamp = env_dir(root) / STAMP
    if not env_python(root).exists() or not stamp.exists():
        return False
    try:
        return json.loads(stamp.read_text()).get("fingerprint") == fingerprint(root)
    except (OSError, ValueError):
        return False


def pip_environment(venv: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    if env.get("HW5_KEEP_FIND_LINKS") != "1":
        empty = venv / ".no-find-links"
        empty.mkdir(parents=True, exist_ok=True)
        env["PIP_FIND_LINKS"] = str(empty)
    env.pop("PYTHONPATH", None)
    return env


def ensure(root: Path = ROOT, *, force: bool = False, log: Log = print) -> Path:
    """Create or update the shared environment; return its Python interpreter."""
    venv = env_dir(root)
    python = env_python(root)
    if not force and is_current(root):
        return python
    if sys.version_info[:2] != (3, 11):
        log(f"warning: the kit is pinned for Python 3.11; this is {sys.version.split()[0]}")
    if not python.exists():
        log(f"creating the shared environment in {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    lock = root / LOCK
    cmd = [str(python), "-m", "pip", "install", "--progress-bar", "on"]
    if lock.exists():
        cmd += ["-c", str(lock)]
    cmd += ["-e", f"{root}[all]"]
    log("installing the kit's dependencies (torch is large: the first time takes a few minutes)")
    subprocess.run(cmd, check=True, env=pip_environment(venv))
    check = "import torch, torchvision.ops, flask, streamlit, jinja2; print(torch.__version__)"
    done = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(
            "the shared environment does not import cleanly:\n"
            + done.stderr[-2000:]
            + "\nremove it and retry: rm -rf "
            + str(venv)
        )
    (venv / STAMP).write_text(json.dumps({"fingerprint": fingerprint(root)}))
    log(f"environment ready: torch {done.stdout.strip()} in {venv}")
    return python


def missing_commands(commands: Iterable[str]) -> list[str]:
    return [c for c in commands if shutil.which(c) is None]


def ensure_system_packages(commands: Iterable[str], *, log: Log = print) -> list[str]:
    """Install the Debian packages behind ``commands`` when they are missing.

    Installs only when running as root on a machine with apt-get; otherwise it says what is
    missing and returns it, and the tests that need it are skipped with that reason (or fail,
    under ``HW5_REQUIRE_ALL=1``, as in CI).
    """
    missing = missing_commands(commands)
    if not missing:
        return []
    packages = sorted({p for c in missing for p in SYSTEM_PACKAGES.get(c, (c,))})
    can_install = shutil.which("apt-get") is not None and os.geteuid() == 0
    if not can_install:
        log(f"missing system packages: {' '.join(packages)} (install them with apt-get as root)")
        return missing
    log(f"installing Debian packages: {' '.join(packages)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        check=True,
        env=env,
    )
    return missing_commands(commands)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hw5kit.devenv", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ensure", help="create or update .nox/kit").add_argument(
        "--force", action="store_true", help="reinstall even if the lock did not change"
    )
    sys_p = sub.add_parser("system", help="install missing Debian packages behind commands")
    sys_p.add_argument("commands", nargs="+", choices=sorted(SYSTEM_PACKAGES))
    args = parser.parse_args(argv)
    if args.command == "ensure":
        print(ensure(force=args.force))
        return 0
    return 1 if ensure_system_packages(args.commands) else 0


if __name__ == "__main__":
    raise SystemExit(main())
