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
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .engine import ROOT, Engine
from .images import Builder, profile_of

CONTEXT_PARTS = ("apps", "src/hw5kit", "requirements", ".dockerignore")
DEFAULT_SERVICES = ("backend_v1", "frontend_v1")


@dataclass
class Step:
    service: str
    scenario: str
    changed: str
    base_seconds: float
    base_rebuilt: bool
    service_seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]

    @property
    def total(self) -> float:
        return self.base_seconds + self.service_seconds


@dataclass
class Report:
    started: str
    machine: dict
    engine: str
    torch: str
    steps: list[Step] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        data = asdict(self)
        for step, raw in zip(self.steps, data["steps"], strict=True):
            raw["total_seconds"] = round(step.total, 1)
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


def _timed_build(builder: Builder, service: str, scenario: str, changed: str, log) -> Step:
    load_before = _load()
    base = builder.build_base(builder.base_profile(service))
    svc = builder.build(service, base=base.image)
    step = Step(
        service,
        scenario,
        changed,
        round(base.seconds, 1),
        not base.skipped,
        round(svc.seconds, 1),
        load_before,
        _load(),
    )
    base_note = f"rebuilt in {base.seconds:.1f} s" if step.base_rebuilt else "unchanged"
    log(
        f"{service} / {scenario}: base {base_note}, service {svc.seconds:.1f} s, "
        f"total {step.total:.1f} s (load {load_before[0]} -> {step.load_after[0]})"
    )
    return step


def measure(
    engine: Engine,
    *,
    services: tuple[str, ...] = DEFAULT_SERVICES,
    root: Path = ROOT,
    single_base: bool = True,
    python_base: str = "auto",
    log: Callable[[str], None] = print,
) -> Report:
    """Run the rebuild scenarios for ``services``; return the report (not yet written)."""
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
    )
    for service in services:
        log(f"== {service}: warm-up build (fills the cache; not a figure)")
        builder.build(service)
        scenarios = [
            ("no change", None, "nothing"),
            ("app code change", context / "apps" / service / "app.py", f"apps/{service}/app.py"),
            (
                "shared package change",
                context / "src" / "hw5kit" / "__init__.py",
                "src/hw5kit/__init__.py",
            ),
            ("base change", context / "requirements" / "lock.txt", "requirements/lock.txt"),
        ]
        for scenario, path, changed in scenarios:
            original = touch(path) if path else None
            try:
                report.steps.append(_timed_build(builder, service, scenario, changed, log))
            finally:
                if path and original is not None:
                    path.write_bytes(original)
    for service in services:
        report.sizes[builder.image_ref(service)] = engine.image_size(builder.image_ref(service))
    for profile in sorted({profile_of(s) for s in services}):
        ref = builder.base_ref(profile)
        report.sizes[ref] = engine.image_size(ref)
    python_image = builder.python_image()
    report.sizes[python_image] = engine.image_size(python_image)
    if single_base:
        log("== the course's single base (torch and Streamlit in one image), for its size")
        single = builder.build_base("all")
        report.sizes[single.image] = single.size
    return report


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


def render_markdown(report: Report) -> str:
    lines = [
        "# Container rebuild times and image sizes",
        "",
        "Measured with `python -m hw5kit.containers measure` (see `hw5kit/containers/measure.py`)"
        f" on {report.started}: {report.machine['cpus']} CPUs, {report.engine}; torch "
        f"{report.torch}. Each rebuild follows a one-line change to the file named (a comment "
        "with a fresh random token, in a copy of the build context); the base is skipped when "
        "its fingerprint is unchanged, the service uses the layer cache. The machine is shared, "
        "so the load average (1 min) before and after each build is listed.",
        "",
        "| service | rebuild after | base | service | total | load before → after |",
        "|---|---|---|---|---|---|",
    ]
    for s in report.steps:
        base = f"{s.base_seconds:.1f} s (rebuilt)" if s.base_rebuilt else "unchanged"
        lines.append(
            f"| {s.service} | {s.scenario} (`{s.changed}`) | {base} | {s.service_seconds:.1f} s "
            f"| **{s.total:.1f} s** | {s.load_before[0]} → {s.load_after[0]} |"
        )
    lines += ["", "| image | size |", "|---|---|"]
    lines += [f"| `{ref}` | {_mb(size)} |" for ref, size in report.sizes.items()]
    lines += [
        "",
        "Sizes are uncompressed, as the engine reports them; a service image includes its base.",
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
