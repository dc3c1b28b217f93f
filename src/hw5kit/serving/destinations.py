"""Where a fetch may go: the URL a stranger sent, read and checked before any connection.

A backend on Cloud Run sits next to Google's metadata server (169.254.169.254), which hands out
the service account's token to anyone who asks from inside. So:

* only ``http`` and ``https``; no credentials, backslashes, control characters or IPv6 zone ids
  in the URL; non-ASCII in the path is percent-encoded, so nothing the caller wrote can add a
  header or a second request line (``parse_url``);
* the host is resolved here (``resolve``, within a time limit) and *every* address it resolves
  to is checked (``address_problem``): loopback, private, link-local (the metadata server),
  unspecified, multicast, reserved, shared (CGNAT) and IPv4-mapped / 6to4 / NAT64 / Teredo IPv6
  forms of those are refused. Numeric hosts in any legacy IPv4 spelling (``2130706433``,
  ``0x7f.1``, ``127.1``) are read as the address the operating system would use, without a DNS
  query;
* ``check_destination`` returns a ``Target`` pinned to the addresses it checked: the fetcher
  (``fetch.py``) connects to those, never resolving the name again (a rebinding server cannot
  answer differently the second time).

Loopback is allowed only with ``FetchLimits.allow_loopback`` (``HW5_ALLOW_LOOPBACK=1``), which
the local target sets and nothing else does.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from .errors import BlockedDestination, FetchFailed, FetchTimeout, InvalidURL, UnsupportedScheme
from .settings import FetchLimits

MAX_URL_LENGTH = 4096
MAX_DNS_LOOKUPS = 16  # concurrent lookups; past that a fetch waits (within its time limit)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")
# printable ASCII stays as written (existing %XX escapes included); the rest is percent-encoded
_PATH_SAFE = "".join(chr(c) for c in range(33, 127))

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_problem(ip: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why this service must not connect to ``ip``, or None if it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: ipaddress.IPv4Address | None = None
        form = ""
        if ip.ipv4_mapped is not None:
            embedded, form = ip.ipv4_mapped, "IPv4-mapped"
        elif ip.sixtofour is not None:
            embedded, form = ip.sixtofour, "6to4"
        elif ip in _NAT64:
            embedded, form = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
        elif ip.teredo is not None:
            return "a Teredo tunnel address"
        if embedded is not None:
            inner = address_problem(embedded, allow_loopback=allow_loopback)
            return f"{inner} ({form} IPv6 form of {embedded})" if inner else None
        if ip.scope_id:
            return "a scoped IPv6 address"
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_link_local:
        return "a link-local address (this includes the cloud metadata server)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private-network address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "an address that is not publicly routable"
    return None


@dataclass(frozen=True)
class ParsedURL:
    scheme: str
    host: str  # ASCII: IDNA-encoded name or IP literal without brackets
    port: int
    path: str  # path + query, ASCII only

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class Target:
    """A checked URL, pinned to the address that was checked."""

    url: str
    parsed: ParsedURL
    addresses: tuple[str, ...]  # every one checked; tried in order

    @property
    def address(self) -> str:
        return self.addresses[0]

    @property
    def scheme(self) -> str:
        return self.parsed.scheme

    @property
    def host(self) -> str:
        return self.parsed.host

    @property
    def port(self) -> int:
        return self.parsed.port

    @property
    def path(self) -> str:
        return self.parsed.path

    @property
    def host_header(self) -> str:
        return self.parsed.host_header


def parse_url(url: object) -> ParsedURL:
    """Validate the URL's form. Raises 400 errors (``invalid_url``, ``unsupported_scheme``)."""
    if not isinstance(url, str):
        raise InvalidURL(f"'url' must be a string, got {type(url).__name__}")
    url = url.strip()
    if not url:
        raise InvalidURL("'url' is empty")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURL(f"'url' is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 33 or 127 <= ord(c) < 160 for c in url):
        raise InvalidURL("'url' contains spaces or control characters; percent-encode them")
    if "\\" in url:
        raise InvalidURL("'url' contains a backslash; use '/' or percent-encode it")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"'url' is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise InvalidURL(
            f"'url' has no scheme; expected https://... or http://..., got {show(url)}"
        )
    if scheme not in ("http", "https"):
        raise UnsupportedScheme(f"only http and https URLs are fetched, not {scheme}:")
    if not parts.netloc:
        raise InvalidURL(f"'url' must be absolute, like https://example.com/cat.jpg: {show(url)}")
    if parts.username is not None or parts.password is not None:
        raise InvalidURL("'url' must not contain credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise InvalidURL(f"'url' has no host: {show(url)}")
    if "%" in host:
        raise InvalidURL("'url' has an IPv6 zone id or a percent sign in its host")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidURL(f"'url' has an invalid host name {show(host)}") from None
    if port is None:
        port = 443 if scheme == "https" else 80
    if port == 0:
        raise InvalidURL("'url' has port 0")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return ParsedURL(scheme, ascii_host.rstrip(".") or ascii_host, port, quote(path, _PATH_SAFE))


def show(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """A host the OS would read as an IPv4 address in a legacy form (``127.1``, ``0x7f000001``,
    ``2130706433``): the address, found without asking DNS."""
    if not _NUMERIC_HOST.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


_dns_slots = threading.BoundedSemaphore(MAX_DNS_LOOKUPS)


def _getaddrinfo_within(host: str, port: int, timeout: float) -> list:
    """``socket.getaddrinfo`` with a time limit: the lookup runs in a daemon thread and we stop
    waiting for it at ``timeout`` (the C resolver cannot be interrupted)."""
    if timeout <= 0 or not _dns_slots.acquire(timeout=timeout):
        raise FetchTimeout(f"resolving {host!r} took longer than the time limit")
    box: dict = {}
    done = threading.Event()

    def lookup() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except BaseException as exc:  # handed to the waiting thread
            box["error"] = exc
        finally:
            _dns_slots.release()
            done.set()

    threading.Thread(target=lookup, name="dns-lookup", daemon=True).start()
    if not done.wait(timeout):
        raise FetchTimeout(f"resolving {host!r} took longer than {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["infos"]


def resolve(host: str, port: int, timeout: float = 3.0) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself, without DNS)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    numeric = _numeric_ipv4(host)
    if numeric is not None:
        return [numeric]
    try:
        infos = _getaddrinfo_within(host, port, timeout)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise FetchFailed(
            f"the host {host!r} could not be resolved ({exc})", code="dns_failure"
        ) from None
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise FetchFailed(f"the host {host!r} has no address", code="dns_failure")
    return addresses


def check_destination(url: str, limits: FetchLimits, *, dns_timeout: float | None = None) -> Target:
    """Parse, resolve and vet one URL; the returned Target pins the checked address."""
    parsed = parse_url(url)
    timeout = limits.connect_timeout if dns_timeout is None else dns_timeout
    addresses = resolve(parsed.host, parsed.port, timeout)
    for ip in addresses:
        problem = address_problem(ip, allow_loopback=limits.allow_loopback)
        if problem:
            raise BlockedDestination(
                f"refusing to fetch {parsed.host!r}: it resolves to {ip}, {problem}",
                details={"host": parsed.host, "address": str(ip)},
            )
    return Target(url, parsed, tuple(str(ip) for ip in addresses))
