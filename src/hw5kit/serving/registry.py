"""The registry of loaded models: filled once at start, read-only afterwards.

The course's v2 kept one global ``model`` that ``PUT /model/<id>`` replaced, so two users
changed each other's model. Here every configured model is loaded once; requests look a model up
by name and nothing ever mutates the registry after loading, so concurrent requests for
different models cannot interfere.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence

from .errors import ModelUnavailable, NotReady, ServingError, UnknownModel
from .models import Classifier, get_spec, load_classifier
from .models.weights import weights_path

log = logging.getLogger(__name__)

Loader = Callable[[str], Classifier]


def settings_loader(settings) -> Loader:
    """``load_classifier`` with the runtime, streams and threads the settings ask for."""
    return functools.partial(
        load_classifier,
        runtime=settings.runtime,
        threads=settings.torch_threads,
        streams=settings.streams,
        precision=settings.precision,
    )


class ModelRegistry:
    def __init__(self, names: Sequence[str], *, loader: Loader = load_classifier):
        if not names:
            raise ValueError("a registry needs at least one model")
        self.names: tuple[str, ...] = tuple(names)
        self.specs = {name: get_spec(name) for name in self.names}
        self._loader = loader
        self._models: dict[str, Classifier] = {}
        self._ready = threading.Event()
        self._error: str | None = None
        self._thread: threading.Thread | None = None
        self.load_seconds: float | None = None
        # seconds a request for a model still loading waits for it (0: NotReady at once)
        self.load_wait = 0.0
        self._on_ready: list[Callable[[], None]] = []

    # ---- start-up ------------------------------------------------------------------------
    def preflight(self) -> None:
        """Fail fast, before serving, when a weights file is missing (names file and fix)."""
        for spec in self.specs.values():
            weights_path(spec)

    def load_all(self) -> None:
        start = time.perf_counter()
        loaded: dict[str, Classifier] = {}
        try:
            for name in self.names:
                loaded[name] = self._loader(name)
                log.info(
                    "model loaded",
                    extra={"model": name, "seconds": round(loaded[name].load_seconds, 3)},
                )
        except ModelUnavailable as exc:
            self._error = exc.message
            log.critical("model loading failed: %s", exc.message)
            raise
        except Exception as exc:
            self._error = f"{type(exc).__name__}: {exc}"
            log.exception("model loading failed")
            raise
        self._models = loaded  # one assignment: readers see nothing or everything
        self.load_seconds = time.perf_counter() - start
        self._ready.set()
        for hook in self._on_ready:
            hook()

    def on_ready(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` once every model is loaded (before the next request sees them ready
        when registered before ``start``)."""
        self._on_ready.append(hook)
        if self.ready:
            hook()

    def start(self, *, background: bool = True) -> None:
        """Check weights now; load now (``sync``) or in a thread while /readyz says 503."""
        self.preflight()
        if not background:
            self.load_all()
            return

        def run() -> None:
            try:
                self.load_all()
            except Exception:  # recorded in self._error, reported by /readyz
                return

        self._thread = threading.Thread(target=run, name="model-loader", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    # ---- serving -------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def error(self) -> str | None:
        return self._error

    def check(self, name: str, *, error: type[ServingError] = UnknownModel) -> str:
        """``name`` if this registry serves it, else ``error`` listing what it serves."""
        if name not in self.specs:
            raise error(
                f"unknown model {name!r}; this backend serves {', '.join(self.names)}",
                details={"available": list(self.names)},
            )
        return name

    def get(self, name: str) -> Classifier:
        self.check(name)
        if not self._ready.is_set() and not self._error and self.load_wait > 0:
            self._ready.wait(self.load_wait)  # another worker answered /readyz: we are close
        if not self._ready.is_set():
            if self._error:
                raise NotReady(f"models failed to load: {self._error}")
            raise NotReady("models are still loading; retry shortly")
        return self._models[name]

    def status(self) -> dict:
        return {
            "ready": self.ready,
            "models": {
                name: ("loaded" if name in self._models else "failed" if self._error else "loading")
                for name in self.names
            },
            "error": self._error,
            "load_seconds": round(self.load_seconds, 3) if self.load_seconds else None,
        }
