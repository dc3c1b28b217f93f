"""``hw5kit COMMAND ...``: one entry point for the kit's command-line tools.

Each command is a module with its own ``--help``; ``hw5kit`` alone lists them. The nox
sessions call the same modules (``python -m hw5kit.pipeline ...``), so either way works.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "pipeline": ("hw5kit.pipeline.cli", "setup, render, build, deploy, verify, stop, status"),
    "weights": ("hw5kit.serving.models.weights", "check or bake model weights into TORCH_HOME"),
    "loadtest": ("hw5kit.loadtest", "bounded load session against a backend"),
    "badinputs": ("hw5kit.testkit.badinputs", "the bad-input catalog and its docs tables"),
    "gcloud-fake": ("hw5kit.gcloud_fake.__main__", "install the fake gcloud, seed projects"),
    "grade": ("hw5kit.grading.__main__", "grade a submission: Gradescope's results.json"),
    "rubric": ("hw5kit.grading.rubric", "the grading rubric and its docs table"),
    "lint": ("hw5kit.lint", "ruff, shellcheck and hadolint over the repository"),
    "devenv": ("hw5kit.devenv", "the shared environment and system packages"),
    "docs": ("hw5kit.docsite", "the documentation site: strict build, link check, Mermaid"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: hw5kit COMMAND [ARGS...]   (hw5kit COMMAND --help for details)", ""]
    lines += [f"  {name.ljust(width)}  {about}" for name, (_, about) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"hw5kit: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
    except ModuleNotFoundError as exc:
        if not exc.name or exc.name.partition(".")[0] == "hw5kit":
            raise
        print(
            f"hw5kit {name}: needs {exc.name}, which this environment lacks (the light one, "
            ".nox/light, has no serving stack): run it with .nox/kit/bin/python, or install "
            "hw5kit[all]",
            file=sys.stderr,
        )
        return 2
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
