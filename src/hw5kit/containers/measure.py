"""Question 2, measured with the real builder: what a rebuild costs, and how big the images are.

For each service (backend_v1 and frontend_v1 by default) the builder runs these rebuilds, in a
copy of the build context (the repository is never modified), with images tagged ``:measure``
so the regular ``:local`` images stay as they are:

1. ``no change``: everything is cached;
2. ``app code change``: a line added to ``apps/<service>/app.py``; the base is untouched;
3. ``shared package change``: a line added to ``src/hw5kit/__init__.py`` (the service layers
   from the shared package on are redone, the weights stage too);
4. ``base change``: a line added to ``requirements/lock.txt``, which the base installs from: the
   base is redone (every package installed again), then every service layer.

Each edit is a comment with a fresh random token, so no earlier cache can answer it. The figures
(seconds per step, image sizes, the machine's load average before and after each build, since
the machine may be shared) are printed and written to ``reports/containers/rebuild.md`` and
``rebuild.json``.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..paths import ROOT
from . import pybase
from .engine import Engine
from .images import Builder, profile_of

CONTEXT_PARTS = ("apps", "src/hw5kit", "requirements", ".dockerignore")
DEFAULT_SERVICES = ("backend_v1", "frontend_v1")


@dataclass
class Run:
    """One timed rebuild: the base (skipped or rebuilt), then the service."""

    base_seconds: float
    base_rebuilt: bool
    service_seconds: float
    steps: int  # service Dockerfile steps (both stages)
    cached: int  # of which the layer cache answered
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]

    @property
    def total(self) -> float:
        return round(self.base_seconds + self.service_seconds, 1)


@dataclass
class Step:
    """A scenario (a one-line change to ``changed``) rebuilt ``len(runs)`` times."""

    service: str
    scenario: str
    changed: str | None
    runs: list[Run] = field(default_factory=list)

    @property
    def total(self) -> float:
        return round(statistics.median(r.total for r in self.runs), 1)

    def median(self, attr: str) -> float:
        return round(statistics.median(getattr(r, attr) for r in self.runs), 1)


@dataclass
class Report:
    started: str
    machine: dict
    engine: str
    torch: str
    repeat: int = 1
    python_image: str = ""
    steps: list[Step] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    bases: dict[str, str] = field(default_factory=dict)  # image -> the image it is built on
    finished: str = ""

    @classmethod
    def from_json(cls, data: dict) -> Report:
        """The report written by ``write`` (``rebuild.json``), to render it again."""
        fields = {k: v for k, v in data.items() if k != "steps"}
        steps = []
        for raw in data.get("steps", []):
            runs = []
            for r in raw["runs"]:
                values = {k: v for k, v in r.items() if k != "total_seconds"}
                values["load_before"] = tuple(values["load_before"])
                values["load_after"] = tuple(values["load_after"])
                runs.append(Run(**values))
            steps.append(Step(raw["service"], raw["scenario"], raw["changed"], runs))
        return cls(**fields, steps=steps)

    def to_json(self) -> dict:
        data = asdict(self)
        for step, raw in zip(self.steps, data["steps"], strict=True):
            raw["median_total_seconds"] = step.total
            for run, raw_run in zip(step.runs, raw["runs"], strict=True):
                raw_run["total_seconds"] = run.total
        return data


def copy_context(root: Path, dest: Path) -> Path:
    """Copy what the images are built from (Dockerfiles, .dockerignore, their inputs)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for path in root.glob("Dockerfile.*"):
        shutil.copy2(path, dest / path.name)
    for part in CONTEXT_PARTS:
        src = root / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=ignore)
        elif src.exists():
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / part)
    return dest


def touch(path: Path) -> bytes:
    """Append a comment with a random token to ``path``; return the original bytes."""
    original = path.read_bytes()
    path.write_bytes(original + f"\n# measure {secrets.token_hex(8)}\n".encode())
    return original


def _load() -> tuple[float, float, float]:
    return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]


def _timed_build(builder: Builder, service: str, label: str, logs: Path, log) -> Run:
    builder.logs_dir = logs
    logs.mkdir(parents=True, exist_ok=True)
    load_before = _load()
    base = builder.build_base(builder.base_profile(service))
    svc = builder.build(service, base=base.image)
    run = Run(
        round(base.seconds, 1),
        not base.skipped,
        round(svc.seconds, 1),
        svc.steps,
        svc.cached,
        load_before,
        _load(),
    )
    base_note = f"rebuilt in {base.seconds:.1f} s" if run.base_rebuilt else "unchanged"
    log(
        f"{service} / {label}: base {base_note}, service {svc.seconds:.1f} s "
        f"({svc.cached} of {svc.steps} steps cached), total {run.total:.1f} s "
        f"(load {load_before[0]} -> {run.load_after[0]})"
    )
    return run


