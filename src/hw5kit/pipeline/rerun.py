"""The commands the kit tells its users to run again: ``nox -s SESSION -- [--target T] ARGS``.

One spelling for every hint (deploy's summary, the deliverables' problems, verify's fixes), so
that each is a command that works as printed: the local target, the default, needs no
``--target``, and a session's own arguments always follow ``--``.
"""

from __future__ import annotations


def command(target: str, session: str, *args: str) -> str:
    """``command("gcp", "build", "backend_v1")`` -> ``nox -s build -- --target gcp backend_v1``;
    ``command("local", "deploy")`` -> ``nox -s deploy``."""
    rest = ([] if target == "local" else ["--target", target]) + [a for a in args if a]
    return f"nox -s {session}" + (f" -- {' '.join(rest)}" if rest else "")
