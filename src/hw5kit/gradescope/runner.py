"""What ``run_autograder`` does for each submission on Gradescope.

Gradescope's harness puts the submission in ``/autograder/submission`` and its metadata in
``/autograder/submission_metadata.json``, runs ``/autograder/run_autograder`` as root with
``/autograder`` as the working folder, and uploads ``/autograder/results/results.json``
(https://gradescope-autograders.readthedocs.io/en/latest/specs/ "File hierarchy";
https://gradescope-autograders.readthedocs.io/en/latest/submission_metadata/). This module:

1. reads the staff's ``autograder.yaml`` (``config.py``);
2. closes ``/autograder/source``, ``/autograder/results`` and the metadata (its e-mail
   addresses) to other users, as Gradescope's best practices advise before running student
   code as another user (https://gradescope-autograders.readthedocs.io/en/latest/best_practices/
   "Run your autograder as a non-root user");
3. takes the student ID from the metadata: the submitter's ``sid`` (the roster's student ID;
   Gradescope's page documents ``email``, ``id`` and ``name`` for each user, and real files
   also carry ``sid``). Without a usable one the grader falls back on the ``hw5-<ID>`` project
   the scripts name, and the summary says so;
4. runs ``python -m hw5kit.grading /autograder/submission --gradescope-metadata ... --out ...``
   (the same command as ``nox -s grade``, so the same results) under the config's time limit,
   in its own process group;
5. checks the results.json against Gradescope's format (``results.py``) and puts it in place;
   whenever a step fails, it writes a results.json that says what went wrong instead
   (``failure.py``), so the student sees a message rather than "The autograder failed to
   execute correctly".
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import config as config_mod
from . import results
from .failure import failure_results, write_results

AUTOGRADER = Path("/autograder")
GRADED, FAILED = 0, 3  # exit statuses: graded; a results.json saying what went wrong


@dataclass(frozen=True)
class Paths:
    """Gradescope's layout under ``root`` (``/autograder`` on Gradescope)."""

    root: Path = AUTOGRADER

    @property
    def submission(self) -> Path:
        return self.root / "submission"

    @property
    def metadata(self) -> Path:
        return self.root / "submission_metadata.json"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def results(self) -> Path:
        return self.results_dir / "results.json"

    @property
    def source(self) -> Path:
        return self.root / "source"


def student_id(metadata: Path) -> tuple[str | None, str | None]:
    """``(sid, note)``: the submitter's student ID when the metadata holds a usable one, else
    ``None`` and a note for the summary saying why the scripts' project is used instead."""
    from .. import naming

    fallback = "the student ID is taken from the hw5-<ID> project the scripts name"
    try:
        data = json.loads(metadata.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"no {metadata.name} (not on Gradescope?): {fallback}"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"{metadata.name} is unreadable ({exc}): {fallback}"
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, list) or not users or not isinstance(users[0], dict):
        return None, f"{metadata.name} names no submitter: {fallback}"
    sid = str(users[0].get("sid") or "").strip()
    if not sid:
        who = users[0].get("name") or users[0].get("email") or "the submitter"
        return None, f"Gradescope has no student ID (sid) for {who} in the roster: {fallback}"
    problem = naming.student_id_problem(naming.normalize_student_id(sid))
    if problem:  # the grader's own check of --student-id / the metadata
        return (
            None,
            f"Gradescope's student ID {sid!r} cannot be a project ID ({problem}): {fallback}",
        )
    note = None
    if len(users) > 1:
        note = f"group submission of {len(users)}: graded with the first member's ID ({sid})"
    return sid, note


def grader_command(
    python: str, paths: Paths, config: config_mod.Config, out: Path, *, use_metadata: bool
) -> list[str]:
    cmd = [python, "-m", "hw5kit.grading", str(paths.submission)]
    if use_metadata:
        cmd += ["--gradescope-metadata", str(paths.metadata)]
    return [*cmd, "--out", str(out), *config.grader_args()]


def lock_down(paths: Paths, log=print) -> None:
    """Root only: the bundle, the results and the metadata (best effort, each said)."""
    for path, mode in (
        (paths.source, 0o700),
        (paths.results_dir, 0o700),
        (paths.metadata, 0o600),
    ):
        try:
            os.chmod(path, mode)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log(f"warning: could not close {path} to other users: {exc}")


def _run_grader(cmd: list[str], time_limit: float) -> tuple[int | None, str]:
    """(exit status or None on time-out, combined output); the process group is killed."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=time_limit)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        code = None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # nothing of the grader's outlives it
    return code, output.decode("utf-8", errors="replace")


def _add_note(data: dict, note: str) -> None:
    data["output"] = f"note: {note}\n\n{data.get('output', '')}"
    data.setdefault("extra_data", {})["runner_notes"] = [note]


def run(
    config_path: Path | None = None,
    *,
    root: Path = AUTOGRADER,
    python: str = sys.executable,
    log=print,
) -> int:
    """Grade ``root/submission`` into ``root/results/results.json``; GRADED or FAILED."""
    paths = Paths(root)
    started = time.monotonic()

    def fail(stage: str, message: str, output: str = "") -> int:
        log(f"run_autograder: {stage}: {message}")
        write_results(failure_results(stage, message, output), paths.results)
        return FAILED

    with contextlib.suppress(FileNotFoundError):
        paths.results.unlink()
    try:
        config = config_mod.load(config_path)
    except config_mod.ConfigError as exc:
        return fail("config", str(exc))
    paths.results_dir.mkdir(parents=True, exist_ok=True)
    lock_down(paths, log)
    if not paths.submission.is_dir():
        return fail("submission", f"{paths.submission} is not a folder")
    sid, note = student_id(paths.metadata)
    with tempfile.TemporaryDirectory(prefix="hw5-gradescope-") as tmp:
        out = Path(tmp) / "results.json"
        cmd = grader_command(python, paths, config, out, use_metadata=sid is not None)
        log("run_autograder: " + " ".join(cmd))
        code, output = _run_grader(cmd, config.time_limit)
        log(output.rstrip())
        if code is None:
            return fail(
                "timeout",
                f"grading took longer than the time limit ({config.time_limit:g} s, "
                "time_limit in autograder.yaml)",
                output,
            )
        if code != 0 or not out.exists():
            last = output.strip().splitlines()[-1:] or ["(no output)"]
            return fail("grader", f"the grader stopped with exit status {code}: {last[0]}", output)
        try:
            data = results.load_checked(out)
        except ValueError as exc:
            return fail("results", str(exc), output)
    if note:
        _add_note(data, note)
    write_results(data, paths.results)
    log(
        f"run_autograder: score {data['score']:g} written to {paths.results} "
        f"({time.monotonic() - started:.1f} s)"
    )
    return GRADED
