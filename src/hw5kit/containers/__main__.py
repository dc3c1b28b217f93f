"""python -m hw5kit.containers: build, run, smoke-test and measure the service images."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ..paths import ROOT
from . import measure as measure_mod
from . import pybase
from .engine import ContainerError, detect, say
from .images import Builder, profile_of, services
from .run import Container, leftover, remove_leftovers, run, up

EPILOG = """\
examples:
  python -m hw5kit.containers build backend_v1 frontend_v1   # base images first, then these
  python -m hw5kit.containers up v1          # build and run backend_v1 + frontend_v1, wired
  python -m hw5kit.containers smoke          # build, run and check backend_v1 and frontend_v1
  python -m hw5kit.containers measure        # rebuild times and sizes -> reports/containers/
  python -m hw5kit.containers clean          # remove the containers this tool started

environment: HW5_CONTAINER_ENGINE (docker|podman), HW5_CONTAINER_STORE (podman storage,
default .hw5/containers), HW5_TORCH_WHEELHOUSE (local torch CPU wheels, default /opt/wheels),
HW5_TORCH_INDEX_URL (force a torch index for the base)."""


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise ContainerError(f"{what} must look like KEY=VALUE, got {value!r}")
        out[key] = val
    return out


def _service_list(names: list[str]) -> list[str]:
    known = services()
    if not names or names == ["all"]:
        return known if names == ["all"] else ["backend_v1", "frontend_v1"]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ContainerError(
            f"no Dockerfile for {', '.join(unknown)}; services: {', '.join(known)} (or all)"
        )
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hw5kit.containers",
        description=(
            "Build the images from Dockerfile.base and Dockerfile.<service> (docker when a "
            "daemon answers, else podman/buildah), run them on the host network, smoke-test "
            "them and measure rebuild times."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--engine", choices=("docker", "podman"), help="default: detect")
    p.add_argument("--store", type=Path, help="podman storage folder (default .hw5/containers)")
    p.add_argument(
        "--python-base",
        choices=pybase.MODES,
        default="auto",
        help="how to get the Python image the base starts FROM when missing: pull if a "
        "registry answers else debootstrap (auto), or force one (default: auto)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="show build steps, not their output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("engine", help="show the engine, its storage and where torch comes from")

    b = sub.add_parser("base", help="build the base image(s) (skipped when up to date)")
    b.add_argument("profiles", nargs="*", choices=("all", "backend", "frontend"), default=[])
    b.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    b.add_argument("--force", action="store_true", help="build even when up to date")

    def build_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--single-base",
            action="store_true",
            help="one base (torch + Streamlit) for every service, as the course's Cloud Build",
        )
        sp.add_argument("--build-arg", action="append", metavar="KEY=VALUE", default=[])

    bl = sub.add_parser("build", help="build service images (their base first)")
    bl.add_argument("services", nargs="*", help="services (default backend_v1 frontend_v1; all)")
    bl.add_argument("--no-cache", action="store_true")
    build_options(bl)

    r = sub.add_parser("run", help="start a service container and wait until it is ready")
    r.add_argument("service")
    r.add_argument("--image", help="default: the service's local image (built if missing)")
    r.add_argument("--port", type=int, help="default: a free port")
    r.add_argument("-e", "--env", action="append", metavar="KEY=VALUE", default=[])
    r.add_argument("--network", choices=("host", "none"), default="host")
    r.add_argument("--no-wait", action="store_true", help="return as soon as it is started")
    build_options(r)

    u = sub.add_parser("up", help="build and run a version's backend and frontend, wired")
    u.add_argument("version", choices=("v1", "v2"))
    u.add_argument("-e", "--env", action="append", metavar="KEY=VALUE", default=[])
    build_options(u)

    s = sub.add_parser("stop", help="stop and remove containers (by name, or --all)")
    s.add_argument("names", nargs="*")
    s.add_argument("--all", action="store_true", help="every container this tool started")

    lg = sub.add_parser("logs", help="a container's output")
    lg.add_argument("name")
    lg.add_argument("--tail", type=int)

    sub.add_parser("ps", help="the containers this tool started")
    cl = sub.add_parser("clean", help="remove every container this tool started")
    cl.add_argument(
        "--images",
        action="store_true",
        help="also remove dangling images (old layers no tag uses; frees disk)",
    )
    cl.add_argument(
        "--everything",
        action="store_true",
        help="podman: delete the whole store (every image and layer cache; frees all its disk)",
    )

    sm = sub.add_parser("smoke", help="build, run and check images like a user (see smoke.py)")
    sm.add_argument("services", nargs="*", help="default backend_v1 frontend_v1; all")
    sm.add_argument("--no-build", action="store_true", help="use the existing images")
    sm.add_argument("--no-offline", action="store_true", help="skip the --network none runs")
    build_options(sm)

    sz = sub.add_parser("size", help="image sizes (services or image references)")
    sz.add_argument("images", nargs="*", help="default: every local service and base image")

    m = sub.add_parser("measure", help="time rebuilds (question 2) and record image sizes")
    m.add_argument("--services", nargs="+", default=list(measure_mod.DEFAULT_SERVICES))
    m.add_argument("--out", type=Path, default=ROOT / "reports" / "containers")
    m.add_argument("--no-single-base", action="store_true", help="skip the single base's size")
    m.add_argument("--repeat", type=int, default=1, help="time each rebuild N times (median)")
    m.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite rebuild.md from the existing rebuild.json, measuring nothing",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (ContainerError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "measure" and args.render_only:
        source = args.out / "rebuild.json"
        if not source.exists():
            raise ContainerError(f"{source} does not exist: run measure without --render-only")
        report = measure_mod.Report.from_json(json.loads(source.read_text()))
        md, _ = measure_mod.write(report, args.out)
        say(f"rewritten: {md}")
        return 0
    engine = detect(args.store, prefer=args.engine)
    if args.quiet:
        engine.echo = "steps"

    def builder(**extra) -> Builder:
        return Builder(
            engine,
            python_base=args.python_base,
            single_base=getattr(args, "single_base", False),
            **extra,
        )

    cmd = args.command
    if cmd == "engine":
        b = builder()
        print(f"engine: {engine.version()}")
        print(f"storage: {engine.store or '(docker daemon)'}")
        state = "present" if engine.image_exists(b.python_image()) else "missing"
        print(f"python image: {b.python_image()} ({state})")
        print(f"torch for the base: {b.torch_source().describe()}")
        print(f"services: {', '.join(services())}")
        return 0
    if cmd == "base":
        b = builder()
        for profile in args.profiles or ["backend", "frontend"]:
            print(b.build_base(profile, no_cache=args.no_cache, force=args.force).summary())
        return 0
    if cmd == "build":
        b = builder()
        extra = _pairs(args.build_arg, "--build-arg")
        results = [
            b.build(s, no_cache=args.no_cache, build_args=extra)
            for s in _service_list(args.services)
        ]
        for built in results:
            print(built.summary())
        return 0
    if cmd == "run":
        b = builder()
        image = args.image or b.image_ref(args.service)
        if not args.image and not engine.image_exists(image):
            image = b.build(args.service, build_args=_pairs(args.build_arg, "--build-arg")).image
        box = run(
            args.service,
            image,
            engine=engine,
            env=_pairs(args.env, "-e"),
            port=args.port,
            network=args.network,
        )
        _announce(box, wait=not args.no_wait)
        return 0
    if cmd == "up":
        return _up(args, builder(), engine)
    if cmd == "stop":
        names = leftover(engine) if args.all else args.names
        if not names:
            raise ContainerError("name the containers to stop, or pass --all (see `ps`)")
        for name in names:
            engine.call(["stop", "-t", "10", name], check=False, timeout=60)
            engine.call(["rm", "-f", name], check=False, timeout=60)
            say(f"stopped {name}")
        return 0
    if cmd == "logs":
        tail = ["--tail", str(args.tail)] if args.tail else []
        engine.call(["logs", *tail, args.name], capture=False)
        return 0
    if cmd == "ps":
        engine.call(
            [
                "ps",
                "-a",
                "--filter",
                "label=hw5kit.container",
                "--format",
                "{{.Names}}\t{{.Image}}\t{{.Status}}",
            ],
            capture=False,
        )
        return 0
    if cmd == "clean":
        removed = remove_leftovers(engine)
        say(f"removed {len(removed)} container(s){': ' + ', '.join(removed) if removed else ''}")
        if args.images:
            out = engine.text(["image", "prune", "-f"], timeout=600)
            say(f"removed {len(out.split())} dangling image(s)")
        if args.everything:
            if engine.kind != "podman" or engine.store is None:
                raise ContainerError(
                    "--everything deletes the podman store; with docker use docker"
                )
            engine.call(["system", "reset", "--force"], timeout=900)
            shutil.rmtree(engine.store, ignore_errors=True)
            say(f"deleted the container store {engine.store}")
        return 0
    if cmd == "smoke":
        return _smoke(args, builder(), engine)
    if cmd == "size":
        refs = args.images or _local_images(builder())
        for ref in refs:
            image = ref if ":" in ref else builder().image_ref(ref)
            size = engine.image_size(image) if engine.image_exists(image) else None
            print(f"{image}\t{'not built' if size is None else f'{size / 1e6:.0f} MB'}")
        return 0
    if cmd == "measure":
        report = measure_mod.measure(
            engine,
            services=tuple(_service_list(args.services)),
            single_base=not args.no_single_base,
            python_base=args.python_base,
            repeat=args.repeat,
            log=say,
        )
        md, js = measure_mod.write(report, args.out)
        print(measure_mod.render_markdown(report))
        say(f"written: {md} and {js}")
        return 0
    raise AssertionError(cmd)  # pragma: no cover - argparse restricts the commands


def _local_images(b: Builder) -> list[str]:
    refs = [b.base_ref(p) for p in ("all", "backend", "frontend")]
    return refs + [b.image_ref(s) for s in services()]


def _announce(box: Container, *, wait: bool) -> None:
    say(f"started {box.name} ({box.image}) on port {box.port}, network {box.network}")
    if wait:
        seconds = box.wait_ready(progress=say)
        say(f"ready in {seconds:.1f} s")
    print(f"{box.name}\t{box.url or '(no network: use exec)'}")
    say(f"logs: python -m hw5kit.containers logs {box.name}; stop: ... stop {box.name}")


def _up(args: argparse.Namespace, b: Builder, engine) -> int:
    boxes = up(
        b,
        args.version,
        env=_pairs(args.env, "-e"),
        build_args=_pairs(args.build_arg, "--build-arg"),
        progress=say,
    )
    for box in boxes.values():
        _announce(box, wait=False)
    say(f"open {boxes['frontend'].url} ; stop both with: python -m hw5kit.containers stop --all")
    return 0


def _smoke(args: argparse.Namespace, b: Builder, engine) -> int:
    from . import smoke

    chosen = _service_list(args.services)
    images = {}
    for service in chosen:
        images[service] = b.image_ref(service) if args.no_build else b.build(service).image
    failed = []
    for service in chosen:
        say(f"smoke test of {service} ({images[service]})")
        if profile_of(service) == "frontend":
            result = smoke.smoke_frontend(
                engine, service, images[service], offline=not args.no_offline, log=print
            )
        else:
            result = smoke.smoke_backend(
                engine, service, images[service], offline=not args.no_offline, log=print
            )
        if not result.ok:
            failed.append(service)
            for where, text in result.logs.items():
                print(
                    f"--- {service} log ({where}), last lines:\n"
                    + "\n".join(text.splitlines()[-30:])
                )
    say("smoke: " + ("all passed" if not failed else f"FAILED: {', '.join(failed)}"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
