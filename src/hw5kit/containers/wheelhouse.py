"""A local torch index for offline base builds.

``Dockerfile.base`` installs torch from ``TORCH_INDEX_URL`` (PyTorch's CPU wheel index by
default). Where that index is unreachable but CPU wheels sit in a local folder (``/opt/wheels``
here, or ``HW5_TORCH_WHEELHOUSE``), the base is built against a PEP 503 "simple" index of that
folder. With buildah the index is mounted into the build's ``RUN`` steps at ``/wheelhouse``
(``TORCH_INDEX_URL=file:///wheelhouse/simple``: the same value every time, so the layer cache
holds); with docker, which cannot mount a folder into a build, it is served over HTTP on a free
loopback port for the length of the build (builds use the host network). Only the wheels that
match the lock's versions, this Python (cp311) and Linux x86_64 are offered.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import photos

DEFAULT_WHEELHOUSES = ("/opt/wheels",)
TORCH_INDEX_URL = "https://download.pytorch.org/whl/cpu"
WHEEL_RE = re.compile(
    r"^(?P<name>torch|torchvision)-(?P<version>[^-]+)-cp311-cp311-(?P<platform>[^-]+)\.whl$"
)


@dataclass(frozen=True)
class TorchSource:
    """Where the base build takes torch from: an index URL, or local wheels served as one."""

    index_url: str
    packages: tuple[str, ...]
    wheels: tuple[Path, ...] = ()

    @property
    def local(self) -> bool:
        return bool(self.wheels)

    def describe(self) -> str:
        if self.local:
            return (
                f"{' '.join(self.packages)} from local wheels ({', '.join(map(str, self.wheels))})"
            )
        return f"{' '.join(self.packages)} from {self.index_url}"


def lock_pins(lock: Path) -> dict[str, str]:
    """``{"torch": "2.13.0", ...}`` from a pip lock file (``name==version`` lines)."""
    pins = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def wheelhouses() -> list[Path]:
    configured = os.environ.get("HW5_TORCH_WHEELHOUSE")
    dirs = [configured] if configured else list(DEFAULT_WHEELHOUSES)
    return [Path(d) for d in dirs if d and Path(d).is_dir()]


def find_cpu_wheels(lock: Path, dirs: list[Path] | None = None) -> dict[str, Path]:
    """Local CPU wheels of torch/torchvision at the lock's versions: ``{"torch": path}``."""
    pins = lock_pins(lock)
    found: dict[str, Path] = {}
    for folder in wheelhouses() if dirs is None else dirs:
        for path in sorted(folder.glob("*.whl")):
            m = WHEEL_RE.match(path.name)
            if not m or m["name"] in found:
                continue
            version = m["version"]
            if not version.endswith("+cpu") or "x86_64" not in m["platform"]:
                continue
            if pins.get(m["name"]) and version.split("+")[0] != pins[m["name"]]:
                continue
            found[m["name"]] = path
    return found


def choose_torch_source(lock: Path, *, index_url: str | None = None) -> TorchSource:
    """The default CPU index, unless ``index_url`` says otherwise or local CPU wheels exist.

    ``HW5_TORCH_INDEX_URL`` (or ``index_url``) forces an index. Local wheels are used when the
    folder holds the lock's torch; torchvision is left out when it has no CPU wheel there.
    """
    forced = index_url or os.environ.get("HW5_TORCH_INDEX_URL")
    if forced:
        return TorchSource(forced, ("torch", "torchvision"))
    wheels = find_cpu_wheels(lock)
    if "torch" not in wheels:
        return TorchSource(TORCH_INDEX_URL, ("torch", "torchvision"))
    names = tuple(n for n in ("torch", "torchvision") if n in wheels)
    return TorchSource("", names, tuple(wheels[n] for n in names))


def write_simple_index(wheels: tuple[Path, ...], root: Path) -> Path:
    """A PEP 503 index of ``wheels`` under ``root/simple`` (the wheels are linked, not copied)."""
    simple = root / "simple"
    shutil.rmtree(root, ignore_errors=True)
    simple.mkdir(parents=True)
    names = []
    for wheel in wheels:
        project = wheel.name.split("-", 1)[0].lower()
        names.append(project)
        folder = simple / project
        folder.mkdir()
        target = folder / wheel.name
        try:
            os.link(wheel, target)
        except OSError:  # another file system: a symlink would not resolve inside the build
            shutil.copyfile(wheel, target)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        href = html.escape(f"{wheel.name}#sha256={digest}")
        (folder / "index.html").write_text(
            f'<!DOCTYPE html><html><body><a href="{href}">{html.escape(wheel.name)}</a>'
            "</body></html>\n"
        )
    links = "".join(f'<a href="{n}/">{n}</a>' for n in names)
    (simple / "index.html").write_text(f"<!DOCTYPE html><html><body>{links}</body></html>\n")
    return simple


MOUNT_POINT = "/wheelhouse"


@contextlib.contextmanager
def provide(source: TorchSource, workdir: Path, *, engine: str) -> Iterator[tuple[str, list[str]]]:
    """Yield ``(TORCH_INDEX_URL, extra build options)`` for a base build with ``engine``."""
    if not source.local:
        yield source.index_url, []
        return
    write_simple_index(source.wheels, workdir)
    if engine == "podman":
        yield f"file://{MOUNT_POINT}/simple", ["-v", f"{workdir}:{MOUNT_POINT}:ro"]
        return
    with photos.serve_directory(workdir) as base:
        yield f"{base}/simple", []