def measure(
    engine: Engine,
    *,
    services: tuple[str, ...] = DEFAULT_SERVICES,
    root: Path = ROOT,
    single_base: bool = True,
    python_base: str = "auto",
    repeat: int = 1,
    cleanup: bool = True,
    log: Callable[[str], None] = print,
) -> Report:
    """Run the rebuild scenarios for ``services``, each ``repeat`` times; return the report."""
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    workdir = (engine.store or root / ".hw5" / "containers") / "measure"
    context = copy_context(root, workdir / "context")
    builder = Builder(
        engine, root=context, python_base=python_base, tag="measure", logs_dir=workdir / "logs"
    )
    report = Report(
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        machine={
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_at_start": _load(),
        },
        engine=engine.version(),
        torch=builder.torch_source().describe(),
        repeat=repeat,
    )
    for service in services:
        log(f"== {service}: warm-up build (fills the cache; not a figure)")
        builder.logs_dir = workdir / "logs" / f"{service}-warm-up"
        builder.build(service)
        scenarios = [
            ("no change", None),
            ("app code change", f"apps/{service}/app.py"),
            ("shared package change", "src/hw5kit/__init__.py"),
            ("base change", "requirements/lock.txt"),
        ]
        for scenario, changed in scenarios:
            step = Step(service, scenario, changed)
            for n in range(1, repeat + 1):
                path = context / changed if changed else None
                original = touch(path) if path else None
                label = f"{scenario} ({n}/{repeat})"
                slug = f"{service}-{scenario.replace(' ', '-')}-{n}"
                try:
                    step.runs.append(
                        _timed_build(builder, service, label, workdir / "logs" / slug, log)
                    )
                finally:
                    if path and original is not None:
                        path.write_bytes(original)
            report.steps.append(step)
    python_image = builder.python_image()
    for service in services:
        ref = builder.image_ref(service)
        report.sizes[ref] = engine.image_size(ref)
        report.bases[ref] = builder.base_ref(builder.base_profile(service))
    for profile in sorted({profile_of(s) for s in services}):
        ref = builder.base_ref(profile)
        report.sizes[ref] = engine.image_size(ref)
        report.bases[ref] = python_image
    report.sizes[python_image] = engine.image_size(python_image)
    report.python_image = (
        f"{python_image}, made locally with debootstrap (no image registry reachable)"
        if engine.image_label(python_image, pybase.MADE_LABEL)
        else python_image
    )
    if single_base:
        log("== the course's single base (torch and Streamlit in one image), for its size")
        single = builder.build_base("all")
        report.sizes[single.image] = single.size
        report.bases[single.image] = python_image
    if cleanup:
        refs = [builder.image_ref(s) for s in services]
        refs += [builder.base_ref(p) for p in ("all", "backend", "frontend")]
        for ref in refs:
            engine.remove_image(ref)
        engine.call(["image", "prune", "-f"], check=False, timeout=600)
        log("removed the :measure images and the layers only they used")
    report.finished = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return report


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB" if abs(size) < 10e6 else f"{size / 1e6:,.0f} MB"


def render_markdown(report: Report) -> str:
    runs = "once" if report.repeat == 1 else f"{report.repeat} times (median shown, then range)"
    lines = [
        "# Container rebuild times and image sizes",
        "",
        "Measured with `python -m hw5kit.containers measure` (hw5kit/containers/measure.py), "
        f"{report.started} to {report.finished or '?'}, on {report.machine['cpus']} CPUs with "
        f"{report.engine}. Python image: {report.python_image or '?'}. Torch source: "
        f"{report.torch}. "
        "Each rebuild follows a one-line change to the "
        "file named (a comment with a fresh random token, in a copy of the build context), "
        f"and is timed {runs}. The base is skipped when its fingerprint is unchanged; the "
        'service build uses the layer cache ("cached": its steps the cache answered). The '
        "machine is shared with other work, so the 1-minute load average before and after "
        "each build is listed.",
        "",
        "| service | rebuild after a change to | base | service | total | steps cached | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in report.steps:
        rebuilt = [r for r in s.runs if r.base_rebuilt]
        base = f"{s.median('base_seconds'):.1f} s (rebuilt)" if rebuilt else "unchanged"
        spread = ""
        if len(s.runs) > 1:
            spread = f" ({min(r.total for r in s.runs):.1f}–{max(r.total for r in s.runs):.1f})"
        cached = f"{s.runs[0].cached} of {s.runs[0].steps}"
        loads = " ".join(f"{r.load_before[0]:g}→{r.load_after[0]:g}" for r in s.runs)
        changed = f"`{s.changed}`" if s.changed else "nothing"
        lines.append(
            f"| {s.service} | {changed} ({s.scenario}) | {base} | "
            f"{s.median('service_seconds'):.1f} s | **{s.total:.1f} s**{spread} | {cached} | "
            f"{loads} |"
        )
    lines += ["", "| image | size | on top of its base |", "|---|---|---|"]
    for ref, size in report.sizes.items():
        base = report.bases.get(ref)
        extra = f"{_mb(size - report.sizes[base])} (`{base}`)" if base in report.sizes else ""
        lines.append(f"| `{ref}` | {_mb(size)} | {extra} |")
    lines += [
        "",
        "Sizes are uncompressed, as the engine reports them; a service image includes its base,",
        "which a registry stores and a node pulls once for every service built on it.",
        "",
    ]
    return "\n".join(lines)


def write(report: Report, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "rebuild.md"
    js = out_dir / "rebuild.json"
    md.write_text(render_markdown(report))
    js.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return md, js
