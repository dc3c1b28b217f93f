"""Real labelled photos that ship inside Python packages, and a loopback server for them.

No download: scikit-image, scikit-learn and matplotlib carry these files as test data. The
``core`` photos are classified correctly by every offline model and are what tests, ``verify``
and the grader check; the others are harder and used for benchmarks and agreement tables.

The core photos also ship inside hw5kit (``assets/photos/``, 1.1 MB, byte-identical copies:
their README gives sources and licences), so that ``verify`` and the grader's live checks run
in the light environment, which has none of those packages.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SHIPPED = Path(__file__).resolve().parent / "assets" / "photos"
CAT_LABELS = frozenset({"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"})


@dataclass(frozen=True)
class Photo:
    name: str
    package: str
    relpath: str
    expected: frozenset[str]
    core: bool = True

    @property
    def path(self) -> Path:
        """The shipped copy for a core photo, else the file in its package."""
        if self.core and (SHIPPED / self.name).is_file():
            return SHIPPED / self.name
        return self.upstream_path

    @property
    def upstream_path(self) -> Path:
        """The file in the package it comes from (scikit-image, scikit-learn, matplotlib)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"photo {self.name} comes from the package {self.package}, which is not "
                f"installed (pip install {PACKAGES[self.package]})"
            )
        return Path(next(iter(spec.submodule_search_locations))) / self.relpath

    def matches(self, label: str) -> bool:
        return label in self.expected


PACKAGES = {"skimage": "scikit-image", "sklearn": "scikit-learn", "matplotlib": "matplotlib"}

PHOTOS: dict[str, Photo] = {
    p.name: p
    for p in (
        Photo("chelsea.png", "skimage", "data/chelsea.png", CAT_LABELS),
        Photo("coffee.png", "skimage", "data/coffee.png", frozenset({"espresso"})),
        Photo("china.jpg", "sklearn", "datasets/images/china.jpg", frozenset({"palace"})),
        Photo("camera.png", "skimage", "data/camera.png", frozenset({"tripod"})),
        Photo(
            "rocket.jpg",
            "skimage",
            "data/rocket.jpg",
            frozenset({"missile", "projectile", "space shuttle"}),
            core=False,
        ),
        Photo(
            "motorcycle_left.png",
            "skimage",
            "data/motorcycle_left.png",
            frozenset({"moped", "motor scooter"}),
            core=False,
        ),
        Photo(
            "flower.jpg", "sklearn", "datasets/images/flower.jpg", frozenset({"daisy"}), core=False
        ),
        Photo(
            "grace_hopper.jpg",
            "matplotlib",
            "mpl-data/sample_data/grace_hopper.jpg",
            frozenset({"military uniform"}),
            core=False,
        ),
        Photo("astronaut.png", "skimage", "data/astronaut.png", frozenset(), core=False),
    )
}
CORE_PHOTOS = tuple(name for name, photo in PHOTOS.items() if photo.core)


def photo(name: str) -> Photo:
    try:
        return PHOTOS[name]
    except KeyError:
        raise KeyError(f"unknown photo {name!r}; known: {', '.join(PHOTOS)}") from None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def server_class(host: str) -> type[http.server.ThreadingHTTPServer]:
    """ThreadingHTTPServer for an IPv4 or IPv6 listening address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return type("Server", (http.server.ThreadingHTTPServer,), {"address_family": family})


@contextlib.contextmanager
def serve_directory(directory: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``directory`` over HTTP on a free loopback port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = server_class(host)((host, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="photo-server", daemon=True)
    thread.start()
    try:
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def serve_photos(workdir: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Copy every available photo into ``workdir`` and serve it; yields the base URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    for p in PHOTOS.values():
        with contextlib.suppress(FileNotFoundError):
            target = workdir / p.name
            if not target.exists():
                target.write_bytes(p.path.read_bytes())
    with serve_directory(workdir, host) as base:
        yield base
