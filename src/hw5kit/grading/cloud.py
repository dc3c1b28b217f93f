"""The fake Google Cloud a submission's scripts talk to while they are graded.

One ``hw5kit.gcloud_fake`` project per submission (``hw5-<student id>``, APIs enabled, the
``hw5-images`` repository, set as gcloud's default project as after ``gcloud config set
project``), answered for the sandbox's relay. On top of the fake:

* files: every file a call names (``--config``, ``--openapi-spec``, the source folder, the
  Dockerfiles a build step reads, ``.gcloudignore``) is read through ``hw5kit.confined``'s
  ``Confined`` reader: beneath the run's workspace, no link followed, regular files the
  script itself could read, size-capped, and one message for every refusal;
* bounds: each call runs in a child process forked by a call server (``callserver.py``, the
  fake already imported), with an address-space and CPU limit and a wall-clock timeout
  (``Limits.gcloud_*``), at most ``CONCURRENT_CALLS`` at once; a call that exceeds them fails
  with a message, the state lock it held dies with it, and the grading goes on;
* commands that change nothing a grade depends on (``gcloud auth ...``, ``config list``,
  ``info``, ``version``) succeed without doing anything, so a script is not failed for them;
* every call is recorded here as the script issued it (``Call``), with the build ID or service
  URL it produced.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..gcloud_fake import PACKAGE_PARENT, FakeGcloud
from ..gcloud_fake import cli as fake_cli
from ..gcloud_fake.call import GcloudError
from . import callserver

BUILD_ID_RE = re.compile(
    r"/builds/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\]"
)
SERVICE_URL_RE = re.compile(r"^Service URL: (\S+)\s*$", re.M)
NOOP_COMMANDS = (("auth",), ("config", "list"), ("info",), ("version",), ("components",))


@dataclass
class Call:
    argv: list[str]
    cwd: str
    command: str | None  # "builds submit", "run deploy", ... (None: gcloud refused it)
    flags: dict[str, Any]
    positionals: list[str]
    exit: int
    stdout: str
    stderr: str
    build_id: str | None = None
    service_url: str | None = None
    noop: bool = False

    @property
    def parsed(self) -> bool:
        """gcloud accepted the command line (whatever happened next)."""
        return self.command is not None

    def error(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.startswith("ERROR")]
        return (lines or self.stderr.strip().splitlines() or [f"exit status {self.exit}"])[-1]

    def shown(self) -> str:
        return "gcloud " + " ".join(self.argv)


CONCURRENT_CALLS = 4  # calls run at once; the others wait (bounds the grader's memory)


@dataclass(frozen=True)
class CallLimits:
    timeout: float = 20.0  # wall-clock seconds per gcloud call
    memory: int = 512 * 2**20  # address space a call may add to its call server's
    cpu_seconds: int = 20


@dataclass
class FakeCloud:
    state_dir: Path
    project: str
    limits: CallLimits = field(default_factory=CallLimits)
    workspace: Path | None = None  # the current run's: the only place calls read files from
    uid: int | None = None  # the current run's script's identity (what it may read)
    gid: int | None = None
    calls: list[Call] = field(default_factory=list)
    peak_call_kib: int = 0  # the largest resident size a call reached (KiB), for the report

    def __post_init__(self) -> None:
        self.fake = FakeGcloud(self.state_dir)
        self.fake.add_project(self.project)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(CONCURRENT_CALLS)

    # -- the relay handler -- #
    def handle(self, argv: list[str], cwd: str, env: dict[str, str]) -> dict[str, Any]:
        cwd_path = Path(cwd) if os.path.isabs(cwd) else Path("/")
        if _is_noop(argv):
            message = (
                f"fake gcloud (grader): `gcloud {' '.join(argv[:2])}` changes nothing that is "
                "graded here; skipped\n"
            )
            call = Call(argv, cwd, " ".join(argv[:2]), {}, [], 0, "", message, noop=True)
            self._record(call)
            return {"stdout": "", "stderr": message, "code": 0}
        try:
            parsed = fake_cli.parse(argv, env, cwd_path)
        except GcloudError:
            parsed = None
        answer = self.run_bounded(argv, cwd_path, env)
        build = BUILD_ID_RE.search(answer["stderr"])
        url = SERVICE_URL_RE.search(answer["stderr"])
        call = Call(
            argv,
            cwd,
            parsed.command.name if parsed else None,
            dict(parsed.flags) if parsed else {},
            list(parsed.positionals) if parsed else [],
            answer["code"],
            answer["stdout"],
            answer["stderr"],
            build.group(1) if build else None,
            url.group(1) if url and answer["code"] == 0 else None,
        )
        self._record(call)
        return answer

    def run_bounded(self, argv: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
        """``gcloud ARGV`` on the fake, in a child process under this cloud's limits."""
        request = {
            "argv": list(argv),
            "cwd": str(cwd),
            "env": dict(env),
            "state_dir": str(self.state_dir),
            "root": str(self.workspace or "/nonexistent"),
            "uid": self.uid,
            "gid": self.gid,
            "memory": self.limits.memory,
            "cpu": self.limits.cpu_seconds,
        }
        with self._slots:
            answer = _run_child(request, self.limits.timeout)
        with self._lock:
            self.peak_call_kib = max(self.peak_call_kib, int(answer.pop("rss_kib", 0) or 0))
        return answer

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    # -- helpers for the grader -- #
    def since(self, start: int) -> list[Call]:
        with self._lock:
            return list(self.calls[start:])

    def mark(self) -> int:
        with self._lock:
            return len(self.calls)

    def allow_any_image(self) -> None:
        """Deploys may name images this fake never built (the student's real build IDs)."""
        self.fake.configure(require_built_images=False)

    def deploy_stand_in(self, service: str, image: str, region: str, port: int) -> str | None:
        """Deploy ``service`` directly (not through a student's script); its URL."""
        result = fake_cli.run(
            [
                "run",
                "deploy",
                service,
                f"--project={self.project}",
                f"--region={region}",
                f"--image={image}",
                f"--port={port}",
                "--allow-unauthenticated",
            ],
            state_dir=self.state_dir,
            env={},
            cwd=Path("/"),
        )
        url = SERVICE_URL_RE.search(result.stderr)
        return url.group(1) if url and result.code == 0 else None

    def builds(self) -> dict[str, dict[str, Any]]:
        """The fake Cloud Build's record of every build of the project, by build ID."""
        return dict(self.fake.project(self.project).get("builds") or {})

    def service_url(self, service: str, region: str) -> str | None:
        entry = self.fake.project(self.project)["run"].get(f"{region}/{service}")
        return entry["status"]["url"] if entry else None


