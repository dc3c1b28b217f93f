"""The fake ``gcloud`` executable's entry point: parse the arguments against the allow-list
(``spec.py``), run the command on the state directory, log the call, print what gcloud would.

Exit status: 0 success, 1 a command error (``ERROR: (gcloud.x.y) ...`` on stderr), 2 an
argument error (unknown command or flag, bad value), as the real CLI.
"""

from __future__ import annotations

import difflib
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..confined import Files, Plain
from . import commands, concurrency, spec
from .call import Call, GcloudError, Result
from .state import Store

STATE_ENV = "HW5_FAKE_GCLOUD_STATE"


def _suggest(name: str, command: spec.Command | None) -> str:
    names = [f.name for f in (*(command.flags if command else ()), *spec.GLOBAL_FLAGS)]
    close = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _allowed_flags(command: spec.Command) -> str:
    return ", ".join(f.name for f in command.flags) or "none"


def parse(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path, files: Files | None = None
) -> Call:
    argv = list(argv)
    flags: dict[str, str | bool] = {}
    path: list[str] = []
    command: spec.Command | None = None
    groups = spec.groups()
    positionals: list[str] = []
    i = 0
    unknown: list[str] = []
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positionals.extend(argv[i:])
            break
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=")
            flag = command.flag(name) if command else _global_flag(name)
            if flag is None:
                unknown.append(arg)
                continue
            if not flag.takes_value:
                if eq:
                    raise GcloudError(
                        f"argument {flag.name}: ignored explicit argument '{value}'",
                        2,
                        _dotted(path),
                    )
                flags[flag.name] = not name.startswith("--no-")
                continue
            if not eq:
                if i >= len(argv):
                    raise GcloudError(
                        f"argument {flag.name}: expected one argument", 2, _dotted(path)
                    )
                value = argv[i]
                i += 1
            if flag.choices and value not in flag.choices:
                choices = ", ".join(flag.choices)
                raise GcloudError(
                    f"argument {flag.name}: Invalid choice: '{value}'. "
                    f"Valid choices are [{choices}].",
                    2,
                    _dotted(path),
                )
            if flag.check is not None:
                problem = flag.check(value)
                if problem:
                    raise GcloudError(f"argument {flag.name}: {problem}", 2, _dotted(path))
            flags[flag.name] = value
            continue
        if command is None:
            candidate = (*path, arg)
            if candidate in spec.COMMANDS:
                command = spec.COMMANDS[candidate]
                path = list(candidate)
            elif candidate in groups:
                path = list(candidate)
            else:
                raise GcloudError(
                    f"Invalid choice: '{arg}'.\n(fake gcloud: the HW5 kit allows only: "
                    + "; ".join(sorted(c.name for c in spec.COMMANDS.values()))
                    + ")",
                    2,
                    _dotted(path),
                )
            continue
        positionals.append(arg)
    if command is None:
        raise GcloudError(
            "Command name argument expected.\n(fake gcloud: the HW5 kit allows only: "
            + "; ".join(sorted(c.name for c in spec.COMMANDS.values()))
            + ")",
            2,
            _dotted(path),
        )
    if unknown:
        hint = _suggest(unknown[0].partition("=")[0], command)
        raise GcloudError(
            f"unrecognized arguments: {' '.join(unknown)}{hint}\n(fake gcloud: {command.name} "
            f"accepts only the flags the HW5 kit uses: {_allowed_flags(command)}, and "
            f"{', '.join(f.name for f in spec.GLOBAL_FLAGS)})",
            2,
            command.dotted,
        )
    expected = command.positionals
    repeated = bool(expected) and expected[-1].repeated
    if len(positionals) > len(expected) and not repeated:
        extra = " ".join(positionals[len(expected) :])
        raise GcloudError(f"unrecognized arguments: {extra}", 2, command.dotted)
    for index, pos in enumerate(expected):
        if pos.required and index >= len(positionals):
            raise GcloudError(f"argument {pos.name}: Must be specified.", 2, command.dotted)
    return Call(command, flags, positionals, argv, env, cwd, files or Plain())


def _global_flag(name: str) -> spec.Flag | None:
    for f in spec.GLOBAL_FLAGS:
        if name in (f.name, f.short):
            return f
    return None


def _dotted(path: Sequence[str]) -> str:
    return ".".join(["gcloud", *path])


def run(
    argv: Sequence[str],
    *,
    state_dir: Path,
    env: Mapping[str, str],
    cwd: Path,
    files: Files | None = None,
) -> Result:
    """Run one gcloud command line; ``files`` reads what it names (default: as gcloud does)."""
    store = Store(state_dir)
    record: dict = {"argv": list(argv), "cwd": str(cwd), "time": time.time(), "command": None}
    try:
        call = parse(argv, env, cwd, files)
        record["command"] = call.command.name
        record["flags"] = call.flags
        record["positionals"] = call.positionals
        handler = commands.handler(call.command.handler)
        record["config_dir"] = concurrency.config_dir(env)
        settings = store.read()["settings"]
        with concurrency.Session(state_dir, env, bool(settings.get("config_dir_crash"))) as session:
            if session.crashed_at_start:
                result = Result(stderr=concurrency.CRASH, code=1, extra={"crash": "at start"})
            else:
                with store.locked() as state:
                    result = handler(call, state)
                # time the command takes after its effect (a build streaming its log, a
                # deploy waiting for its revision): outside the lock, as concurrent as gcloud
                hold = float(result.extra.pop("hold_seconds", 0) or 0)
                hold += float(settings.get("call_seconds", 0) or 0)
                hold += float((settings.get("slow") or {}).get(call.command.name, 0) or 0)
                if hold > 0:
                    time.sleep(hold)
                if result.extra.pop("crash_after", False) or session.collided():
                    result.stderr += concurrency.CRASH
                    result.code = 1
                    result.extra["crash"] = "after its effect"
    except GcloudError as exc:
        result = Result(stderr=f"ERROR: ({exc.command}) {exc.message}\n", code=exc.code)
    record["exit"] = result.code
    record["stdout"] = result.stdout[-4000:]
    record["stderr"] = result.stderr[-4000:]
    record.update(result.extra)
    store.log_call(record)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    state = os.environ.get(STATE_ENV)
    if not state:
        sys.stderr.write(f"fake gcloud: {STATE_ENV} is not set (see hw5kit.gcloud_fake)\n")
        return 1
    result = run(argv, state_dir=Path(state), env=os.environ, cwd=Path.cwd())
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    sys.stderr.flush()
    return result.code
