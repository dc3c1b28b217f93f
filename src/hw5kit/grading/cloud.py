"""The fake Google Cloud a submission's scripts talk to while they are graded.

One ``hw5kit.gcloud_fake`` project per submission (``hw5-<student id>``, APIs enabled, the
``hw5-images`` repository, set as gcloud's default project as after ``gcloud config set
project``), answered for the sandbox's relay. On top of the fake:

* files: every file a call names (``--config``, ``--openapi-spec``, the source folder, the
  Dockerfiles a build step reads, ``.gcloudignore``) is read through ``hw5kit.confined``'s
  ``Confined`` reader: beneath the run's workspace, no link followed, regular files the
  script itself could read, size-capped, and one message for every refusal;
* bounds: each call runs in a child process forked from a preloaded fork server, with an
  address-space and CPU limit and a wall-clock timeout (``Limits.gcloud_*``), at most
  ``CONCURRENT_CALLS`` at once; a call that exceeds them fails with a message, the state lock
  it held dies with it, and the grading goes on;
* commands that change nothing a grade depends on (``gcloud auth ...``, ``config list``,
  ``info``, ``version``) succeed without doing anything, so a script is not failed for them;
* every call is recorded here as the script issued it (``Call``), with the build ID or service
  URL it produced.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import resource
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..confined import Confined
from ..gcloud_fake import FakeGcloud
from ..gcloud_fake import cli as fake_cli

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
OUTPUT_CAP = 2**20  # bytes of stdout and of stderr a call may hand back


@dataclass(frozen=True)
class CallLimits:
    timeout: float = 20.0  # wall-clock seconds per gcloud call
    memory: int = 512 * 2**20  # address space a call may add to the fork server's
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
        except fake_cli.GcloudError:
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

    def service_url(self, service: str, region: str) -> str | None:
        entry = self.fake.project(self.project)["run"].get(f"{region}/{service}")
        return entry["status"]["url"] if entry else None


def _is_noop(argv: list[str]) -> bool:
    words = [a for a in argv if not a.startswith("-")]
    if argv[:1] == ["--version"]:
        return True
    return any(tuple(words[: len(prefix)]) == prefix for prefix in NOOP_COMMANDS)


# --- the bounded child ----------------------------------------------------------------------

_CONTEXT: Any = None
_CONTEXT_LOCK = threading.Lock()


def _context() -> Any:
    """A fork server with the fake gcloud imported, so that each call forks in milliseconds
    (forking the grader itself is unsafe: it has threads)."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["hw5kit.grading.cloud", "jsonschema", "yaml"])
            _CONTEXT = context
        return _CONTEXT


def _failure(message: str) -> dict[str, Any]:
    return {"stdout": "", "stderr": f"ERROR: (gcloud) {message}\n", "code": 1}


def _run_child(request: dict[str, Any], timeout: float) -> dict[str, Any]:
    context = _context()
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(writer, request), daemon=True)
    try:
        process.start()
    except OSError as exc:
        reader.close()
        writer.close()
        return _failure(f"the grader could not run the fake gcloud ({exc})")
    writer.close()
    try:
        if not reader.poll(timeout):
            return _failure(
                f"the grader stopped this call of the fake gcloud: it took more than {timeout:g} s"
            )
        data = reader.recv_bytes(maxlength=4 * OUTPUT_CAP + 2**16)
        answer = json.loads(data)
    except (EOFError, OSError, ValueError):
        process.join(timeout=1)
        how = process.exitcode
        return _failure(
            "the grader stopped this call of the fake gcloud: it "
            + ("ran out of its CPU time" if how in (-24, -9) else f"ended abnormally ({how})")
        )
    finally:
        if process.is_alive():
            process.kill()
        process.join(timeout=5)
        reader.close()
    return answer


def _child(conn: Any, request: dict[str, Any]) -> None:
    """In the forked child: limits, then the call; the answer as JSON over ``conn``."""
    try:
        with open("/proc/self/statm") as fh:
            current = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        cap = current + int(request["memory"])
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        cpu = int(request["cpu"])
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        files = Confined(request["root"], request["uid"], request["gid"])
        result = fake_cli.run(
            request["argv"],
            state_dir=Path(request["state_dir"]),
            env=request["env"],
            cwd=Path(request["cwd"]),
            files=files,
        )
        answer = {
            "stdout": _capped(result.stdout),
            "stderr": _capped(result.stderr),
            "code": result.code,
        }
    except MemoryError:
        answer = _failure(
            "the grader stopped this call of the fake gcloud: it needed more than "
            f"{int(request['memory']) // 2**20} MiB of memory"
        )
    except Exception as exc:  # a bug in the fake must not kill the grading
        answer = _failure(f"fake gcloud failed: {type(exc).__name__}: {exc}")
    answer["rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    conn.send_bytes(json.dumps(answer).encode())
    conn.close()


def _capped(text: str) -> str:
    if len(text) <= OUTPUT_CAP:
        return text
    return (
        text[: OUTPUT_CAP // 2]
        + "\n[... output cut by the grader ...]\n"
        + text[-OUTPUT_CAP // 2 :]
    )
