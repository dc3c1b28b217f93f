"""The project's virtual environments, each shared by the nox sessions that need it.

* ``.nox/light`` (a few dozen MB): the kit's core dependencies only (Jinja2, PyYAML, jsonschema,
  requests). Everything that runs no model uses it: ``render``, ``setup``, ``check_prereq``,
  ``grade`` (its live checks too: the photos they send ship inside the package), and
  ``build`` / ``deploy`` / ``verify`` / ``status`` / ``stop`` on the ``gcp`` target, which
  only call gcloud.
* ``.nox/kit`` (about 6 GB): every extra (``hw5kit[all]``: torch and its CUDA libraries from
  PyPI, the models, ONNX Runtime, Flask, Streamlit, the test tools). Where a model runs or is
  converted: the local and container targets' build, deploy and verify, ``tests``, the
  benchmarks.
* ``.nox/docs`` (about 170 MB): the core plus ``hw5kit[docs]`` (MkDocs, Material, the i18n
  plugin), made on demand by ``nox -s docs`` and by the test that builds the site.

``nox -s build`` chooses between them by target: ``--target`` in the session's arguments, else
``target`` in the config (``--config FILE``, else ``deployment.yaml``); see ``profile_for``.
Both are pinned by ``requirements/lock.txt`` (pip constraints) and rebuilt only when it or
``pyproject.toml`` change (a stamp file records their hash). This module uses the standard
library only: the noxfile imports it before anything is installed.

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
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .paths import ROOT

LOCK = Path("requirements") / "lock.txt"
STAMP = ".hw5kit-stamp.json"
CONFIG_NAME = "deployment.yaml"

# Debian packages behind the commands some tests and targets need.
SYSTEM_PACKAGES: dict[str, tuple[str, ...]] = {
    "chromium": ("chromium",),
    "podman": ("podman",),
    "buildah": ("buildah",),
    "runc": ("runc",),
    "debootstrap": ("debootstrap",),
    "bwrap": ("bubblewrap",),  # the grader's sandbox for submitted scripts
    "java": ("default-jre-headless",),  # TorchServe's frontend, a bench peer
}

# What the light environment does not install, and so what no module of a light path may import
# (tests/test_light_env.py checks it in a real light environment).
HEAVY_MODULES = (
    "torch",
    "torchvision",
    "onnx",
    "onnxruntime",
    "efficientnet_lite_pytorch",
    "numpy",
    "PIL",
    "flask",
    "gunicorn",
    "prometheus_client",
    "streamlit",
    "pandas",
    "altair",
    "pytest",
    "skimage",
    "sklearn",
    "matplotlib",
)

# The modules the light sessions run (``python -m``) and what they import when they run.
LIGHT_ENTRY_POINTS = (
    "hw5kit.pipeline.cli",
    "hw5kit.pipeline.targets.gcp",
    "hw5kit.pipeline.setup",
    "hw5kit.pipeline.verify",
    "hw5kit.grading.__main__",
    "hw5kit.grading.live",
    "hw5kit.grading.rubric",
    "hw5kit.gradescope.__main__",
    "hw5kit.gradescope.runner",
    "hw5kit.gradescope.bundle",
    "hw5kit.gcloud_fake.__main__",
    "hw5kit.gcloud_fake.cli",
    "hw5kit.cli",
    "hw5kit.devenv",
    "hw5kit.photos",
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class Profile:
    """One of the two environments: where it lives and what it installs."""

    name: str  # the folder under .nox
    extras: tuple[str, ...]  # hw5kit[...] extras installed on top of the core
    override: str  # the environment variable that moves it elsewhere
    check: str  # Python run after the install; prints a one-line summary
    about: str

    def spec(self, root: Path) -> str:
        return f"{root}[{','.join(self.extras)}]" if self.extras else str(root)


KIT = Profile(
    "kit",
    ("all",),
    "HW5_KIT_ENV",
    "import torch, torchvision.ops, flask, streamlit, jinja2; print('torch', torch.__version__)",
    "torch and the serving stack (about 2 minutes the first time, 5.9 GB)",
)
LIGHT = Profile(
    "light",
    (),
    "HW5_LIGHT_ENV",
    "import importlib, importlib.util\n"
    f"for m in {LIGHT_ENTRY_POINTS!r}: importlib.import_module(m)\n"
    f"heavy = [m for m in {HEAVY_MODULES!r} if importlib.util.find_spec(m)]\n"
    "assert not heavy, f'the light environment has {heavy}'\n"
    "print('no torch')",
    "Jinja2, PyYAML, jsonschema, requests, no torch (seconds, about 40 MB)",
)
DOCS = Profile(
    "docs",
    ("docs",),
    "HW5_DOCS_ENV",
    "from importlib.metadata import version\n"
    "import material, mkdocs, mkdocs_static_i18n, pymdownx\n"
    "print('mkdocs', version('mkdocs'), 'material', version('mkdocs-material'))",
    "MkDocs, Material and the i18n plugin, no torch (about 15 s, 170 MB)",
)
PROFILES = {p.name: p for p in (KIT, LIGHT, DOCS)}

# Sessions that never run a model, and those that do only off the gcp target.
LIGHT_SESSIONS = frozenset({"render", "setup", "check_prereq", "grade", "gradescope"})
TARGET_SESSIONS = frozenset({"build", "deploy", "verify", "status", "stop"})
LIGHT_TARGETS = frozenset({"gcp"})


def env_dir(root: Path = ROOT, profile: Profile = KIT) -> Path:
    """Where an environment lives (``HW5_KIT_ENV`` / ``HW5_LIGHT_ENV`` override ``.nox/NAME``)."""
    return Path(os.environ.get(profile.override) or root / ".nox" / profile.name)


def env_python(root: Path = ROOT, profile: Profile = KIT) -> Path:
    return env_dir(root, profile) / "bin" / "python"


def fingerprint(root: Path = ROOT, profile: Profile = KIT) -> str:
    """A hash of everything that decides the environment's contents."""
    digest = hashlib.sha256()
    for rel in (LOCK, Path("pyproject.toml")):
        path = root / rel
        digest.update(rel.as_posix().encode())
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
    digest.update(sys.version.split()[0].encode())
    digest.update(",".join(profile.extras).encode())
    return digest.hexdigest()


