"""Safe fetching, the harder cases: DNS time, numeric hosts, redirects to other schemes,
dripped headers, compressed bodies, truncation, header injection, TLS name and SNI."""

import gzip
import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from hw5kit.photos import server_class
from hw5kit.serving import errors
from hw5kit.serving.destinations import check_destination, parse_url, resolve
from hw5kit.serving.fetch import Fetcher
from hw5kit.serving.settings import FetchLimits

from ..conftest import need
from ..support import httpserver as hs

ALLOW = FetchLimits(allow_loopback=True, connect_timeout=2, read_timeout=1, total_timeout=3)
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 40


def test_dns_lookups_are_bounded_in_time(monkeypatch):
    release = threading.Event()

    def stuck_resolver(*args, **kwargs):
        release.wait(30)
        raise socket.gaierror(socket.EAI_AGAIN, "gave up")

    monkeypatch.setattr(socket, "getaddrinfo", stuck_resolver)
    limits = FetchLimits(connect_timeout=0.5, total_timeout=2)
    start = time.monotonic()
    try:
        with pytest.raises(errors.FetchTimeout, match=r"resolving 'images\.example'"):
            Fetcher(limits).fetch("http://images.example/cat.jpg")
    finally:
        release.set()
    assert time.monotonic() - start < 5  # not the 30 s the resolver would have taken


def test_a_failed_lookup_is_a_clear_422(monkeypatch):
    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    with pytest.raises(errors.FetchFailed) as err:
        Fetcher(ALLOW).fetch("https://no-such-host.example/cat.jpg")
    assert err.value.code == "dns_failure" and err.value.status == 422


def test_every_resolved_address_is_checked(monkeypatch):
    """A name with one public and one private address is refused (no "first one wins")."""

    def two_addresses(host, port, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", two_addresses)
    with pytest.raises(errors.BlockedDestination, match=r"169\.254\.169\.254"):
        check_destination("http://rebinding.example/", FetchLimits())


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2852039166", "169.254.169.254"),  # decimal
        ("0xa9fea9fe", "169.254.169.254"),  # hexadecimal
        ("0251.0376.0251.0376", "169.254.169.254"),  # octal parts
        ("169.254.43518", "169.254.169.254"),  # three parts
        ("127.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0", "0.0.0.0"),
    ],
)
def test_legacy_numeric_hosts_are_read_as_addresses_without_dns(host, address):
    # the test process's network guard fails the test if this reached the resolver
    assert [str(ip) for ip in resolve(host, 80)] == [address]
    with pytest.raises(errors.BlockedDestination) as err:
        check_destination(f"http://{host}/latest/meta-data/", FetchLimits())
    assert err.value.details["address"] == address


@pytest.mark.parametrize(
    "url",
    [
        "http://[fe80::1%25eth0]/a.png",  # IPv6 zone id
        "http://[::1%25lo]:8080/",
        "http://127.0.0.1\\@example.com/",  # backslash tricks
        "http://example.com\\x.png",
        "http://example.com/a\r\nX-Injected: 1",  # header injection
        "http://example.com/a\nb",
        "http://example.com/\x00",
        "http://example.com/\x85a",  # a C1 control character
        "http://ex..ample.com/",  # an empty label
        "http://" + "a" * 64 + ".com/",  # a label longer than DNS allows
        "//example.com/a.png",  # no scheme
    ],
)
def test_tricky_urls_are_refused_before_any_lookup(url):
    with pytest.raises(errors.InvalidURL) as err:
        parse_url(url)
    assert err.value.status == 400


def test_non_ascii_urls_are_encoded_not_passed_through():
    parsed = parse_url("http://bücher.example/chat noir.jpg".replace(" ", "%20") + "?q=é")
    assert parsed.host == "xn--bcher-kva.example"
    assert parsed.path == "/chat%20noir.jpg?q=%C3%A9"
    assert parsed.host_header == "xn--bcher-kva.example"


