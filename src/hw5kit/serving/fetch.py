"""Fetching an image from a URL a stranger sent, without becoming their proxy (SSRF).

A backend on Cloud Run sits next to Google's metadata server (169.254.169.254), which hands out
the service account's token to anyone who asks from inside. So:

* only ``http`` and ``https``; no credentials, backslashes, control characters or IPv6 zone ids
  in the URL; non-ASCII in the path is percent-encoded, so nothing the caller wrote can add a
  header or a second request line;
* the host is resolved here and *every* address it resolves to is checked: loopback, private,
  link-local (the metadata server), unspecified, multicast, reserved, shared (CGNAT) and
  IPv4-mapped / 6to4 / NAT64 / Teredo IPv6 forms of those are refused. Numeric hosts in any
  legacy IPv4 spelling (``2130706433``, ``0x7f.1``, ``127.1``) are read as the address the
  operating system would use, without a DNS query;
* the connection goes to the address that was checked (no second DNS lookup that a rebinding
  server could answer differently), with the original name for Host and TLS (SNI and
  certificate check against the name);
* redirects are followed by hand, at most ``max_redirects``, each one checked again like the
  first URL; a redirect to another scheme (``file:``, ``ftp:``, ...) is refused;
* time is bounded at every step: the DNS lookup (in a helper thread we stop waiting for), the
  connect, each read, and the whole fetch: a watchdog shuts the socket down at the total
  deadline, whatever the fetch is blocked in (TLS handshake, headers dripped byte by byte);
* size is bounded (announced and actual); the body is never decompressed (we ask for
  ``identity`` and refuse a ``Content-Encoding``), so a gzip bomb stays a small download.

Loopback is allowed only with ``FetchLimits.allow_loopback`` (``HW5_ALLOW_LOOPBACK=1``), which
the local target sets and nothing else does.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import ipaddress
import itertools
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

from .errors import (
    BlockedDestination,
    FetchFailed,
    FetchTimeout,
    InvalidURL,
    PayloadTooLarge,
    RemoteStatus,
    ServingError,
    TooManyRedirects,
    UnsupportedScheme,
)
from .settings import FetchLimits

USER_AGENT = "hw5kit-image-fetcher/1.0"
MAX_URL_LENGTH = 4096
MAX_DNS_LOOKUPS = 16  # concurrent lookups; past that a fetch waits (within its time limit)
_REDIRECTS = (301, 302, 303, 307, 308)
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
            f"'url' has no scheme; expected https://... or http://..., got {_show(url)}"
        )
    if scheme not in ("http", "https"):
        raise UnsupportedScheme(f"only http and https URLs are fetched, not {scheme}:")
    if not parts.netloc:
        raise InvalidURL(f"'url' must be absolute, like https://example.com/cat.jpg: {_show(url)}")
    if parts.username is not None or parts.password is not None:
        raise InvalidURL("'url' must not contain credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise InvalidURL(f"'url' has no host: {_show(url)}")
    if "%" in host:
        raise InvalidURL("'url' has an IPv6 zone id or a percent sign in its host")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidURL(f"'url' has an invalid host name {_show(host)}") from None
    if port is None:
        port = 443 if scheme == "https" else 80
    if port == 0:
        raise InvalidURL("'url' has port 0")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return ParsedURL(scheme, ascii_host.rstrip(".") or ascii_host, port, quote(path, _PATH_SAFE))


def _show(text: str, limit: int = 80) -> str:
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


class _Watchdog:
    """Shuts sockets down when their deadline passes, whatever their thread is blocked in.

    It keeps its own duplicate of each socket's descriptor: shutting that down ends the
    connection even if the fetch closed its own descriptor meanwhile, and a recycled descriptor
    number can never be hit by mistake.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._socks: dict[int, socket.socket] = {}
        self._fired: set[int] = set()
        self._keys = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, deadline: float) -> int:
        dup = sock.dup()
        with self._cond:
            key = next(self._keys)
            self._socks[key] = dup
            heapq.heappush(self._heap, (deadline, key))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fetch-watchdog")
                self._thread.daemon = True
                self._thread.start()
            self._cond.notify()
        return key

    def release(self, key: int) -> bool:
        """Stop watching; True if the deadline had already fired."""
        with self._cond:
            dup = self._socks.pop(key, None)
            fired = key in self._fired
            self._fired.discard(key)
        if dup is not None:
            dup.close()
        return fired

    def fired(self, key: int) -> bool:
        with self._cond:
            return key in self._fired

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, key = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                dup = self._socks.pop(key, None)
                if dup is not None:
                    self._fired.add(key)
            if dup is not None:
                with contextlib.suppress(OSError):
                    dup.shutdown(socket.SHUT_RDWR)
                dup.close()