def is_current(root: Path = ROOT, profile: Profile = KIT) -> bool:
    stamp = env_dir(root, profile) / STAMP
    if not env_python(root, profile).exists() or not stamp.exists():
        return False
    try:
        return json.loads(stamp.read_text()).get("fingerprint") == fingerprint(root, profile)
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


def install_command(python: Path, root: Path, profile: Profile) -> list[str]:
    """The pip command that installs the kit (editable) and the profile's extras, pinned."""
    cmd = [str(python), "-m", "pip", "install", "--progress-bar", "on"]
    if (root / LOCK).exists():
        cmd += ["-c", str(root / LOCK)]
    return [*cmd, "-e", profile.spec(root)]


def ensure(
    root: Path = ROOT, *, force: bool = False, log: Log = print, profile: Profile = KIT
) -> Path:
    """Create or update an environment; return its Python interpreter."""
    venv = env_dir(root, profile)
    python = env_python(root, profile)
    if not force and is_current(root, profile):
        return python
    if sys.version_info[:2] != (3, 11):
        log(f"warning: the kit is pinned for Python 3.11; this is {sys.version.split()[0]}")
    if not python.exists():
        log(f"creating the {profile.name} environment in {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log(f"installing the {profile.name} environment's dependencies: {profile.about}")
    subprocess.run(install_command(python, root, profile), check=True, env=pip_environment(venv))
    done = subprocess.run(
        [str(python), "-c", profile.check],
        capture_output=True,
        text=True,
        env=pip_environment(venv),
        cwd=venv,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"the {profile.name} environment does not import cleanly:\n"
            + done.stderr[-2000:]
            + "\nremove it and retry: rm -rf "
            + str(venv)
        )
    (venv / STAMP).write_text(json.dumps({"fingerprint": fingerprint(root, profile)}))
    log(f"environment ready: {done.stdout.strip()} in {venv}")
    return python


# -- which environment a session needs -- #


def _option(args: Sequence[str], name: str) -> str | None:
    """The last value of ``--name VALUE`` / ``--name=VALUE`` in ``args`` (argparse's rule)."""
    value = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


TARGET_LINE = re.compile(r"""^target:\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_.-]*))\s*(?:#.*)?$""")


def config_target(path: Path) -> str | None:
    """``target`` of a deployment config, read without PyYAML (not installed yet when the
    noxfile runs): the top-level ``target:`` line, ``local`` when there is none (the
    pipeline's default), ``None`` when the file cannot be read or the line is not a plain
    scalar (the pipeline reports that; the caller then picks the environment that can run
    every target)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found = [m for m in map(TARGET_LINE.match, text.splitlines()) if m]
    if not found:
        return None if re.search(r"^target\s*:", text, re.MULTILINE) else "local"
    quoted_double, quoted_single, plain = found[-1].groups()
    return next(v for v in (quoted_double, quoted_single, plain) if v is not None) or None


def session_target(posargs: Sequence[str], root: Path = ROOT) -> str | None:
    """The target a pipeline session will run on: ``--target`` in its arguments, else the
    config's (``--config FILE``, else ``--root DIR``'s or ``root``'s ``deployment.yaml``)."""
    target = _option(posargs, "--target")
    if target:
        return target
    config = _option(posargs, "--config")
    if config:
        return config_target(Path(config))
    base = _option(posargs, "--root")
    return config_target((Path(base) if base else root) / CONFIG_NAME)


def profile_for(session: str, posargs: Sequence[str] = (), root: Path = ROOT) -> Profile:
    """The environment a nox session runs in: light where no model runs, docs for the site,
    else the kit."""
    if session == "docs":
        return DOCS
    if session in LIGHT_SESSIONS:
        return LIGHT
    if session in TARGET_SESSIONS and session_target(posargs, root) in LIGHT_TARGETS:
        return LIGHT
    return KIT


def ensure_for(
    session: str, posargs: Sequence[str] = (), root: Path = ROOT, *, log: Log = print
) -> Path:
    """The interpreter of the environment ``session`` needs, created or updated first."""
    return ensure(root, log=log, profile=profile_for(session, posargs, root))


# -- wheels (the Gradescope bundle installs the light environment from them) -- #


def wheels(out: Path, root: Path = ROOT, *, profile: Profile = LIGHT, log: Log = print) -> Path:
    """Download (or build) every wheel of ``profile``, hw5kit's own included, into ``out``.

    ``pip install --no-index --find-links OUT hw5kit`` (plus ``[extras]`` for another profile)
    then installs exactly that environment with no index, as an autograder image build does.
    The wheels are for this machine's Python and platform (3.11, manylinux x86_64 here).
    hw5kit's wheel is built from a clean copy of the package (no stale ``build/`` in the
    checkout, no ``__pycache__``).
    """
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hw5kit-source-") as tmp:
        source = Path(tmp)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, source / name)
        shutil.copytree(
            root / "src" / "hw5kit",
            source / "src" / "hw5kit",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
        )
        cmd = [sys.executable, "-m", "pip", "wheel", "--wheel-dir", str(out)]
        if (root / LOCK).exists():
            cmd += ["-c", str(root / LOCK)]
        cmd.append(profile.spec(source))
        log(f"collecting the {profile.name} environment's wheels into {out}")
        subprocess.run(cmd, check=True, env=pip_environment(source / ".pip"))
    return out