def test_what_the_remote_server_receives():
    """Exactly one request line, our headers, the path encoded: nothing the caller wrote
    becomes a header."""
    with hs.serve({"/a.png": hs.body(PNG, "image/png")}) as base:
        Fetcher(ALLOW).fetch(f"{base}/a.png")
        with pytest.raises(errors.RemoteStatus):
            Fetcher(ALLOW).fetch(f"{base}/é%0d%0aX-Injected:%20yes")
        seen = hs.serve.last_seen
    path, headers = seen[0]
    assert path == "/a.png"
    assert headers["Accept-Encoding"] == "identity" and headers["User-Agent"].startswith("hw5kit")
    assert headers["Host"] == base.removeprefix("http://")
    path, headers = seen[1]
    assert path == "/%C3%A9%0d%0aX-Injected:%20yes"
    assert "X-Injected" not in headers


def test_the_content_type_header_is_not_trusted():
    # a PNG served as text/html is still returned as bytes; the decoder sniffs them
    with hs.serve({"/page.html": hs.body(PNG, "text/html")}) as base:
        fetched = Fetcher(ALLOW).fetch(f"{base}/page.html")
    assert fetched.data == PNG and fetched.content_type == "text/html"


@pytest.mark.parametrize(
    ("location", "code", "error"),
    [
        ("file:///etc/passwd", "bad_redirect", errors.FetchFailed),
        ("ftp://example.com/cat.jpg", "bad_redirect", errors.FetchFailed),
        ("gopher://127.0.0.1:70/", "bad_redirect", errors.FetchFailed),
        ("http://user:secret@example.com/", "bad_redirect", errors.FetchFailed),
        ("http://[::ffff:a9fe:a9fe]/", "blocked_destination", errors.BlockedDestination),
        ("http://2852039166/computeMetadata/v1/", "blocked_destination", errors.BlockedDestination),
        ("http://[fd00:ec2::254]/", "blocked_destination", errors.BlockedDestination),
    ],
)
def test_redirects_to_other_schemes_or_blocked_places_are_refused(location, code, error):
    with hs.serve({"/go": hs.redirect(location)}) as base:
        with pytest.raises(error) as err:
            Fetcher(ALLOW).fetch(f"{base}/go")
        assert len(hs.serve.last_seen) == 1  # nothing fetched after the refusal
    assert err.value.code == code and 400 <= err.value.status < 500
    assert "redirected to" in err.value.message


def test_dripped_headers_stop_at_the_total_time_limit():
    """Each byte arrives within the read timeout, so only the total deadline can stop this."""

    def drip_headers(h):
        h.wfile.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(200):
            h.wfile.write(b"X-Slow: y\r\n")
            h.wfile.flush()
            time.sleep(0.1)

    limits = FetchLimits(allow_loopback=True, read_timeout=1, total_timeout=1.5)
    with hs.serve({"/drip": drip_headers}) as base:
        start = time.monotonic()
        with pytest.raises(errors.FetchTimeout):
            Fetcher(limits).fetch(f"{base}/drip")
        assert time.monotonic() - start < 4


def test_a_body_without_length_is_still_cut_at_the_deadline():
    def endless(h):  # no Content-Length, not chunked: the body ends when the socket does
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        for _ in range(100):
            h.wfile.write(PNG[:8])
            h.wfile.flush()
            time.sleep(0.1)

    h_limits = FetchLimits(allow_loopback=True, read_timeout=1, total_timeout=1)
    with hs.serve({"/endless": endless}) as base, pytest.raises(errors.FetchTimeout):
        Fetcher(h_limits).fetch(f"{base}/endless")


