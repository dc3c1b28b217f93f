"""The container engine: docker when a daemon answers, else podman + buildah with private config.

Where no Docker daemon runs (this project's machines), podman and buildah from Debian do the
work, configured so that nothing global changes:

* storage (images, layers, containers) under a project-owned folder, ``.hw5/containers`` in the
  repository (git-ignored; ``HW5_CONTAINER_STORE`` moves it), run-time state under ``/tmp``;
* ``runc`` as the runtime (crun rejects hybrid cgroup hosts), the ``cgroupfs`` manager, and
  explicit ``ulimits`` (podman's default open-files limit can exceed the hard limit);
* the host network for builds and containers: services bind loopback ports like the local
  target, and build steps reach the package registries as the host does;
* the host CA bundle mounted into ``RUN`` steps only (it holds the egress proxy's CA).

The config files are written into the store and passed through ``CONTAINERS_CONF`` and
``CONTAINERS_STORAGE_CONF`` in the environment of every podman/buildah call.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import devenv
from ..paths import ROOT

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PODMAN_TOOLS = ("podman", "buildah", "runc", "debootstrap")

Log = Callable[[str], None]
# A Dockerfile step as buildah ("STEP 3/9: ...") and docker ("Step 3/9 :", "#5 [2/4] ...") print it
STEP_RE = re.compile(r"^(\[\d+/\d+\] )?(STEP \d+/\d+|Step \d+/\d+|#\d+ \[)")


class ContainerError(RuntimeError):
    """A container operation failed; the message says what and what to do."""


def default_store(root: Path = ROOT) -> Path:
    """Where images and containers are kept (``HW5_CONTAINER_STORE`` overrides)."""
    return Path(os.environ.get("HW5_CONTAINER_STORE") or root / ".hw5" / "containers").resolve()


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


def say(message: str) -> None:
    """Progress output: a timestamped line on stdout, flushed at once."""
    print(f"[{_stamp()}] {message}", flush=True)


@dataclass
class Engine:
    """How to call the container tools: ``kind`` is ``docker`` or ``podman``.

    With podman, ``builder`` is buildah (``buildah bud``); with docker, docker builds itself.
    ``env`` is the environment every call gets (the private config for podman).
    """

    kind: str
    store: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    log: Log = say
    # build output on screen: "all" lines, "steps" (the Dockerfile steps) or "none"
    echo: str = "all"

    @property
    def cli(self) -> str:
        return self.kind

    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def call(
        self,
        args: Sequence[str],
        *,
        tool: str | None = None,
        check: bool = True,
        capture: bool = True,
        timeout: float | None = None,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """Run ``tool`` (default: the engine's CLI) with ``args``, ``env`` added to its
        environment; raise with stderr on failure."""
        cmd = [tool or self.cli, *args]
        try:
            done = subprocess.run(
                cmd,
                env={**self.environ(), **(env or {})},
                capture_output=capture,
                timeout=timeout,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise ContainerError(f"`{' '.join(cmd[:4])} ...` took longer than {timeout} s") from exc
        if check and done.returncode != 0:
            err = (done.stderr or b"").decode(errors="replace").strip() if capture else ""
            raise ContainerError(
                f"`{' '.join(cmd[:6])}{' ...' if len(cmd) > 6 else ''}` failed "
                f"(exit {done.returncode})" + (f":\n{err[-3000:]}" if err else "")
            )
        return done

    def text(self, args: Sequence[str], **kwargs) -> str:
        return self.call(args, **kwargs).stdout.decode(errors="replace").strip()

    def stream(self, cmd: Sequence[str], *, log_path: Path | None = None) -> int:
        """Run ``cmd`` with its output shown live (and copied to ``log_path``); return its code."""
        log_file = log_path.open("w") if log_path else None
        try:
            with subprocess.Popen(
                list(cmd),
                env=self.environ(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
                bufsize=1,
            ) as proc:
                assert proc.stdout is not None
                for line in proc.stdout:
                    if self.echo == "all" or (self.echo == "steps" and STEP_RE.match(line)):
                        print(f"    {line}", end="", flush=True)
                    if log_file:
                        log_file.write(line)
                return proc.wait()
        finally:
            if log_file:
                log_file.close()

    # -- images -------------------------------------------------------------------------------

    def image_exists(self, ref: str) -> bool:
        if self.kind == "docker":
            return self.call(["image", "inspect", ref], check=False).returncode == 0
        return self.call(["image", "exists", ref], check=False).returncode == 0

    def image_inspect(self, ref: str, template: str) -> str:
        return self.text(["image", "inspect", "--format", template, ref])

    def image_id(self, ref: str) -> str:
        return self.image_inspect(ref, "{{.Id}}")

    def image_label(self, ref: str, label: str) -> str | None:
        if not self.image_exists(ref):
            return None
        template = "{{ index .Config.Labels " + json.dumps(label) + " }}"
        value = self.image_inspect(ref, template)
        return None if value in ("", "<no value>") else value

    def image_size(self, ref: str) -> int:
        """The image's size in bytes, as the engine reports it (uncompressed layers)."""
        return int(self.image_inspect(ref, "{{.Size}}"))

    def remove_image(self, ref: str) -> None:
        self.call(["rmi", "-f", ref], check=False)

    def build_command(
        self,
        *,
        dockerfile: Path,
        tag: str,
        context: Path,
        build_args: Mapping[str, str],
        labels: Mapping[str, str],
        no_cache: bool = False,
        extra: Sequence[str] = (),
        host_ca: bool = True,
    ) -> list[str]:
        """The build command line; ``extra`` holds engine options such as ``-v`` mounts.
        ``host_ca=False`` leaves out the host CA bundle (an image whose build updates its own
        ca-certificates cannot have that file mounted)."""
        args = ["--force-rm", *extra]  # no half-built container is left behind on failure
        args += [f"--build-arg={k}={v}" for k, v in build_args.items()]
        args += [f"--label={k}={v}" for k, v in labels.items()]
        if no_cache:
            args.append("--no-cache")
        if self.kind == "docker":
            return [
                "docker", "build", "--network", "host", *args,
                "-f", str(dockerfile), "-t", tag, str(context),
            ]  # fmt: skip
        mounts = []
        if host_ca and HOST_CA_BUNDLE.is_file():
            mounts = ["-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
        return [
            "buildah", "bud", "--isolation", "chroot", "--network", "host", "--layers",
            "--pull=never", *mounts, *args, "-f", str(dockerfile), "-t", tag, str(context),
        ]  # fmt: skip

    # -- containers ---------------------------------------------------------------------------

    def container_running(self, name: str) -> bool:
        done = self.call(["inspect", "--format", "{{.State.Running}}", name], check=False)
        return done.returncode == 0 and done.stdout.decode().strip() == "true"

    def version(self) -> str:
        if self.kind == "docker":
            return "docker " + self.text(["version", "--format", "{{.Server.Version}}"])
        return f"{self.text(['--version'])}; {self.text(['--version'], tool='buildah')}"


def docker_daemon_answers(timeout: float = 10.0) -> bool:
    """True when a ``docker`` client is installed and its daemon answers."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def _hard_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)


def run_root(store: Path) -> Path:
    """Run-time state (sockets, locks) for ``store``: under /tmp, where paths stay short."""
    digest = hashlib.sha256(str(store).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"hw5-containers-run-{digest}"


def write_podman_config(store: Path) -> dict[str, str]:
    """Write the private storage and engine config into ``store``; return the environment."""
    store.mkdir(parents=True, exist_ok=True)
    nofile = _hard_nofile()
    storage = store / "storage.conf"
    storage.write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{store / "storage"}"\n'
        f'runroot = "{run_root(store)}"\n'
    )
    conf = store / "containers.conf"
    conf.write_text(
        "[containers]\n"
        'netns = "host"\n'
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=4096:4096"]\n'
        'log_driver = "k8s-file"\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )
    return {"CONTAINERS_STORAGE_CONF": str(storage), "CONTAINERS_CONF": str(conf)}


def detect(
    store: Path | None = None,
    *,
    prefer: str | None = None,
    install: bool = True,
    log: Log = say,
) -> Engine:
    """The engine to use: docker if its daemon answers, else podman/buildah (installed if missing).

    ``prefer`` (or ``HW5_CONTAINER_ENGINE``) forces ``docker`` or ``podman``.
    """
    prefer = prefer or os.environ.get("HW5_CONTAINER_ENGINE") or None
    if prefer not in (None, "docker", "podman"):
        raise ContainerError(f"HW5_CONTAINER_ENGINE must be docker or podman, not {prefer!r}")
    if prefer == "docker" or (prefer is None and docker_daemon_answers()):
        if prefer == "docker" and not docker_daemon_answers():
            raise ContainerError(
                "docker was asked for, but no Docker daemon answers `docker info`; start it, "
                "or unset HW5_CONTAINER_ENGINE to use podman/buildah"
            )
        return Engine("docker", log=log)
    missing = devenv.missing_commands(PODMAN_TOOLS)
    if missing and install:
        missing = devenv.ensure_system_packages(PODMAN_TOOLS, log=log)
    if missing:
        raise ContainerError(
            "no Docker daemon answers and podman/buildah are not installed (missing: "
            f"{', '.join(missing)}); install them with `apt-get install podman buildah runc "
            "debootstrap` as root, or start a Docker daemon"
        )
    store = (store or default_store()).resolve()
    return Engine("podman", store=store, env=write_podman_config(store), log=log)
