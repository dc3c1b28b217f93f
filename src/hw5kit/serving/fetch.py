"""Fetching an image from a URL a stranger sent, without becoming their proxy (SSRF).

A backend on Cloud Run sits next to Google's metadata server (169.254.169.254), which hands out
the service account's token to anyone who asks from inside. So:

* only ``http`` and ``https``, no credentials in the URL;
* the host is resolved here and *every* address it resolves to is checked: loopback, private,
  link-local (the metadata server), unspecified, multicast, reserved, shared (CGNAT) and
  IPv4-mapped / 6to4 / NAT64 / Teredo IPv6 forms of those are refused;
* the connection goes to the address that was checked (no second DNS lookup that a rebinding
  server could answer differently), with the original name for Host and TLS (SNI and
  certificate check);
* redirects are followed by hand, at most ``max_redirects``, each one checked again;
* connect, read and total time are limited, and so is the size (announced and actual).

Loopback is allowed only with ``FetchLimits.allow_loopback`` (``HW5_ALLOW_LOOPBACK=1``), which
the local target sets and nothing else does.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)

from .errors import (
    BlockedDestination,
    FetchFailed,
    FetchTimeout,
    InvalidURL,
    PayloadTooLarge,
    RemoteStatus,
    TooManyRedirects,
    UnsupportedScheme,
)
from .settings import FetchLimits

USER_AGENT = "hw5kit-image-fetcher/1.0"
MAX_URL_LENGTH = 4096
_REDIRECTS = (301, 302, 303, 307, 308)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

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
class Target:
    url: str
    scheme: str
    host: str
    port: int
    path: str
    address: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: object) -> tuple[str, str, int, str]:
    """Validate the URL's form: (scheme, host, port, path+query). Raises 400 errors."""
    if not isinstance(url, str):
        raise InvalidURL(f"'url' must be a string, got {type(url).__name__}")
    url = url.strip()
    if not url:
        raise InvalidURL("'url' is empty")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURL(f"'url' is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise InvalidURL("'url' contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"'url' is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise InvalidURL(f"'url' has no scheme; expected http:// or https://, got {url[:80]!r}")
    if scheme not in ("http", "https"):
        raise UnsupportedScheme(f"only http and https URLs are fetched, not {scheme}://")
    if parts.username is not None or parts.password is not None:
        raise InvalidURL("'url' must not contain credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise InvalidURL(f"'url' has no host: {url[:80]!r}")
    try:
        host.encode("idna")
    except UnicodeError:
        raise InvalidURL(f"'url' has an invalid host name {host[:80]!r}") from None
    if port is None:
        port = 443 if scheme == "https" else 80
    if port == 0:
        raise InvalidURL("'url' has port 0")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, host, port, path


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchFailed(
            f"the host {host!r} could not be resolved ({exc})", code="dns_failure"
        ) from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise FetchFailed(f"the host {host!r} has no address", code="dns_failure")
    return addresses


def check_destination(url: str, limits: FetchLimits) -> Target:
    """Parse, resolve and vet one URL; the returned Target pins the checked address."""
    scheme, host, port, path = parse_url(url)
    addresses = resolve(host, port)
    for ip in addresses:
        problem = address_problem(ip, allow_loopback=limits.allow_loopback)
        if problem:
            raise BlockedDestination(
                f"refusing to fetch {host!r}: it resolves to {ip}, {problem}",
                details={"host": host, "address": str(ip)},
            )
    return Target(url, scheme, host, port, path, str(addresses[0]))


@dataclass(frozen=True)
class Fetched:
    data: bytes
    url: str
    content_type: str | None
    redirects: int
    seconds: float


class Fetcher:
    """Fetches image bytes from public http(s) URLs within ``FetchLimits``."""

    def __init__(self, limits: FetchLimits):
        self.limits = limits

    def _pool(self, target: Target, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
        common = {"maxsize": 1, "retries": False, "timeout": timeout, "block": False}
        if target.scheme == "https":
            return urllib3.HTTPSConnectionPool(
                target.address,
                target.port,
                server_hostname=target.host,
                assert_hostname=target.host,
                cert_reqs="CERT_REQUIRED",
                **common,
            )
        return urllib3.HTTPConnectionPool(target.address, target.port, **common)

    def fetch(self, url: str) -> Fetched:
        limits = self.limits
        start = time.monotonic()
        deadline = start + limits.total_timeout
        current = url
        for hop in range(limits.max_redirects + 1):
            target = check_destination(current, limits)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FetchTimeout(f"fetching {url} took longer than {limits.total_timeout:g} s")
            timeout = urllib3.Timeout(
                connect=min(limits.connect_timeout, remaining),
                read=min(limits.read_timeout, remaining),
            )
            pool = self._pool(target, timeout)
            try:
                response = pool.urlopen(
                    "GET",
                    target.path,
                    headers={
                        "Host": target.host_header,
                        "User-Agent": USER_AGENT,
                        "Accept": "image/*",
                        "Accept-Encoding": "identity",
                    },
                    redirect=False,
                    retries=False,
                    preload_content=False,
                    assert_same_host=False,
                )
            except NewConnectionError as exc:  # before ConnectTimeoutError, its base class
                raise FetchFailed(
                    f"could not connect to {target.host}:{target.port}: {_first_line(exc)}",
                    code="connection_failed",
                ) from None
            except ConnectTimeoutError:
                raise FetchTimeout(
                    f"connecting to {target.host} took longer than {timeout.connect_timeout:g} s"
                ) from None
            except ReadTimeoutError:
                raise FetchTimeout(
                    f"{target.host} did not answer within {timeout.read_timeout:g} s"
                ) from None
            except SSLError as exc:
                raise FetchFailed(
                    f"TLS with {target.host} failed: {_first_line(exc)}", code="tls_error"
                ) from None
            except (HTTPError, OSError) as exc:
                raise FetchFailed(
                    f"could not connect to {target.host}:{target.port}: {_first_line(exc)}",
                    code="connection_failed",
                ) from None
            try:
                if response.status in _REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise FetchFailed(f"{target.host} redirected without a Location")
                    current = urljoin(current, location)
                    continue
                if response.status >= 400:
                    raise RemoteStatus(
                        f"the image URL answered HTTP {response.status}",
                        details={"remote_status": response.status, "url": current},
                    )
                if response.status != 200:
                    raise FetchFailed(f"the image URL answered HTTP {response.status}, not 200")
                data = self._read_body(response, deadline, url)
                return Fetched(
                    data=data,
                    url=current,
                    content_type=response.headers.get("Content-Type"),
                    redirects=hop,
                    seconds=time.monotonic() - start,
                )
            finally:
                response.release_conn()
                pool.close()
        raise TooManyRedirects(f"more than {limits.max_redirects} redirects fetching {url}")

    def _read_body(self, response, deadline: float, url: str) -> bytes:
        limit = self.limits.max_bytes
        announced = response.headers.get("Content-Length")
        if announced and announced.isdigit() and int(announced) > limit:
            raise PayloadTooLarge(
                f"the image at the URL is {int(announced):,} bytes; the limit is {limit:,}",
                details={"max_bytes": limit},
            )
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FetchTimeout(
                        f"downloading {url} took longer than {self.limits.total_timeout:g} s"
                    )
                sock = getattr(getattr(response, "connection", None), "sock", None)
                if sock is not None:
                    sock.settimeout(min(self.limits.read_timeout, remaining))
                chunk = response.read1(64 * 1024)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(
                        f"the image at the URL is larger than the limit of {limit:,} bytes",
                        details={"max_bytes": limit},
                    )
                chunks.append(chunk)
        except (ReadTimeoutError, TimeoutError):
            raise FetchTimeout(f"the download of {url} stalled") from None
        except (HTTPError, OSError) as exc:
            raise FetchFailed(
                f"the download was cut off: {_first_line(exc)}", code="connection_failed"
            ) from None
        return b"".join(chunks)


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
