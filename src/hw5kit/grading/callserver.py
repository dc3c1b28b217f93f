"""Running fake gcloud calls bounded in time and memory, out of the grader's own process.

The grader (``cloud.py``) starts a few of these servers (``python -c ... callserver.main``)
with the fake gcloud already imported. For each request (one gcloud command line) a server
forks a child, which lowers its address-space and CPU limits, runs the call on the fake's state
directory, reading files through the confined reader, and writes its answer to a pipe. The
server waits at most the call's timeout, kills the child when it is over, reaps it (its
resident peak comes back with the answer) and answers the grader. A server forks from a single
thread, which forking the grader itself (it has threads) would not be.

Protocol on the server's stdin/stdout: a 4-byte big-endian length, then that many bytes of JSON,
one request, one answer, in turn.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

ANSWER_CAP = 4 * 2**20 + 2**16  # bytes of JSON a call may hand back (its output is capped)
OUTPUT_CAP = 2**20  # characters of stdout and of stderr a call may hand back
STOPPED = "the grader stopped this call of the fake gcloud: "


def failure(message: str) -> dict[str, Any]:
    return {"stdout": "", "stderr": f"ERROR: (gcloud) {message}\n", "code": 1}


def read_message(stream: BinaryIO) -> Any:
    header = stream.read(4)
    if len(header) < 4:
        return None
    (size,) = struct.unpack(">I", header)
    return json.loads(stream.read(size))


def write_message(stream: BinaryIO, data: Any) -> None:
    raw = json.dumps(data).encode()
    stream.write(struct.pack(">I", len(raw)) + raw)
    stream.flush()


def _capped(text: str) -> str:
    if len(text) <= OUTPUT_CAP:
        return text
    half = OUTPUT_CAP // 2
    return text[:half] + "\n[... output cut by the grader ...]\n" + text[-half:]


def _child(request: dict[str, Any]) -> dict[str, Any]:
    """In the forked child: limits, then the call."""
    from ..confined import Confined
    from ..gcloud_fake import cli as fake_cli

    with open("/proc/self/statm") as fh:
        current = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap = current + int(request["memory"])
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    cpu = max(1, int(request["cpu"]))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    try:
        result = fake_cli.run(
            request["argv"],
            state_dir=Path(request["state_dir"]),
            env=request["env"],
            cwd=Path(request["cwd"]),
            files=Confined(request["root"], request["uid"], request["gid"]),
        )
    except MemoryError:
        return failure(f"{STOPPED}it needed more than {int(request['memory']) // 2**20} MiB")
    except Exception as exc:  # a bug in the fake must not stop the grading
        return failure(f"fake gcloud failed: {type(exc).__name__}: {exc}")
    return {"stdout": _capped(result.stdout), "stderr": _capped(result.stderr), "code": result.code}


def serve(request: dict[str, Any]) -> dict[str, Any]:
    """One call in a forked child, waited for at most ``request["timeout"]`` seconds."""
    timeout = float(request["timeout"])
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        try:
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)  # the protocol's stream is not the child's to write on
            answer = _child(request)
        except BaseException as exc:  # the child must always answer
            answer = failure(f"fake gcloud failed: {type(exc).__name__}")
        data = json.dumps(answer).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view) :]
        os._exit(0)
    os.close(write_end)
    chunks: list[bytes] = []
    total = 0
    deadline = time.monotonic() + timeout
    answer: dict[str, Any] | None = None
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                answer = failure(f"{STOPPED}it took more than {timeout:g} s")
                break
            ready, _, _ = select.select([read_end], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(read_end, 2**16)
            if not chunk:
                break
            total += len(chunk)
            if total > ANSWER_CAP:
                answer = failure(f"{STOPPED}it printed too much")
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
    if answer is not None:
        os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    if answer is None:
        try:
            answer = json.loads(b"".join(chunks))
        except ValueError:
            how = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            what = (
                "ran out of CPU time"
                if how in (-signal.SIGXCPU, -signal.SIGKILL)
                else (f"ended abnormally ({how})")
            )
            answer = failure(f"{STOPPED}it {what}")
    answer["rss_kib"] = usage.ru_maxrss
    return answer


def main() -> None:
    """Answer requests on stdin until it closes."""
    from ..gcloud_fake import cli, cloudbuild, commands, gcloudignore  # noqa: F401 - preload

    commands.preload()
    cloudbuild.schema()
    import jsonschema  # noqa: F401 - builds need it; import it once here, not per call

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the grader stops it by closing stdin
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        request = read_message(stdin)
        if request is None:
            return
        write_message(stdout, serve(request))
