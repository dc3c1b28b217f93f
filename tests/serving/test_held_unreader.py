"""The buffering front's reader (``worker.HeldUnreader``): gunicorn's bytes, without the copies.

gunicorn's own unreader recopies everything it holds on each read (quadratic in an upload read
64 kB at a time); ``HeldUnreader`` must give the same bytes in the same order for any sequence
of reads, unreads and peeks, whatever the socket delivers per recv.
"""

import random

import pytest
from gunicorn.http.unreader import SocketUnreader

from hw5kit.serving.http.worker import HeldUnreader


class Sock:
    """A socket that delivers its bytes ``step`` at a time."""

    def __init__(self, data: bytes, step: int):
        self.data, self.pos, self.step = data, 0, step

    def recv(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + min(n, self.step)]
        self.pos += len(out)
        return out


def script(reader, seed: int) -> list:
    """Sized reads, unreads of part of what was read, and peeks at what is held."""
    rnd = random.Random(seed)
    log: list = []
    for _ in range(15):
        if rnd.random() < 0.65:
            got = reader.read(rnd.choice([0, 1, 5, 100, 700, 5000]), rnd.choice([None, 10000]))
            log.append(got)
            if got and rnd.random() < 0.3:
                keep = rnd.randint(0, len(got))
                reader.unread(got[keep:])
                log.append(("unread", keep))
        else:
            log.append(("held", reader.buf.getvalue()))
    log.append(("rest", reader.take_buffered()))
    return log


@pytest.mark.parametrize("seed", range(300))
def test_same_bytes_as_gunicorns_unreader(seed):
    rnd = random.Random(seed)
    held, arriving = rnd.randbytes(rnd.randint(0, 3000)), rnd.randbytes(rnd.randint(0, 3000))
    step = rnd.choice([1, 7, 1000, 100_000])
    theirs, ours = SocketUnreader(Sock(arriving, step)), HeldUnreader(Sock(arriving, step))
    theirs.unread(held)
    ours.unread(held)
    assert script(ours, seed) == script(theirs, seed)


def test_an_unsized_read_returns_at_most_a_socket_reads_worth_in_order():
    data = bytes(range(256)) * 4000  # a 1 MB request held whole
    reader = HeldUnreader(Sock(b"", 1))
    reader.unread(data)
    pieces = []
    while piece := reader.read():
        assert len(piece) <= reader.mxchunk
        pieces.append(piece)
    assert b"".join(pieces) == data


def test_install_replaces_only_gunicorns_socket_unreader():
    class Parser:
        unreader = SocketUnreader(Sock(b"tail", 100))

    parser = Parser()
    parser.unreader.unread(b"head-")
    held = HeldUnreader.install(parser)
    assert isinstance(held, HeldUnreader) and parser.unreader is held
    assert held.read(9) == b"head-tail"
    assert HeldUnreader.install(parser) is held  # already ours: kept, nothing lost
