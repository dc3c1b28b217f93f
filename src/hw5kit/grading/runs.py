"""Running the submission's submit and deploy scripts in the sandbox, as a student would.

Each run gets a fresh workspace: the snapshot copied again, laid out as the assignment asks
(scripts and the Cloud Build file in ``deployment/``, ``deliverables.yaml`` at the top; files a
student left at the top are placed in ``deployment/`` too, and each script runs from there, as
``bash deployment/NAME``, from the repository root), plus stand-in Dockerfiles when the
submission has none (the course provides them; the fake Cloud Build only needs their FROM line).
A script can wreck its own workspace, never the next run's or the snapshot the checks read.

* submit: run without arguments. If that submits no build at all, the script is taken to want
  the image as its argument, and it runs once per image (``submit_build.sh backend_v1``, ...).
  A submission with one submit script per service (an older layout) has each run once.
* deploy: backend first, then frontend, per version, without arguments and with
  ``deliverables.yaml`` in place. If a deploy script issues no ``gcloud run deploy`` and the
  deliverables hold its build ID, it runs again with the build ID as argument. If a frontend
  looks its backend up (``gcloud run services describe NAME``) and the backend's own script
  deployed nothing, the grader deploys a stand-in backend under that name and runs the frontend
  again, so that each script is graded on its own.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import layout
from .buildconfig import BASE, Analysis
from .cloud import Call, FakeCloud
from .limits import RunResult
from .relay import GcloudRelay
from .sandbox import Sandbox
from .submission import Snapshot

SUBMIT_NAMES, CONFIG_NAMES = layout.SUBMIT_NAMES, layout.CONFIG_NAMES
STAND_IN_BASE = (
    "# stand-in written by the grader: the submission has no Dockerfile.base\n"
    "FROM python:3.11-slim\n"
)


def deploy_script_name(app: str) -> str:
    return f"deploy_{app}.sh"


def where(rel: str) -> str:
    if rel.startswith("deployment/"):
        return f"{rel} (found in deployment/)"
    return f"{rel} (found at the top of the submission; run as deployment/{Path(rel).name})"


@dataclass
class ScriptRun:
    rel: str | None  # where the script is in the submission
    args: list[str] = field(default_factory=list)
    result: RunResult | None = None
    calls: list[Call] = field(default_factory=list)
    problem: str | None = None  # why it could not run

    def command(self) -> str:
        name = Path(self.rel).name if self.rel else "?"
        return " ".join(["bash", f"deployment/{name}", *self.args])


_V3_APP_URI = re.compile(r"_APP_URI=[^,]*/(backend|frontend)_v3(_[a-z0-9_]+)?(,|$)")


def _is_v3_build(call: Call) -> bool:
    return bool(_V3_APP_URI.search(str(call.flags.get("--substitutions") or "")))


@dataclass
class Runs:
    submit: list[ScriptRun] = field(default_factory=list)
    submit_rel: str | None = None
    submit_rels: list[str] = field(default_factory=list)  # every submit script that ran
    submit_notes: list[str] = field(default_factory=list)
    deploys: dict[str, list[ScriptRun]] = field(default_factory=dict)
    deploy_notes: dict[str, list[str]] = field(default_factory=dict)
    backend_urls: dict[str, str] = field(default_factory=dict)  # version -> URL in the fake
    stand_ins: list[str] = field(default_factory=list)

    def submit_calls(self) -> list[Call]:
        """The ``builds submit`` calls the rubric grades: the course's images. A submission's
        v3 images (``backend_v3*``, ``frontend_v3``, an optional extra the rubric does not
        cover) are left out, so that v3's presence changes nothing in v1/v2's score."""
        return [
            c
            for run in self.submit
            for c in run.calls
            if c.command == "builds submit" and not _is_v3_build(c)
        ]

    def deploy_calls(self, app: str) -> list[Call]:
        runs = self.deploys.get(app) or []
        return [c for c in runs[-1].calls if c.command == "run deploy"] if runs else []


class Runner:
    def __init__(
        self,
        snapshot: Snapshot,
        sandbox: Sandbox,
        cloud: FakeCloud,
        relay: GcloudRelay,
        base: Path,
        *,
        assignment: dict,
        analysis: Analysis | None,
    ):
        self.snapshot = snapshot
        self.sandbox = sandbox
        self.cloud = cloud
        self.relay = relay
        self.base = base
        self.assignment = assignment
        self.analysis = analysis
        self.runs_dir = base / "runs"
        self.runs_dir.mkdir(mode=0o711, exist_ok=True)
        self.count = 0
        self.layout_notes: list[str] = []

    # -- workspaces -- #
    def workspace(self) -> Path:
        """A fresh copy of the snapshot (a size-limited tmpfs where the grader may mount)."""
        self.count += 1
        ws = self.runs_dir / str(self.count)
        self.sandbox.make_workspace(ws)
        shutil.copytree(self.snapshot.root, ws, symlinks=True, dirs_exist_ok=True)
        notes = self._lay_out(ws)
        if self.count == 1:
            self.layout_notes = notes
        return ws

    def _lay_out(self, ws: Path) -> list[str]:
        notes = []
        deployment = ws / "deployment"
        deployment.mkdir(exist_ok=True)
        names = [
            *SUBMIT_NAMES,
            *CONFIG_NAMES,
            *(deploy_script_name(a) for a in self.assignment["apps"]),
        ]
        names += [  # an older layout's per-service files at the top
            p.name
            for p in ws.iterdir()
            if p.is_file()
            and (
                (p.name.lower().startswith(("submit", "deploy")) and p.name.endswith(".sh"))
                or (p.name.lower().startswith("cloudbuild") and p.suffix in (".yaml", ".yml"))
            )
        ]
        for name in names:
            top, inside = ws / name, deployment / name
            if top.is_file() and not inside.exists():
                shutil.copy2(top, inside)
        top, inside = ws / "deliverables.yaml", deployment / "deliverables.yaml"
        if inside.is_file() and not top.exists():
            shutil.copy2(inside, top)
            notes.append("deliverables.yaml was in deployment/: placed at the top as well")
        if not (deployment / "cloudbuild.yaml").exists():
            template = deployment / "cloudbuild_template.yaml"
            if template.is_file():
                shutil.copy2(template, deployment / "cloudbuild.yaml")
                notes.append(
                    "no cloudbuild.yaml: deployment/cloudbuild_template.yaml was copied to "
                    "deployment/cloudbuild.yaml for the submit script"
                )
        stand_ins = self._stand_in_dockerfiles(ws)
        if stand_ins:
            notes.append(
                "the submission has no " + ", ".join(stand_ins) + ": the grader used stand-ins "
                "(the course provides these files; only their FROM line matters to the fake "
                "Cloud Build)"
            )
        converted = []
        for script in deployment.glob("*.sh"):
            data = script.read_bytes()
            if b"\r\n" in data:  # saved on Windows: bash would choke on every \r
                script.write_bytes(data.replace(b"\r\n", b"\n"))
                converted.append(script.name)
            script.chmod(0o755)
        if converted:
            notes.append(
                "Windows line endings (CRLF) were converted to run " + ", ".join(converted)
            )
        return notes

    def _stand_in_dockerfiles(self, ws: Path) -> list[str]:
        written = []
        if not (ws / "Dockerfile.base").exists():
            (ws / "Dockerfile.base").write_text(STAND_IN_BASE)
            written.append("Dockerfile.base")
        base_arg = self._base_build_arg()
        for app in self.assignment["apps"]:
            path = ws / f"Dockerfile.{app}"
            if path.exists():
                continue
            if base_arg:
                body = f"ARG {base_arg}\nFROM ${{{base_arg}}}\nARG SERVING_PORT\n"
            else:
                body = "FROM scratch\n"
            path.write_text(
                f"# stand-in written by the grader: the submission has no Dockerfile.{app}\n" + body
            )
            written.append(f"Dockerfile.{app}")
        return written

    def _base_build_arg(self) -> str | None:
        """The build argument through which the config hands the base image to the app
        Dockerfile (so that a stand-in Dockerfile starts FROM the same image)."""
        if self.analysis is None:
            return None
        for build in self.analysis.builds:
            for name, value in build.build_args.items():
                if value.startswith(BASE) and name.replace("_", "").isalnum():
                    return name
        return None

    # -- running -- #
    def run(self, rel: str | None, args: list[str] | None = None) -> ScriptRun:
        run = ScriptRun(rel, list(args or []))
        if rel is None:
            run.problem = "not found"
            return run
        if rel in self.snapshot.links_outside or rel in self.snapshot.left_out:
            try:
                self.snapshot.read_bytes(rel)
            except Exception as exc:
                run.problem = str(exc)
            return run
        ws = self.workspace()
        identity = self.sandbox.identity()
        # the fake gcloud reads files for this run only beneath its workspace, and only those
        # the script itself may read
        self.cloud.workspace = ws
        self.cloud.uid, self.cloud.gid = (identity.uid, identity.gid) if identity else (None, None)
        start = self.cloud.mark()
        script = ws / "deployment" / Path(rel).name
        try:
            run.result = self.sandbox.run(
                self.base, ws, script, run.args, relay=self.relay, identity=identity
            )
        finally:
            self.cloud.workspace = None
            self.sandbox.release_workspace(ws)
        run.calls = self.cloud.since(start)
        return run

    def run_submits(self, rels: list[str]) -> tuple[list[ScriptRun], list[str]]:
        """Every submit script (one per service in an older layout), else the one found."""
        if len(rels) <= 1:
            return self.run_submit(rels[0] if rels else None)
        return [self.run(rel) for rel in rels], []

    def run_submit(self, rel: str | None) -> tuple[list[ScriptRun], list[str]]:
        first = self.run(rel)
        if first.problem or rel is None:
            return [first], []
        if any(c.argv[:2] == ["builds", "submit"] for c in first.calls):
            return [first], []
        if first.result is not None and first.result.killed:
            return [first], []  # stopped for misbehaving: running it again would not help
        notes = [
            "run without arguments, the script submitted no build: it was run again once per "
            "image, as `" + first.command() + " IMAGE`"
        ]
        runs = [first]
        for app in self.assignment["apps"]:
            runs.append(self.run(rel, [app]))
        return runs, notes

    def run_deploy(
        self, rel: str | None, build_id: str | None
    ) -> tuple[list[ScriptRun], list[str]]:
        first = self.run(rel)
        if first.problem or rel is None:
            return [first], []
        if any(c.argv[:2] == ["run", "deploy"] for c in first.calls) or not build_id:
            return [first], []
        if first.result is not None and first.result.killed:
            return [first], []
        second = self.run(rel, [build_id])
        note = (
            "run without arguments, the script issued no `gcloud run deploy`: it was run "
            f"again with the build ID from deliverables.yaml (`{second.command()}`)"
        )
        return [first, second], [note]
