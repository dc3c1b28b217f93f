"""A port relay into and out of a container that has no network (``--network none``).

The container target runs every service with no network interface but loopback, so nothing
in it can reach the outside world, and relays exactly the connections serving needs:

* ``--inbound HOST_PORT:PORT``: listen on ``127.0.0.1:HOST_PORT`` on the host; each connection
  is relayed to ``127.0.0.1:PORT`` inside the container (the service's port);
* ``--outbound PORT``: listen on ``127.0.0.1:PORT`` inside the container; each connection is
  relayed to ``127.0.0.1:PORT`` on the host (a frontend reaching its backend's published port,
  so ``SERVING_URL`` is the same URL inside the container as on the host).

Sockets are made inside the container's network namespace by switching this thread into it
(``setns``) just long enough to create them: a socket stays in the namespace it was created
in. That needs root (CAP_SYS_ADMIN), as rootful podman and docker have. The relay exits when
the container's process does.

Usage: ``python -m hw5kit.containers.relay --pid PID --inbound 40123:8000 [--outbound 40111]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

CLONE_NEWNET = 0x40000000
LOOPBACK = "127.0.0.1"
CHUNK = 1 << 16


class RelayError(RuntimeError):
    pass


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def can_relay() -> bool:
    """True when this process may enter another network namespace (root)."""
    return os.geteuid() == 0


class Namespaces:
    """The host's and a container's network namespaces, by open file descriptor."""

    def __init__(self, pid: int):
        self.pid = pid
        try:
            self.host = os.open("/proc/self/ns/net", os.O_RDONLY)
            self.inside = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        except OSError as exc:
            raise RelayError(f"cannot open the network namespace of pid {pid}: {exc}") from None

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        _setns(self.inside)
        try:
            yield
        finally:
            _setns(self.host)

    def socket_inside(self, make: Callable[[], socket.socket]) -> socket.socket:
        with self.entered():
            return make()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def _join(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    (cr, cw), (ur, uw) = client, upstream
    try:
        await asyncio.gather(_pipe(cr, uw), _pipe(ur, cw))
    finally:
        for w in (cw, uw):
            w.close()
            with contextlib.suppress(OSError, ConnectionError):
                await w.wait_closed()


def _tcp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


async def _inbound(ns: Namespaces, host_port: int, port: int) -> asyncio.Server:
    loop = asyncio.get_running_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = ns.socket_inside(_tcp)
        try:
            await loop.sock_connect(sock, (LOOPBACK, port))
        except OSError:
            sock.close()
            writer.close()
            return
        await _join((reader, writer), await asyncio.open_connection(sock=sock))

    return await asyncio.start_server(handle, LOOPBACK, host_port, reuse_address=True)


async def _outbound(ns: Namespaces, port: int) -> asyncio.Server:
    def listener() -> socket.socket:
        sock = _tcp()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(64)
        return sock

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_connection(LOOPBACK, port)
        except OSError:
            writer.close()
            return
        await _join((reader, writer), upstream)

    return await asyncio.start_server(handle, sock=ns.socket_inside(listener))


async def serve(pid: int, inbound: list[tuple[int, int]], outbound: list[int]) -> None:
    ns = Namespaces(pid)
    servers = [await _inbound(ns, h, p) for h, p in inbound]
    servers += [await _outbound(ns, p) for p in outbound]
    print(
        f"relay for pid {pid}: "
        + ", ".join(
            [f"host {LOOPBACK}:{h} -> container :{p}" for h, p in inbound]
            + [f"container {LOOPBACK}:{p} -> host :{p}" for p in outbound]
        ),
        flush=True,
    )
    while Path(f"/proc/{pid}").exists():
        await asyncio.sleep(1.0)
    print(f"container process {pid} exited: relay done", flush=True)
    for server in servers:
        server.close()


def _pair(text: str) -> tuple[int, int]:
    host, sep, inside = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected HOST_PORT:PORT, got {text!r}")
    return int(host), int(inside)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw5kit.containers.relay", description=__doc__)
    p.add_argument("--pid", type=int, required=True, help="a process of the container")
    p.add_argument("--inbound", type=_pair, action="append", default=[], metavar="HOST:PORT")
    p.add_argument("--outbound", type=int, action="append", default=[], metavar="PORT")
    args = p.parse_args(argv)
    try:
        asyncio.run(serve(args.pid, args.inbound, args.outbound))
    except (RelayError, OSError) as exc:
        print(f"relay: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
