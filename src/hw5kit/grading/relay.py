"""The gcloud a sandboxed script calls: a small client on its PATH that forwards its arguments
over a Unix socket to the fake gcloud running *in the grader* (``GcloudRelay``), so the script
can neither read nor forge the fake's state or call log. Only the current run's uid is admitted
(the kernel's SO_PEERCRED), and the calls of one script are counted and capped."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .limits import SandboxUnavailable
from .runas import Identity

RELAY_CLIENT = r"""
import json, os, socket, sys
SOCKET = {socket_path!r}
request = {{
    "argv": sys.argv[1:],
    "cwd": os.getcwd() if os.path.isdir(".") else "/",
    "env": {{k: v for k, v in os.environ.items() if k.startswith("CLOUDSDK_")}},
}}
try:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(SOCKET)
    conn.sendall(json.dumps(request).encode() + b"\n")
    conn.shutdown(socket.SHUT_WR)
    data = b"".join(iter(lambda: conn.recv(65536), b""))
    answer = json.loads(data)
except Exception as exc:
    sys.stderr.write("ERROR: (gcloud) the grader's fake gcloud did not answer: %s\n" % exc)
    sys.exit(1)
sys.stdout.write(answer.get("stdout", ""))
sys.stderr.write(answer.get("stderr", ""))
sys.exit(int(answer.get("code", 1)))
"""


Handler = Callable[[list[str], str, dict[str, str]], dict[str, Any]]


class _RelayServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True
    relay: GcloudRelay


class _RelayRequest(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        relay = self.server.relay  # type: ignore[attr-defined]
        self.connection.settimeout(10)
        if not relay.admits(self.connection):
            return  # another run's leftover, or anyone else: no answer at all
        try:
            raw = self.rfile.readline(relay.max_request)
            request = json.loads(raw)
            argv = [str(a) for a in request["argv"]]
            cwd = str(request.get("cwd") or "/")
            env = {str(k): str(v) for k, v in dict(request.get("env") or {}).items()}
        except (ValueError, KeyError, TypeError, OSError):
            answer = {"stdout": "", "stderr": "ERROR: (gcloud) malformed request\n", "code": 2}
        else:
            answer = relay.dispatch(argv, cwd, env)
        with contextlib.suppress(OSError):
            self.wfile.write(json.dumps(answer).encode())


class GcloudRelay:
    """A Unix-socket server in the grader answering the sandbox's ``gcloud`` calls.

    ``handler(argv, cwd, env)`` returns ``{"stdout", "stderr", "code"}``; the relay counts calls
    and refuses past ``limit``. ``bin_dir`` holds the ``gcloud`` client to put first on PATH."""

    max_request = 256 * 2**10

    def __init__(self, base: Path, handler: Handler, *, python: str, limit: int = 60):
        self.base = base
        self.handler = handler
        self.limit = limit
        self.calls = 0
        self._lock = threading.Lock()
        self.bin_dir = base / "bin"
        self.socket_dir = base / "relay"
        self.socket_path = self.socket_dir / "gcloud.sock"
        self.bin_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.socket_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        if len(str(self.socket_path)) > 100:
            raise SandboxUnavailable(
                f"the grader's temporary folder path is too long for a Unix socket "
                f"({self.socket_path}); set TMPDIR to a shorter folder such as /tmp"
            )
        client = self.bin_dir / "gcloud"
        client.write_text(
            f"#!{python} -IS\n"
            "# the grader's gcloud: forwards to the fake gcloud outside the sandbox\n"
            + RELAY_CLIENT.format(socket_path=str(self.socket_path))
        )
        client.chmod(0o755)
        self.client = client
        self._server: _RelayServer | None = None
        self._thread: threading.Thread | None = None
        self._uid = os.getuid()  # the only caller admitted (the current run's identity)
        self.refused = 0

    def allow(self, identity: Identity | None) -> None:
        """Admit the run of ``identity`` only (None: the grader's own uid, for ``none`` mode and a
        grader that is not root): the socket becomes that uid's, mode 0600."""
        uid = identity.uid if identity else os.getuid()
        gid = identity.gid if identity else os.getgid()
        with self._lock:
            self._uid = uid
        os.chown(self.socket_path, uid, gid)
        os.chmod(self.socket_path, 0o600)

    def admits(self, connection: socket.socket) -> bool:
        """The caller's uid, as the kernel tells it (SO_PEERCRED), is the current run's."""
        try:
            raw = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            _pid, uid, _gid = struct.unpack("3i", raw)
        except OSError:
            return False
        with self._lock:
            ok = uid == self._uid
            self.refused += not ok
        return ok

    def reset_count(self) -> None:
        with self._lock:
            self.calls = 0

    def dispatch(self, argv: list[str], cwd: str, env: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
            over = self.calls > self.limit
        if over:
            return {
                "stdout": "",
                "stderr": f"ERROR: (gcloud) the grader allows at most {self.limit} gcloud calls "
                "per script\n",
                "code": 1,
            }
        try:
            return self.handler(argv, cwd, env)
        except Exception as exc:  # a bug in the fake must not kill the grader
            return {
                "stdout": "",
                "stderr": f"ERROR: (gcloud) fake gcloud failed: {exc}\n",
                "code": 1,
            }

    def __enter__(self) -> GcloudRelay:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        server = _RelayServer(str(self.socket_path), _RelayRequest)
        server.relay = self
        self.allow(None)  # each run admits its own identity (``allow``)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="gcloud-relay")
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()


def relay_python() -> str | None:
    """A python3 the sandbox can see (only /usr is visible inside bubblewrap)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None