_watchdog = _Watchdog()


def default_ssl_context() -> ssl.SSLContext:
    try:
        import certifi

        context = ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover - requests (a dependency) brings certifi
        context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass(frozen=True)
class Fetched:
    data: bytes
    url: str
    content_type: str | None
    redirects: int
    seconds: float


class _Deadline(Exception):
    """The watchdog ended the connection: the total time limit passed."""


class Fetcher:
    """Fetches image bytes from public http(s) URLs within ``FetchLimits``."""

    def __init__(self, limits: FetchLimits, *, ssl_context: ssl.SSLContext | None = None):
        self.limits = limits
        self._ssl = ssl_context

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = default_ssl_context()
        return self._ssl

    def fetch(self, url: str) -> Fetched:
        limits = self.limits
        start = time.monotonic()
        deadline = start + limits.total_timeout
        current = url
        for hop in range(limits.max_redirects + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout(url)
            target = self._check(current, hop, min(limits.connect_timeout, remaining))
            status, headers, data = self._get(target, deadline, url)
            if status in _REDIRECTS:
                location = headers.get("Location")
                if not location:
                    raise FetchFailed(f"{target.host} redirected without a Location")
                current = urljoin(current, _header_text(location))
                continue
            return Fetched(
                data=data,
                url=current,
                content_type=headers.get("Content-Type"),
                redirects=hop,
                seconds=time.monotonic() - start,
            )
        raise TooManyRedirects(f"more than {limits.max_redirects} redirects fetching {url}")

    def _check(self, url: str, hop: int, dns_timeout: float) -> Target:
        if hop == 0:
            return check_destination(url, self.limits, dns_timeout=dns_timeout)
        try:
            return check_destination(url, self.limits, dns_timeout=dns_timeout)
        except BlockedDestination as exc:
            raise BlockedDestination(
                f"the URL redirected to {_show(url)}; {exc.message}", details=exc.details
            ) from None
        except (InvalidURL, UnsupportedScheme) as exc:
            raise FetchFailed(
                f"the URL redirected to {_show(url)}, which is not fetched: {exc.message}",
                code="bad_redirect",
            ) from None

    def _timeout(self, url: str) -> FetchTimeout:
        return FetchTimeout(
            f"fetching {_show(url)} took longer than {self.limits.total_timeout:g} s"
        )

    def _connect(self, target: Target, deadline: float) -> tuple[socket.socket, int]:
        """A socket connected to one of the checked addresses (tried in order), watched by the
        deadline watchdog, TLS-wrapped for https with the URL's name for SNI and the check."""
        problem: str = "no address"
        for address in target.addresses:
            timeout = min(self.limits.connect_timeout, deadline - time.monotonic())
            if timeout <= 0:
                raise _Deadline
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            key = _watchdog.watch(sock, deadline)
            try:
                sock.settimeout(timeout)
                sock.connect((address, target.port))
            except TimeoutError:
                problem = f"connecting to {target.host} took longer than {timeout:g} s"
            except OSError as exc:
                problem = f"could not connect to {target.host}:{target.port}: {_first_line(exc)}"
            else:
                try:
                    return self._tls(sock, key, target), key
                except BaseException:
                    _watchdog.release(key)
                    raise
            fired = _watchdog.release(key)
            sock.close()
            if fired:
                raise _Deadline
        if problem.startswith("connecting"):
            raise FetchTimeout(problem)
        raise FetchFailed(problem, code="connection_failed")

    def _tls(self, sock: socket.socket, key: int, target: Target) -> socket.socket:
        if target.scheme != "https":
            return sock
        try:
            return self.ssl_context.wrap_socket(sock, server_hostname=target.host)
        except ssl.SSLError as exc:
            problem = _first_line(exc)
        except TimeoutError:
            raise FetchTimeout(f"the TLS handshake with {target.host} stalled") from None
        except OSError as exc:
            problem = _first_line(exc)
        sock.close()
        if _watchdog.fired(key):
            raise _Deadline
        raise FetchFailed(f"TLS with {target.host} failed: {problem}", code="tls_error")

    def _get(self, target: Target, deadline: float, url: str) -> tuple[int, dict, bytes]:
        """One GET to the checked address: (status, headers, body; empty for a redirect)."""
        key = None
        conn = None
        try:
            sock, key = self._connect(target, deadline)
            sock.settimeout(min(self.limits.read_timeout, max(deadline - time.monotonic(), 0.001)))
            conn = http.client.HTTPConnection(target.host, target.port)
            conn.sock = sock  # already connected to the checked address: no lookup here
            try:
                conn.request(
                    "GET",
                    target.path,
                    headers={
                        "Host": target.host_header,
                        "User-Agent": USER_AGENT,
                        "Accept": "image/*",
                        "Accept-Encoding": "identity",
                        "Connection": "close",
                    },
                )
                response = conn.getresponse()
            except TimeoutError:
                raise FetchTimeout(
                    f"{target.host} did not answer within {self.limits.read_timeout:g} s"
                ) from None
            headers = {k.title(): v for k, v in response.getheaders()}
            if response.status in _REDIRECTS:
                return response.status, headers, b""
            if response.status >= 400:
                raise RemoteStatus(
                    f"the image URL answered HTTP {response.status}",
                    details={"remote_status": response.status, "url": target.url},
                )
            if response.status != 200:
                raise FetchFailed(f"the image URL answered HTTP {response.status}, not 200")
            encoding = headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise FetchFailed(
                    f"the server sent the image {encoding}-encoded; only unencoded bodies are "
                    "accepted (a compressed body could expand without limit)",
                    code="unsupported_encoding",
                )
            data = self._read_body(response, sock, deadline, url)
            if _watchdog.fired(key):  # the body "ended" because the deadline shut the socket
                raise self._timeout(url)
            return response.status, headers, data
        except ServingError:
            if key is not None and _watchdog.fired(key):
                raise self._timeout(url) from None
            raise
        except _Deadline:
            raise self._timeout(url) from None
        except (http.client.HTTPException, OSError, ValueError) as exc:
            if key is not None and _watchdog.fired(key):
                raise self._timeout(url) from None
            if isinstance(exc, TimeoutError):
                raise FetchTimeout(f"the download of {_show(url)} stalled") from None
            raise FetchFailed(
                f"{target.host} sent a broken answer: {_first_line(exc)}",
                code="connection_failed",
            ) from None
        finally:
            if key is not None:
                _watchdog.release(key)
            if conn is not None:
                conn.close()

    def _read_body(self, response, sock, deadline: float, url: str) -> bytes:
        limit = self.limits.max_bytes
        announced = response.getheader("Content-Length")
        if announced and announced.strip().isdigit() and int(announced) > limit:
            raise PayloadTooLarge(
                f"the image at the URL is {int(announced):,} bytes; the limit is {limit:,}",
                details={"max_bytes": limit},
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout(url)
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
        if response.length:  # the connection ended before the announced length
            raise FetchFailed(
                f"the download was cut off after {size:,} bytes "
                f"of {size + response.length:,} announced",
                code="connection_failed",
            )
        return b"".join(chunks)


def _header_text(value: str) -> str:
    """http.client decodes header bytes as Latin-1; a UTF-8 Location is read back as UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
