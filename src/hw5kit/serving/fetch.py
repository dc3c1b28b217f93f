"""Fetching an image from a URL a stranger sent, without becoming their proxy (SSRF).

Where a fetch may go is ``destinations.py``'s: the URL's form, every address its host resolves
to (the metadata server, private and loopback ranges refused), and a ``Target`` pinned to the
checked addresses. The fetcher then:

* connects to the address that was checked (no second DNS lookup that a rebinding server could
  answer differently), with the original name for Host and TLS (SNI and certificate check
  against the name);
* follows redirects by hand, at most ``max_redirects``, each one checked again like the first
  URL; a redirect to another scheme (``file:``, ``ftp:``, ...) is refused;
* bounds time at every step: the DNS lookup (in a helper thread we stop waiting for), the
  connect, each read, and the whole fetch: a watchdog shuts the socket down at the total
  deadline, whatever the fetch is blocked in (TLS handshake, headers dripped byte by byte);
* bounds size (announced and actual); the body is never decompressed (we ask for ``identity``
  and refuse a ``Content-Encoding``), so a gzip bomb stays a small download.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin

from .destinations import (
    Target,
    check_destination,
    show,
)
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
_REDIRECTS = (301, 302, 303, 307, 308)


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
                f"the URL redirected to {show(url)}; {exc.message}", details=exc.details
            ) from None
        except (InvalidURL, UnsupportedScheme) as exc:
            raise FetchFailed(
                f"the URL redirected to {show(url)}, which is not fetched: {exc.message}",
                code="bad_redirect",
            ) from None

    def _timeout(self, url: str) -> FetchTimeout:
        return FetchTimeout(
            f"fetching {show(url)} took longer than {self.limits.total_timeout:g} s"
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
                raise FetchTimeout(f"the download of {show(url)} stalled") from None
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
