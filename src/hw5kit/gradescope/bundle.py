"""Building ``autograder.zip``, the autograder as Gradescope takes it.

Gradescope wants a zip with ``setup.sh`` and ``run_autograder`` at its root (not inside a
folder); it unzips it into ``/autograder/source``, runs ``setup.sh`` once when it builds the
image and ``run_autograder`` for each submission
(https://gradescope-autograders.readthedocs.io/en/latest/specs/). The bundle holds:

=====================  ===================================================================
``setup.sh``           installs Python 3.11, bubblewrap and the kit (``files/setup.sh``)
``run_autograder``     grades one submission (``files/run_autograder``, then ``runner.py``)
``autograder.yaml``    the staff's options (``config.py``), copied with its comments
``report_failure.py``  stdlib-only fallback that writes a results.json saying what failed
``requirements.txt``   every wheel pinned by version and sha256 (``pip --require-hashes``)
``wheels/``            the light environment's wheels, hw5kit's own included: the grader,
                       its rubric and the photos the live checks send ship inside it
``bundle.json``        what was built: hw5kit's version, the commit, the config, checksums
``README.md``          a note for staff (``files/README.md``)
=====================  ===================================================================

The zip is reproducible: entries sorted, fixed timestamps, modes 0755 for the two scripts and
0644 otherwise; the same sources and wheels give the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import __version__, devenv
from ..paths import ROOT
from . import config as config_mod

FILES = Path(__file__).resolve().parent / "files"
FAILURE = Path(__file__).resolve().parent / "failure.py"
EXECUTABLE = ("setup.sh", "run_autograder")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date
# name-version(-build)?-pythontag-abitag-platform.whl (PEP 427)
WHEEL_RE = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)
PYTHON_TAGS = ("py3", "py2.py3", "cp311", "abi3")


class BundleError(RuntimeError):
    """The bundle cannot be built; the message says why."""


@dataclass
class Bundle:
    path: Path
    size: int
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    wheels: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"{self.path}: {self.size / 2**20:.1f} MiB, {len(self.files)} files, "
            f"{len(self.wheels)} wheels ({', '.join(w.split('-')[0] for w in self.wheels)})"
        )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _commit(root: Path) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        if done.returncode == 0:
            return done.stdout.strip()
    return None


def _commit_time(root: Path) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "log", "-1", "--format=%ct"], cwd=root, capture_output=True, text=True,
            timeout=10,
        )  # fmt: skip
        if done.returncode == 0 and done.stdout.strip().isdigit():
            return done.stdout.strip()
    return "315532800"  # 1980-01-01, as the zip entries


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_wheels(folder: Path) -> list[Path]:
    """The wheels in ``folder``, refused unless they install on Gradescope's image: Python
    3.11 (or pure Python), Linux x86_64 (or any platform), and exactly one hw5kit."""
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise BundleError(f"{folder}: no wheels")
    problems = []
    for wheel in wheels:
        m = WHEEL_RE.match(wheel.name)
        if not m:
            problems.append(f"{wheel.name}: not a wheel file name")
            continue
        if not any(tag in PYTHON_TAGS for tag in m["py"].split(".") + m["abi"].split(".")):
            problems.append(f"{wheel.name}: not for Python 3.11")
        plats = m["plat"].split(".")
        if not any(
            p == "any" or (p.startswith("manylinux") and p.endswith("x86_64")) for p in plats
        ):
            problems.append(f"{wheel.name}: not for Linux x86_64 (Gradescope's machines)")
    own = [w for w in wheels if w.name.startswith("hw5kit-")]
    if len(own) != 1:
        problems.append(f"expected one hw5kit wheel, found {len(own)}")
    if problems:
        raise BundleError("the wheels cannot go into the bundle: " + "; ".join(problems))
    return wheels


def requirements(wheels: list[Path]) -> str:
    """requirements.txt pinning every wheel by version and hash (pip's hash-checking mode)."""
    lines = [
        "# Every package setup.sh installs: pinned, and checked against these hashes",
        "# (pip install --no-index --find-links wheels --require-hashes -r requirements.txt).",
    ]
    for wheel in wheels:
        m = WHEEL_RE.match(wheel.name)
        assert m is not None
        name = m["name"].replace("_", "-").lower()
        lines.append(f"{name}=={m['version']} --hash=sha256:{_sha256(wheel.read_bytes())}")
    return "\n".join(lines) + "\n"


def collect_wheels(dest: Path, root: Path = ROOT, *, log: Callable[[str], None] = print) -> Path:
    """The light environment's wheels (``devenv.wheels``), hw5kit's built reproducibly."""
    with _environ(SOURCE_DATE_EPOCH=_commit_time(root)):
        return devenv.wheels(dest, root, log=log)


def _write_zip(path: Path, entries: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(entries):
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                mode = 0o755 if name in EXECUTABLE else 0o644
                info.external_attr = (0o100000 | mode) << 16  # a regular file, with its mode
                info.create_system = 3  # Unix, so that unzip honours the mode
                zf.writestr(info, entries[name])
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build(
    out: Path,
    *,
    config_path: Path | None = None,
    root: Path = ROOT,
    wheels_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> Bundle:
    """Write the bundle to ``out``; ``wheels_dir`` reuses wheels collected before."""
    config_path = Path(config_path or config_mod.DEFAULT)
    try:
        config = config_mod.load(config_path)
    except config_mod.ConfigError as exc:
        raise BundleError(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="hw5-bundle-") as tmp:
        if wheels_dir is None:
            wheels_dir = collect_wheels(Path(tmp) / "wheels", root, log=log)
        wheels = check_wheels(wheels_dir)
        entries: dict[str, bytes] = {
            name: (FILES / name).read_bytes()
            for name in ("setup.sh", "run_autograder", "README.md")
        }
        entries["autograder.yaml"] = config_path.read_bytes()
        entries["report_failure.py"] = FAILURE.read_bytes()
        entries["requirements.txt"] = requirements(wheels).encode()
        for wheel in wheels:
            entries[f"wheels/{wheel.name}"] = wheel.read_bytes()
        manifest = {
            "hw5kit": __version__,
            "commit": _commit(root),
            "python": "3.11",
            "config": asdict(config),
            "files": {name: _sha256(data) for name, data in sorted(entries.items())},
        }
        entries["bundle.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
        _write_zip(Path(out), entries)
    bundle = Bundle(
        Path(out),
        Path(out).stat().st_size,
        {name: _sha256(data) for name, data in entries.items()},
        [w.name for w in wheels],
    )
    log(f"bundle: {bundle.describe()}")
    return bundle


def extract(bundle: Path, dest: Path) -> Path:
    """Unzip ``bundle`` into ``dest`` as Gradescope does (modes kept); refuse entries that
    would land outside ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(bundle) as zf:
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise BundleError(f"{bundle}: entry {info.filename!r} leads outside")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(target, mode or 0o644)
    return dest