def test_compressed_bodies_are_refused_not_inflated():
    bomb = gzip.compress(b"\0" * 5_000_000)  # 5 MB of zeros in about 5 kB
    routes = {"/bomb.png": hs.body(bomb)}
    routes["/bomb.png"] = lambda h: hs.send(h, 200, bomb, {"Content-Encoding": "gzip"})
    limits = FetchLimits(allow_loopback=True, max_bytes=100_000)
    with hs.serve(routes) as base, pytest.raises(errors.FetchFailed) as err:
        Fetcher(limits).fetch(f"{base}/bomb.png")
    assert err.value.code == "unsupported_encoding" and "gzip" in err.value.message


def test_a_truncated_download_is_an_error_not_a_short_image():
    def short(h):
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(PNG)
        h.close_connection = True

    with (
        hs.serve({"/short": short}) as base,
        pytest.raises(errors.FetchFailed, match="cut off") as err,
    ):
        Fetcher(ALLOW).fetch(f"{base}/short")
    assert err.value.code == "connection_failed"


def test_broken_http_answers_are_clear_errors():
    def many_headers(h):
        h.send_response(200)
        for i in range(150):
            h.send_header(f"X-{i}", "y")
        h.send_header("Content-Length", "0")
        h.end_headers()

    def garbage(h):
        h.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    with hs.serve({"/headers": many_headers, "/garbage": garbage}) as base:
        for path in ("/headers", "/garbage"):
            with pytest.raises(errors.FetchFailed) as err:
                Fetcher(ALLOW).fetch(f"{base}{path}")
            assert err.value.code == "connection_failed" and err.value.status == 422


def test_a_name_is_connected_through_any_of_its_checked_addresses():
    """localhost may resolve to ::1 first; a server on 127.0.0.1 only is still reached."""
    with hs.serve({"/a.png": hs.body(PNG)}) as base:
        port = base.rsplit(":", 1)[1]
        fetched = Fetcher(ALLOW).fetch(f"http://localhost:{port}/a.png")
    assert fetched.data == PNG
    with pytest.raises(errors.BlockedDestination):  # and the name is checked like a literal
        check_destination(f"http://localhost:{port}/a.png", FetchLimits())


# ---- TLS: the name is checked and sent (SNI) while we connect to the checked address ------------
@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    need(shutil.which("openssl") is not None, "openssl (Debian package openssl) makes a test cert")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sslsock, name, ctx: server_names.append(name)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            hs.send(self, 200, PNG, {"Content-Type": "image/png"})

        def log_message(self, *args):
            pass

    server = server_class("127.0.0.1")(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = ssl.create_default_context(cafile=str(cert))
    yield server.server_address[1], client, server_names
    server.shutdown()
    server.server_close()


def test_https_checks_the_certificate_against_the_url_name(tls_server):
    port, trusting, names = tls_server
    fetched = Fetcher(ALLOW, ssl_context=trusting).fetch(f"https://localhost:{port}/a.png")
    assert fetched.data == PNG and names[-1] == "localhost"
    # the same server by IP: the certificate does not name 127.0.0.1
    with pytest.raises(errors.FetchFailed) as err:
        Fetcher(ALLOW, ssl_context=trusting).fetch(f"https://127.0.0.1:{port}/a.png")
    assert err.value.code == "tls_error"
    # an unknown issuer is refused by the default trust store
    with pytest.raises(errors.FetchFailed) as err:
        Fetcher(ALLOW).fetch(f"https://localhost:{port}/a.png")
    assert err.value.code == "tls_error" and "certificate" in err.value.message.lower()


def test_a_tls_handshake_that_never_ends_is_cut_at_the_deadline():
    """A server that accepts and then says nothing: the handshake waits for bytes."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True)
    thread.start()
    limits = FetchLimits(allow_loopback=True, read_timeout=10, connect_timeout=10, total_timeout=1)
    try:
        start = time.monotonic()
        with pytest.raises(errors.FetchTimeout):
            Fetcher(limits).fetch(f"https://localhost:{listener.getsockname()[1]}/")
        assert time.monotonic() - start < 4
    finally:
        listener.close()
        for conn, _ in accepted:
            conn.close()
