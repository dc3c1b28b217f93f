"""Static checks: ruff on Python, shellcheck on shell scripts, hadolint on Dockerfiles.

``python -m hw5kit.lint [--fix]``; ``nox -s lint`` runs it, and so does the test suite.
Files are the ones git tracks (plus untracked, not ignored ones), so generated and vendored
folders are skipped the same way git skips them.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from .paths import ROOT

# Broken on purpose: the grader's corpus of bad submissions.
EXCLUDED_PREFIXES = ("tests/fixtures/submissions/",)


def project_files(root: Path = ROOT) -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    files = [f for f in out.split("\0") if f and not f.startswith(EXCLUDED_PREFIXES)]
    return [root / f for f in sorted(set(files)) if (root / f).is_file()]


def is_shell(path: Path) -> bool:
    if path.suffix in (".sh", ".bash"):
        return True
    if path.suffix or path.name.startswith("."):
        return False
    try:
        first = path.open("rb").readline(100)
    except OSError:
        return False
    return first.startswith(b"#!") and (b"bash" in first or first.rstrip().endswith(b"/sh"))


def is_dockerfile(path: Path) -> bool:
    return path.name == "Dockerfile" or path.name.startswith("Dockerfile.")


def tool(name: str) -> str:
    """The tool next to this interpreter (its venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} is not installed: run `nox -s lint` (it installs it)")
    return found


def run(root: Path = ROOT, *, fix: bool = False) -> int:
    files = project_files(root)
    shell = [f for f in files if is_shell(f)]
    dockerfiles = [f for f in files if is_dockerfile(f)]
    failures = 0
    ruff = tool("ruff")
    steps = [
        ("ruff check", [ruff, "check", *(["--fix"] if fix else []), str(root)]),
        ("ruff format", [ruff, "format", *([] if fix else ["--check"]), str(root)]),
    ]
    if shell:
        steps.append(("shellcheck", [tool("shellcheck"), "-x", *map(str, shell)]))
    if dockerfiles:
        steps.append(("hadolint", [tool("hadolint"), *map(str, dockerfiles)]))
    for label, cmd in steps:
        print(f"--- {label}", flush=True)
        done = subprocess.run(cmd, cwd=root)
        if done.returncode != 0:
            failures += 1
            print(f"{label}: FAILED", flush=True)
    print("lint: " + ("all clean" if not failures else f"{failures} tool(s) reported problems"))
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hw5kit.lint", description=__doc__)
    parser.add_argument("--fix", action="store_true", help="let ruff fix what it can")
    return run(fix=parser.parse_args(argv).fix)


if __name__ == "__main__":
    raise SystemExit(main())