# -- system packages -- #


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

    parser = argparse.ArgumentParser(
        prog="python -m hw5kit.devenv",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ens = sub.add_parser("ensure", help="create or update .nox/kit (or --profile light|docs)")
    ens.add_argument(
        "--force", action="store_true", help="reinstall even if the lock did not change"
    )
    ens.add_argument("--profile", choices=sorted(PROFILES), default=KIT.name)
    which = sub.add_parser("which", help="print the environment a nox session needs (light or kit)")
    which.add_argument("session", help="the nox session, e.g. build")
    which.add_argument("args", nargs=argparse.REMAINDER, help="its arguments (after --)")
    whl = sub.add_parser(
        "wheels", help="collect the light environment's wheels (hw5kit's own included) into OUT"
    )
    whl.add_argument("out", type=Path)
    whl.add_argument("--profile", choices=sorted(PROFILES), default=LIGHT.name)
    sys_p = sub.add_parser("system", help="install missing Debian packages behind commands")
    sys_p.add_argument("commands", nargs="+", choices=sorted(SYSTEM_PACKAGES))
    args = parser.parse_args(argv)
    if args.command == "ensure":
        print(ensure(force=args.force, profile=PROFILES[args.profile]))
        return 0
    if args.command == "which":
        print(profile_for(args.session, args.args).name)
        return 0
    if args.command == "wheels":
        print(wheels(args.out, profile=PROFILES[args.profile]))
        return 0
    return 1 if ensure_system_packages(args.commands) else 0


if __name__ == "__main__":
    raise SystemExit(main())
