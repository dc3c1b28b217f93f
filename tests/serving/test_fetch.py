"""Safe URL fetching: address checks as functions, real fetches only over loopback."""

import ipaddress
import time

import pytest

from hw5kit.photos import photo
from hw5kit.serving import errors
from hw5kit.serving.destinations import address_problem, check_destination, parse_url
from hw5kit.serving.fetch import Fetcher
from hw5kit.serving.settings import FetchLimits

from ..support import httpserver as hs

ALLOW = FetchLimits(allow_loopback=True, connect_timeout=2, read_timeout=1, total_timeout=3)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "link-local"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "not publicly routable"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("fe80::1", "link-local"),
        ("fd00::1", "private"),
        ("240.0.0.1", ""),  # reserved; Python files it under private
        ("::ffff:169.254.169.254", "IPv4-mapped"),
        ("::ffff:127.0.0.1", "IPv4-mapped"),
        ("2002:a9fe:a9fe::", "6to4"),
        ("64:ff9b::a9fe:a9fe", "NAT64"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ],
)
def test_blocked_addresses(address, reason):
    problem = address_problem(ipaddress.ip_address(address))
    assert problem is not None and reason in problem


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "142.250.1.1"])
def test_public_addresses_pass(address):
    assert address_problem(ipaddress.ip_address(address)) is None


def test_loopback_only_with_the_explicit_setting():
    assert address_problem(ipaddress.ip_address("127.0.0.1"), allow_loopback=True) is None
    assert address_problem(ipaddress.ip_address("::ffff:127.0.0.1"), allow_loopback=True) is None
    # the setting opens loopback only, never the metadata server or private ranges
    assert address_problem(ipaddress.ip_address("169.254.169.254"), allow_loopback=True)
    assert address_problem(ipaddress.ip_address("10.0.0.1"), allow_loopback=True)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (None, errors.InvalidURL),
        (42, errors.InvalidURL),
        ("", errors.InvalidURL),
        ("   ", errors.InvalidURL),
        ("not a url", errors.InvalidURL),
        ("example.com/cat.jpg", errors.InvalidURL),
        ("ftp://example.com/cat.jpg", errors.UnsupportedScheme),
        ("file:///etc/passwd", errors.UnsupportedScheme),
        ("gopher://x/", errors.UnsupportedScheme),
        ("http://", errors.InvalidURL),
        ("http://user:pw@example.com/", errors.InvalidURL),
        ("http://example.com:99999/", errors.InvalidURL),
        ("http://example.com:0/", errors.InvalidURL),
        ("http://exa mple.com/", errors.InvalidURL),
        ("http://example.com/" + "a" * 5000, errors.InvalidURL),
    ],
)
def test_malformed_urls_are_400(url, error):
    with pytest.raises(error) as err:
        parse_url(url)
    assert err.value.status == 400


def test_literal_and_named_loopback_is_blocked_by_default():
    # checked before any connection is attempted
    for url in (
        "http://127.0.0.1:9/x.png",
        "http://localhost:9/x.png",
        "http://[::1]:9/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:a9fe:a9fe]/",
    ):
        with pytest.raises(errors.BlockedDestination) as err:
            check_destination(url, FetchLimits())
        assert err.value.status == 403


def test_fetches_a_photo_over_loopback_when_allowed(photo_url):
    data = Fetcher(ALLOW).fetch(photo_url("chelsea.png")).data
    assert data == photo("chelsea.png").path.read_bytes()


def test_fetch_over_ipv6_loopback():
    with hs.serve({"/a.png": hs.body(b"\x89PNG\r\n\x1a\nabc")}, host="::1") as base:
        assert Fetcher(ALLOW).fetch(f"{base}/a.png").data.startswith(b"\x89PNG")


def test_redirects_are_followed_and_rechecked():
    payload = b"GIF89a-image"
    routes = {
        "/img": hs.body(payload, "image/gif"),
        "/hop1": hs.redirect("/hop2"),
        "/hop2": hs.redirect("/img", 301),
        "/to-metadata": hs.redirect("http://169.254.169.254/computeMetadata/v1/"),
        "/to-private": hs.redirect("http://10.0.0.7/x.png"),
        "/loop": hs.redirect("/loop"),
        "/no-location": lambda h: hs.send(h, 302),
    }
    with hs.serve(routes) as base:
        fetched = Fetcher(ALLOW).fetch(f"{base}/hop1")
        assert fetched.data == payload and fetched.redirects == 2
        with pytest.raises(errors.BlockedDestination, match=r"169\.254\.169\.254"):
            Fetcher(ALLOW).fetch(f"{base}/to-metadata")
        with pytest.raises(errors.BlockedDestination, match=r"10\.0\.0\.7"):
            Fetcher(ALLOW).fetch(f"{base}/to-private")
        with pytest.raises(errors.TooManyRedirects):
            Fetcher(ALLOW).fetch(f"{base}/loop")
        with pytest.raises(errors.FetchFailed, match="Location"):
            Fetcher(ALLOW).fetch(f"{base}/no-location")


def test_remote_errors_and_size_limits():
    limits = FetchLimits(allow_loopback=True, max_bytes=1000)

    def streamed_big(h):  # no Content-Length announced: the limit applies while reading
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for _ in range(10):
            h.wfile.write(b"200\r\n" + b"x" * 512 + b"\r\n")
        h.wfile.write(b"0\r\n\r\n")

    routes = {
        "/big": hs.body(b"x" * 5000),
        "/streamed": streamed_big,
        "/gone": lambda h: hs.send(h, 410, b"gone"),
        "/oops": lambda h: hs.send(h, 500, b"oops"),
        "/nocontent": lambda h: hs.send(h, 204),
    }
    with hs.serve(routes) as base:
        with pytest.raises(errors.RemoteStatus) as err:
            Fetcher(limits).fetch(f"{base}/missing.png")
        assert err.value.details["remote_status"] == 404 and err.value.status == 422
        with pytest.raises(errors.RemoteStatus):
            Fetcher(limits).fetch(f"{base}/gone")
        with pytest.raises(errors.RemoteStatus):
            Fetcher(limits).fetch(f"{base}/oops")
        with pytest.raises(errors.FetchFailed, match="204"):
            Fetcher(limits).fetch(f"{base}/nocontent")
        with pytest.raises(errors.PayloadTooLarge, match="5,000 bytes"):
            Fetcher(limits).fetch(f"{base}/big")
        with pytest.raises(errors.PayloadTooLarge):
            Fetcher(limits).fetch(f"{base}/streamed")


def test_slow_servers_time_out_within_the_total_limit():
    def slow_headers(h):
        time.sleep(2.5)
        hs.send(h, 200, b"late")

    def drip(h):  # answers at once, then one byte at a time: only the total limit stops it
        h.send_response(200)
        h.send_header("Content-Length", "100")
        h.end_headers()
        for _ in range(100):
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(0.2)

    with hs.serve({"/slow": slow_headers, "/drip": drip}) as base:
        for path in ("/slow", "/drip"):
            start = time.monotonic()
            with pytest.raises(errors.FetchTimeout):
                Fetcher(ALLOW).fetch(f"{base}{path}")
            assert time.monotonic() - start < ALLOW.total_timeout + ALLOW.read_timeout + 0.5


def test_connection_refused_is_a_clear_error():
    from hw5kit.procs import free_port

    with pytest.raises(errors.FetchFailed) as err:
        Fetcher(ALLOW).fetch(f"http://127.0.0.1:{free_port()}/x.png")
    assert err.value.code == "connection_failed"
