"""The fake Google Cloud a submission's scripts talk to while they are graded.

One ``hw5kit.gcloud_fake`` project per submission (``hw5-<student id>``, APIs enabled, the
``hw5-images`` repository, set as gcloud's default project as after ``gcloud config set
project``), answered in the grader's process through the sandbox's relay. On top of the fake:

* paths: ``gcloud builds submit`` may only upload and read files inside the workspace; the
  config file is opened once, checked to really be inside (after the open, so a link swapped in
  meanwhile is caught), size- and alias-limited, and handed to the fake as a private copy;
* commands that change nothing a grade depends on (``gcloud auth ...``, ``config list``,
  ``info``, ``version``) succeed without doing anything, so a script is not failed for them;
* every call is recorded here as the script issued it (``Call``), with the build ID or service
  URL it produced.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..gcloud_fake import FakeGcloud
from ..gcloud_fake import cli as fake_cli
from .submission import MAX_TEXT, yaml_limits_problem

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


@dataclass
class FakeCloud:
    state_dir: Path
    private_dir: Path
    project: str
    workspace: Path | None = None
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fake = FakeGcloud(self.state_dir)
        self.fake.add_project(self.project)
        self.private_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._counter = itertools.count()

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
        run_argv = list(argv)
        private: tuple[str, str] | None = None
        try:
            parsed = fake_cli.parse(argv, env, cwd_path)
        except fake_cli.GcloudError:
            parsed = None
        if parsed is not None and parsed.command.name == "builds submit":
            problem, run_argv, private = self._confine_build(parsed, argv, cwd_path)
            if problem:
                message = f"ERROR: (gcloud.builds.submit) fake gcloud (grader): {problem}\n"
                call = Call(
                    argv,
                    cwd,
                    parsed.command.name,
                    dict(parsed.flags),
                    list(parsed.positionals),
                    1,
                    "",
                    message,
                )
                self._record(call)
                return {"stdout": "", "stderr": message, "code": 1}
        result = fake_cli.run(run_argv, state_dir=self.state_dir, env=env, cwd=cwd_path)
        if private:  # the script sees its own file named, not the grader's copy
            result.stdout = result.stdout.replace(*private)
            result.stderr = result.stderr.replace(*private)
        build = BUILD_ID_RE.search(result.stderr)
        url = SERVICE_URL_RE.search(result.stderr)
        call = Call(
            argv,
            cwd,
            parsed.command.name if parsed else None,
            dict(parsed.flags) if parsed else {},
            list(parsed.positionals) if parsed else [],
            result.code,
            result.stdout,
            result.stderr,
            build.group(1) if build else None,
            url.group(1) if url and result.code == 0 else None,
        )
        self._record(call)
        return {"stdout": result.stdout, "stderr": result.stderr, "code": result.code}

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _confine_build(
        self, parsed: fake_cli.Call, argv: list[str], cwd: Path
    ) -> tuple[str | None, list[str], tuple[str, str] | None]:
        root = (self.workspace or Path("/nonexistent")).resolve()
        source_arg = parsed.positionals[0] if parsed.positionals else "."
        if not source_arg.startswith("gs://"):
            source = (cwd / source_arg).resolve()
            if not _inside(source, root):
                return (
                    f"the source folder {source_arg} ({source}) is outside the submission: "
                    "upload the repository itself (the course's script uses ${SCRIPT_DIR}/..)",
                    argv,
                    None,
                )
        config_arg = str(parsed.flags.get("--config") or "cloudbuild.yaml")
        try:
            data = read_inside(cwd / config_arg, root)
        except FileNotFoundError:
            return None, argv, None  # the fake says it the way gcloud does
        except ValueError as exc:
            return f"--config {config_arg}: {exc}", argv, None
        text = data.decode("utf-8", errors="replace")
        problem = yaml_limits_problem(text, config_arg)
        if problem:
            return problem, argv, None
        private = self.private_dir / f"config-{next(self._counter)}-{Path(config_arg).name}"
        private.write_bytes(data)
        shown = str(cwd / config_arg)
        return None, _replace_config(argv, str(private)), (str(private), shown)

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


def _replace_config(argv: list[str], path: str) -> list[str]:
    out, skip = [], False
    for index, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--config":
            out.append(f"--config={path}")
            skip = index + 1 < len(argv)
        elif arg.startswith("--config="):
            out.append(f"--config={path}")
        else:
            out.append(arg)
    if not any(a.startswith("--config=") for a in out):
        out.append(f"--config={path}")
    return out


def _inside(path: Path, root: Path) -> bool:
    return path == root or str(path).startswith(str(root) + os.sep)


def read_inside(path: Path, root: Path, limit: int = MAX_TEXT) -> bytes:
    """The bytes of ``path`` if what gets opened is a regular file inside ``root``.

    The check happens after the open (on /proc/self/fd), so a file swapped for a link to
    somewhere else between a check and the read cannot be read. ValueError says why not."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the last component is a symbolic link
            target = os.path.realpath(path)
            if _inside(Path(target), root):
                return read_inside(Path(target), root, limit)
            raise ValueError(f"a symbolic link to {target}, outside the submission") from None
        raise ValueError(f"cannot be read ({exc.strerror})") from None
    with contextlib.closing(os.fdopen(fd, "rb")) as fh:
        real = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if not _inside(real, root):
            raise ValueError(f"resolves to {real}, outside the submission")
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{info.st_size} bytes, over the {limit // 2**10} KiB limit")
        return fh.read(limit + 1)[:limit]
