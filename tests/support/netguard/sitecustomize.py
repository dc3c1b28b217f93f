"""Network guard for test subprocesses: only loopback may be reached.

Python imports ``sitecustomize`` at start-up from ``sys.path``; the tests put this folder first
on ``PYTHONPATH`` of every backend/frontend process they start. Any connection or name lookup
that would leave the machine is refused and written to ``$NETGUARD_LOG``, and the tests assert
that file stays empty: this is how "no network call at start-up" is checked, not assumed.
"""

import errno
import ipaddress
import os
import socket
import traceback

_LOG = os.environ.get("NETGUARD_LOG")
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_getaddrinfo = socket.getaddrinfo


def _is_local(host):
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).split("%", 1)[0].strip("[]")
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _record(what):
    if _LOG:
        stack = "".join(traceback.format_stack(limit=12)[:-2])
        with open(_LOG, "a") as log:
            log.write(f"pid {os.getpid()} blocked {what}\n{stack}\n")


def _guarded(self, address):
    inet = self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple)
    if inet and not _is_local(address[0]):
        _record(f"connect to {address!r}")
        raise OSError(errno.ENETUNREACH, f"netguard: no network in tests ({address[0]})")
    return True


def connect(self, address):
    _guarded(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _guarded(self, address)
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if not _is_local(host):
        _record(f"name lookup of {host!r}")
        raise socket.gaierror(socket.EAI_NONAME, f"netguard: no name lookups in tests ({host})")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
socket.getaddrinfo = getaddrinfo
