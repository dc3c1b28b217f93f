"""Building the images: the base (dependencies only) and one image per service.

Each ``Dockerfile.<service>`` at the repository root is a service (``backend_v1``,
``frontend_v1``, ...); the build context is the repository root, filtered by ``.dockerignore``.
A service is built FROM a base image passed as the build argument ``BASE_IMAGE_URI``, as Cloud
Build does. Locally the bases are split by profile (``base-backend`` with torch for backends,
``base-frontend`` without for frontends) unless ``single_base`` asks for the course's one base
(``base-all``) for every service.

A base is rebuilt only when something it depends on changed: its fingerprint (Dockerfile.base,
.dockerignore, the lock and image requirement files, the build arguments, the Python image and
the torch wheels) is stored as an image label and compared before building. Service builds use
the engine's layer cache, so a code change rebuilds only the layers after the changed files.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..paths import ROOT
from . import pybase, wheelhouse
from .engine import STEP_RE, ContainerError, Engine

FINGERPRINT_LABEL = "hw5kit.base-fingerprint"
SERVICE_LABEL = "hw5kit.service"
PROFILES = ("all", "backend", "frontend")
BASE_INPUTS = (
    "Dockerfile.base",
    ".dockerignore",
    "requirements/lock.txt",
    "requirements/image-backend.txt",
    "requirements/image-frontend.txt",
)
DEFAULT_SERVING_PORT = 8000


def services(root: Path = ROOT) -> list[str]:
    """Services that have a Dockerfile: ``Dockerfile.<service>`` other than the base."""
    names = [p.name.split(".", 1)[1] for p in root.glob("Dockerfile.*")]
    return sorted(n for n in names if n != "base")


def profile_of(service: str) -> str:
    """Which base a service needs: ``frontend`` for Streamlit services, else ``backend``."""
    return "frontend" if service.startswith("frontend") else "backend"


def dockerfile(service: str, root: Path = ROOT) -> Path:
    path = root / f"Dockerfile.{service}"
    if not path.is_file():
        known = ", ".join(["base", *services(root)])
        raise ContainerError(f"no Dockerfile for {service!r} ({path} is missing); known: {known}")
    return path


@dataclass
class Built:
    """One image build: what was built, from which base, how long it took, whether skipped."""

    service: str
    image: str
    seconds: float
    skipped: bool = False
    base: str | None = None
    size: int = 0
    build_args: dict[str, str] = field(default_factory=dict)
    steps: int = 0  # Dockerfile steps the builder went through
    cached: int = 0  # of which the layer cache answered

    def summary(self) -> str:
        how = "up to date, not rebuilt" if self.skipped else f"built in {self.seconds:.1f} s"
        return f"{self.service}: {self.image} ({how}, {self.size / 1e6:.0f} MB)"


@dataclass
class Builder:
    """Builds the base and service images with ``engine`` from the repository at ``root``."""

    engine: Engine
    root: Path = ROOT
    single_base: bool = False
    python_base: str = "auto"
    prefix: str = "hw5-"
    tag: str = "local"
    serving_port: int = DEFAULT_SERVING_PORT
    torch_index_url: str | None = None
    logs_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.logs_dir is None:
            base = self.engine.store or self.root / ".hw5" / "containers"
            self.logs_dir = base / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)

    # -- names ---------------------------------------------------------------------------------

    def image_ref(self, service: str) -> str:
        return f"{self.prefix}{service}:{self.tag}"

    def base_profile(self, service: str) -> str:
        return "all" if self.single_base else profile_of(service)

    def base_ref(self, profile: str) -> str:
        return self.image_ref(f"base-{profile}")

    # -- the base ------------------------------------------------------------------------------

    def torch_source(self) -> wheelhouse.TorchSource:
        return wheelhouse.choose_torch_source(
            self.root / "requirements" / "lock.txt", index_url=self.torch_index_url
        )

    def python_image(self) -> str:
        """The Python image Dockerfile.base starts FROM (its PYTHON_IMAGE default)."""
        for line in (self.root / "Dockerfile.base").read_text().splitlines():
            if line.startswith("ARG PYTHON_IMAGE="):
                return line.split("=", 1)[1].strip()
        return pybase.PYTHON_IMAGE

    def base_fingerprint(self, profile: str, source: wheelhouse.TorchSource) -> str:
        digest = hashlib.sha256()
        for rel in BASE_INPUTS:
            path = self.root / rel
            digest.update(rel.encode() + b"\0")
            digest.update(path.read_bytes() if path.exists() else b"<missing>")
        python_image = self.python_image()
        python_id = (
            self.engine.image_id(python_image) if self.engine.image_exists(python_image) else "-"
        )
        inputs = {
            "profile": profile,
            "engine": self.engine.kind,
            "python_image": f"{python_image}@{python_id}",
            "torch_packages": source.packages,
            "torch_index": source.index_url,
            "torch_wheels": [(w.name, w.stat().st_size) for w in source.wheels],
        }
        digest.update(json.dumps(inputs, sort_keys=True).encode())
        return digest.hexdigest()[:32]

    def build_base(self, profile: str, *, no_cache: bool = False, force: bool = False) -> Built:
        """Build ``base-<profile>`` unless an image with the same fingerprint already exists."""
        if profile not in PROFILES:
            raise ContainerError(f"base profile must be one of {', '.join(PROFILES)}: {profile!r}")
        ref = self.base_ref(profile)
        how = pybase.ensure_python_image(self.engine, self.python_image(), mode=self.python_base)
        source = self.torch_source()
        fingerprint = self.base_fingerprint(profile, source)
        if (
            not (no_cache or force)
            and self.engine.image_label(ref, FINGERPRINT_LABEL) == fingerprint
        ):
            self.engine.log(f"base {ref} is up to date (nothing it depends on changed)")
            return Built(f"base-{profile}", ref, 0.0, True, size=self.engine.image_size(ref))
        self.engine.log(
            f"building base {ref} (profile {profile}; Python image {how}; "
            f"{source.describe() if profile != 'frontend' else 'no torch'})"
        )
        if source.local and "torchvision" not in source.packages and profile != "frontend":
            self.engine.log(
                "  torchvision left out: the local wheelhouse has no CPU build of it (the "
                "EfficientNet-Lite models need only torch; torchvision models need the default "
                "index)"
            )
        assert self.engine.store is not None or self.engine.kind == "docker"
        workdir = (self.engine.store or self.root / ".hw5" / "containers") / "wheelhouse"
        with wheelhouse.provide(source, workdir, engine=self.engine.kind) as (index_url, extra):
            args = {
                "BASE_PROFILE": profile,
                "TORCH_INDEX_URL": index_url,
                "TORCH_PACKAGES": " ".join(source.packages),
            }
            built = self._build(
                f"base-{profile}",
                self.root / "Dockerfile.base",
                ref,
                args,
                {FINGERPRINT_LABEL: fingerprint},
                no_cache=no_cache,
                extra=extra,
            )
        return built

    # -- services ------------------------------------------------------------------------------

    def build(
        self,
        service: str,
        *,
        no_cache: bool = False,
        build_args: Mapping[str, str] | None = None,
        base: str | None = None,
        dockerfile_of: str | None = None,
    ) -> Built:
        """Build ``service`` (its base first, unless ``base`` names an existing image) from
        ``Dockerfile.<dockerfile_of>`` (default: its own; a v3 model's backend
        ``backend_v3_<model>`` is built from ``Dockerfile.backend_v3`` with ``MODEL_NAME``)."""
        if service == "base" or service.startswith("base-"):
            return self.build_base(service.partition("-")[2] or "all", no_cache=no_cache)
        path = dockerfile(dockerfile_of or service, self.root)
        if base is None:
            base = self.build_base(self.base_profile(service)).image
        elif not self.engine.image_exists(base):
            raise ContainerError(f"base image {base} does not exist: build it first")
        args = {"BASE_IMAGE_URI": base, "SERVING_PORT": str(self.serving_port)}
        args.update(build_args or {})
        built = self._build(
            service,
            path,
            self.image_ref(service),
            args,
            {SERVICE_LABEL: service},
            no_cache=no_cache,
        )
        built.base = base
        return built

    def _build(
        self,
        name: str,
        path: Path,
        ref: str,
        build_args: Mapping[str, str],
        labels: Mapping[str, str],
        *,
        no_cache: bool,
        extra: list[str] | tuple[str, ...] = (),
    ) -> Built:
        cmd = self.engine.build_command(
            dockerfile=path,
            tag=ref,
            context=self.root,
            build_args=build_args,
            labels=labels,
            no_cache=no_cache,
            extra=extra,
        )
        assert self.logs_dir is not None
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / f"build-{name}.log"
        self.engine.log(f"building {ref} from {path.name} (log {log_path})")
        start = time.monotonic()
        code = self.engine.stream(cmd, log_path=log_path)
        seconds = time.monotonic() - start
        if code != 0:
            raise ContainerError(
                f"building {ref} from {path.name} failed (exit {code}) after {seconds:.0f} s; "
                f"the build log is {log_path}"
            )
        size = self.engine.image_size(ref)
        steps, cached = step_counts(log_path.read_text(errors="replace"))
        self.engine.log(
            f"{ref} built in {seconds:.1f} s ({size / 1e6:.0f} MB; {cached} of {steps} steps "
            "from the layer cache)"
        )
        return Built(
            name,
            ref,
            seconds,
            False,
            size=size,
            build_args=dict(build_args),
            steps=steps,
            cached=cached,
        )


def step_counts(log: str) -> tuple[int, int]:
    """(steps, steps the layer cache answered) in a buildah or docker build log, FROM aside."""
    # FROM only names the starting image: there is nothing to cache or to build
    steps = sum(1 for line in log.splitlines() if STEP_RE.match(line) and " FROM " not in line)
    cached = sum(
        1 for line in log.splitlines() if "Using cache" in line or line.endswith(" CACHED")
    )
    return steps, cached
