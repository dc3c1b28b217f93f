"""The frontend's HTTP client against real backends (the Flask apps on 127.0.0.1)."""

import http.server
import time

import pytest

from hw5kit.frontend.client import (
    ApiError,
    BackendTimeout,
    BackendUnreachable,
    BadResponse,
    GatewayClient,
    InvalidImageURL,
    ServingClient,
    Upload,
    check_image_url,
)
from hw5kit.photos import photo
from hw5kit.serving.http import create_app
from hw5kit.serving.settings import FetchLimits, ServingSettings

from ..support import httpserver
from .conftest import LITE, serve_app


def upload(name: str) -> Upload:
    return Upload(name, photo(name).path.read_bytes(), "image/png")


def test_lists_and_describes_models(app_v2):
    client = ServingClient(app_v2.url + "/")
    assert client.list_models() == list(LITE)
    info = client.model_info("efficientnet_lite1")
    assert info["name"] == "efficientnet_lite1" and info["preprocessing"]["input_size"] == 240
    with pytest.raises(ApiError) as caught:
        client.model_info("resnet9000")
    assert caught.value.status == 404 and caught.value.code == "unknown_model"


def test_classifies_a_url_and_an_upload_with_the_model_asked(app_v2, photo_url):
    client = ServingClient(app_v2.url)
    by_url = client.predict(photo_url("coffee.png"), model="efficientnet_lite2", top_k=3)
    assert by_url.model == "efficientnet_lite2" and by_url.top.label == "espresso"
    assert len(by_url.guesses) == 3 and by_url.source == "url"
    assert by_url.timing_ms["inference"] > 0 and by_url.roundtrip_ms >= by_url.timing_ms["total"]
    by_file = client.predict(upload("coffee.png"), model="efficientnet_lite2", top_k=3)
    assert by_file.source == "upload" and by_file.guesses == by_url.guesses
    default = client.predict(upload("chelsea.png"), top_k=1)
    assert default.model == "efficientnet_lite0" and photo("chelsea.png").matches(default.top.label)


def test_keeps_no_cookie_so_one_visitor_never_sets_the_model_of_another(app_v2):
    client = ServingClient(app_v2.url)
    # a PUT through the shared session is what the course's frontend did: the backend answers
    # with a session cookie, which this client must drop
    answer = client.session.put(f"{app_v2.url}/model/efficientnet_lite2", timeout=10)
    assert answer.status_code == 200 and "hw5_session" in answer.headers["Set-Cookie"]
    assert len(client.session.cookies) == 0
    assert client.predict(upload("coffee.png"), top_k=1).model == "efficientnet_lite0"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("not a url", "scheme"),
        ("ftp://example.org/a.png", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("/etc/passwd", "scheme"),
        ("http://", "invalid"),
        ("http://exa mple.org/a.png", "invalid"),
        ("http://example.org:port/a.png", "invalid"),
    ],
)
def test_a_bad_url_is_refused_before_any_request(text, reason, closed_url):
    with pytest.raises(InvalidImageURL) as caught:
        # nothing listens at closed_url: reaching the network would raise BackendUnreachable
        ServingClient(closed_url).predict(text)
    assert caught.value.reason == reason


def test_a_good_url_is_kept_as_typed_without_its_blanks():
    assert check_image_url("  https://example.org/a%20b.png?x=1\n") == (
        "https://example.org/a%20b.png?x=1"
    )
    assert check_image_url("HTTP://Example.org/a.png") == "HTTP://Example.org/a.png"


def test_backend_errors_keep_their_status_code_and_message(app_v2, photo_url):
    client = ServingClient(app_v2.url)
    with pytest.raises(ApiError) as caught:
        client.predict(photo_url("no-such-photo.png"))
    error = caught.value
    assert error.status == 422 and error.code == "remote_status" and "404" in error.message
    with pytest.raises(ApiError) as caught:
        client.predict(Upload("notes.txt", b"hello, not an image", "text/plain"))
    assert caught.value.status == 422 and caught.value.code == "not_an_image"
    with pytest.raises(ApiError) as caught:
        client.predict(upload("coffee.png"), model="resnet9000")
    assert caught.value.status == 400 and caught.value.code == "unknown_model"


def test_a_loading_backend_is_not_ready_with_retry_after(app_loading):
    with pytest.raises(ApiError) as caught:
        ServingClient(app_loading.url).predict(upload("coffee.png"))
    assert caught.value.status == 503 and caught.value.code == "not_ready"
    assert caught.value.retry_after == 2


def test_a_stopped_backend_is_unreachable(closed_url):
    client = ServingClient(closed_url)
    for call in (client.list_models, lambda: client.predict(upload("coffee.png"))):
        with pytest.raises(BackendUnreachable) as caught:
            call()
        assert caught.value.base_url == closed_url


def test_a_backend_that_does_not_answer_in_time_is_a_timeout():
    def slow(handler: http.server.BaseHTTPRequestHandler) -> None:
        time.sleep(2)
        httpserver.send(handler, 200, b"[]", {"Content-Type": "application/json"})

    with httpserver.serve({"/models": slow}) as base, pytest.raises(BackendTimeout) as caught:
        ServingClient(base, read_timeout=0.3).list_models()
    assert caught.value.seconds == 0.3


def test_something_that_is_not_the_backend_is_a_bad_response(photo_base_url):
    # SERVING_URL pointing at some other web server (here: the photo server)
    client = ServingClient(photo_base_url)
    with pytest.raises(BadResponse) as caught:
        client.list_models()
    assert caught.value.status == 404
    with pytest.raises(BadResponse) as caught:
        client.predict(upload("coffee.png"))
    assert caught.value.status == 501  # the photo server has no POST at all


def test_a_success_that_breaks_the_contract_is_a_bad_response():
    routes = {
        "/models": httpserver.body(b'{"models": "lite"}', "application/json"),
        "/models/x": httpserver.body(b'["x"]', "application/json"),
    }
    with httpserver.serve(routes) as base:
        client = ServingClient(base)
        with pytest.raises(BadResponse):
            client.list_models()
        with pytest.raises(BadResponse):
            client.model_info("x")


def test_the_gateway_client_names_the_model_in_the_path():
    """A v3 backend serves the gateway's routes (GET /models, POST /model/<name>/predict)."""
    settings = ServingSettings(
        version="v3",
        models=("efficientnet_lite1",),
        default_model="efficientnet_lite1",
        all_models=LITE,
        load="sync",
        fetch=FetchLimits(allow_loopback=True),
    )
    with serve_app(create_app(settings)) as live:
        client = GatewayClient(live.url)
        assert client.list_models() == list(LITE)
        answer = client.predict(upload("coffee.png"), model="efficientnet_lite1", top_k=2)
        assert answer.model == "efficientnet_lite1" and len(answer.guesses) == 2
        assert live.count("POST", "/model/efficientnet_lite1/predict") == 1
        assert live.count("POST", "/predict") == 0
        with pytest.raises(ApiError) as caught:
            client.predict(upload("coffee.png"), model="efficientnet_lite2")
        assert caught.value.status == 404
        with pytest.raises(ValueError, match="needs a model"):
            client.predict(upload("coffee.png"))