def _is_noop(argv: list[str]) -> bool:
    words = [a for a in argv if not a.startswith("-")]
    if argv[:1] == ["--version"]:
        return True
    return any(tuple(words[: len(prefix)]) == prefix for prefix in NOOP_COMMANDS)


# --- the call servers -------------------------------------------------------------------


class _Server:
    """One ``callserver`` process: a request at a time."""

    def __init__(self) -> None:
        bootstrap = (
            "import sys; sys.path.insert(0, sys.argv.pop(1)); "
            "from hw5kit.grading.callserver import main; main()"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", bootstrap, str(PACKAGE_PARENT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
            close_fds=True,
        )

    def call(self, request: dict[str, Any], wait: float) -> dict[str, Any] | None:
        """The answer, or None when the server did not give one within ``wait`` seconds."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            callserver.write_message(self.proc.stdin, request)
            ready, _, _ = select.select([self.proc.stdout], [], [], wait)
            if not ready:
                return None
            return callserver.read_message(self.proc.stdout)
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


_IDLE: list[_Server] = []
_POOL_LOCK = threading.Lock()


def _run_child(request: dict[str, Any], timeout: float) -> dict[str, Any]:
    with _POOL_LOCK:
        server = _IDLE.pop() if _IDLE else None
    if server is None:
        try:
            server = _Server()
        except OSError as exc:
            return callserver.failure(f"the grader could not run the fake gcloud ({exc})")
    answer = server.call({**request, "timeout": timeout}, timeout + 10)
    if answer is None:  # the server itself is stuck or gone: replace it
        server.proc.kill()
        server.stop()
        return callserver.failure(f"{callserver.STOPPED}it took more than {timeout:g} s")
    with _POOL_LOCK:
        _IDLE.append(server)
    return answer


def stop_call_servers() -> None:
    """Stop (and reap) the call servers, so that their and their children's resource use is
    counted in the grader's (``getrusage(RUSAGE_CHILDREN)``); the next call starts new ones."""
    with _POOL_LOCK:
        servers = list(_IDLE)
        _IDLE.clear()
    for server in servers:
        server.stop()
