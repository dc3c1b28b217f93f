"""The Flask app through its test client: the contract, errors, readiness, per-caller models."""

import io
import threading
import time

import pytest

from hw5kit.photos import photo
from hw5kit.serving.http import create_app
from hw5kit.serving.models import load_classifier
from hw5kit.serving.registry import ModelRegistry
from hw5kit.serving.settings import FetchLimits, ServingSettings

LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


@pytest.fixture(scope="module")
def v2_app():
    settings = ServingSettings(
        version="v2",
        models=LITE,
        default_model=LITE[0],
        load="sync",
        fetch=FetchLimits(allow_loopback=True),
    )
    return create_app(settings)


@pytest.fixture(scope="module")
def v1_app():
    return create_app(ServingSettings(version="v1", load="sync", max_upload_bytes=3_000_000))


def upload(name="chelsea.png", **fields):
    data = {"file": (io.BytesIO(photo(name).path.read_bytes()), name)}
    data.update(fields)
    return data


def test_hello_health_ready_index(v1_app):
    c = v1_app.test_client()
    assert c.get("/hello").data == b"Hello!"
    assert c.get("/healthz").json == {"status": "ok"}
    ready = c.get("/readyz")
    assert ready.status_code == 200 and ready.json["models"] == {"efficientnet_lite0": "loaded"}
    index = c.get("/").json
    assert index["service"] == "backend_v1" and "POST /predict" in index["endpoints"]
    assert c.get("/models").json == ["efficientnet_lite0"]


def test_predict_by_upload_returns_the_contract(v1_app):
    r = v1_app.test_client().post("/predict", data=upload(top_k="3"))
    assert r.status_code == 200
    body = r.json
    assert body["model"] == "efficientnet_lite0"
    assert body["category"] == body["predictions"][0]["label"]
    assert photo("chelsea.png").matches(body["category"])
    assert len(body["predictions"]) == 3 and body["source"] == "upload"
    probs = [p["probability"] for p in body["predictions"]]
    assert probs == sorted(probs, reverse=True)
    assert set(body["predictions"][0]) == {"label", "index", "probability"}


def test_predict_by_url(v2_app, photo_url):
    r = v2_app.test_client().post("/predict", json={"url": photo_url("coffee.png")})
    assert r.status_code == 200, r.json
    assert r.json["category"] == "espresso" and r.json["source"] == "url"


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"json": {}}, 400, "missing_input"),
        ({"json": {"url": None}}, 400, "missing_input"),
        ({"json": {"URL": "http://x"}}, 400, "missing_input"),
        ({"json": {"url": ""}}, 400, "invalid_url"),
        ({"json": {"url": 12}}, 400, "invalid_url"),
        ({"json": {"url": ["http://x"]}}, 400, "invalid_url"),
        ({"json": {"url": "not a url"}}, 400, "invalid_url"),
        ({"json": {"url": "ftp://example.com/a.jpg"}}, 400, "unsupported_scheme"),
        (
            {"json": {"url": "http://169.254.169.254/computeMetadata/v1/"}},
            403,
            "blocked_destination",
        ),
        ({"json": {"url": "http://10.0.0.1/a.jpg"}}, 403, "blocked_destination"),
        ({"json": []}, 400, "invalid_json"),
        ({"json": "http://x"}, 400, "invalid_json"),
        ({"data": b"{not json", "content_type": "application/json"}, 400, "invalid_json"),
        ({"data": b"", "content_type": "application/json"}, 400, "missing_input"),
        ({"data": b""}, 400, "missing_input"),
        ({"data": b"url=x", "content_type": "text/plain"}, 415, "unsupported_media_type"),
        ({"json": {"url": "https://photos.invalid/a.jpg", "top_k": 0}}, 400, "invalid_field"),
        ({"json": {"url": "https://photos.invalid/a.jpg", "top_k": 21}}, 400, "invalid_field"),
        ({"json": {"url": "https://photos.invalid/a.jpg", "top_k": "5"}}, 400, "invalid_field"),
        ({"json": {"url": "https://photos.invalid/a.jpg", "top_k": True}}, 400, "invalid_field"),
        ({"json": {"url": "https://photos.invalid/a.jpg", "model": 5}}, 400, "invalid_field"),
        (
            {"json": {"url": "https://photos.invalid/a.jpg", "model": "resnet152"}},
            400,
            "unknown_model",
        ),
        ({"data": {}}, 400, "missing_input"),
        ({"data": {"file": (io.BytesIO(b""), "a.png")}}, 400, "missing_input"),
        ({"data": {"file": (io.BytesIO(b"%PDF-1.4 nope"), "a.png")}}, 422, "not_an_image"),
        (
            {"data": {"file": (io.BytesIO(b"\xff\xd8\xff\xe0broken"), "a.jpg")}},
            422,
            "corrupt_image",
        ),
        (
            {"data": {"file": (io.BytesIO(b"x"), "a.png"), "url": "https://photos.invalid/a"}},
            400,
            "bad_request",
        ),
        ({"data": {"file": (io.BytesIO(b"x" * 3_100_000), "a.png")}}, 413, "too_large"),
        ({"data": b"x" * 4_000_000, "content_type": "application/json"}, 413, "too_large"),
    ],
)
def test_bad_input_is_a_json_4xx(v1_app, kwargs, status, code):
    r = v1_app.test_client().post("/predict", **kwargs)
    assert r.status_code == status, r.data[:300]
    assert r.json["error"]["code"] == code
    assert r.json["error"]["message"]


def test_routing_errors_are_json(v2_app):
    c = v2_app.test_client()
    r = c.get("/predict")
    assert r.status_code == 405 and r.json["error"]["code"] == "method_not_allowed"
    assert "POST" in r.headers["Allow"]
    r = c.get("/nope")
    assert r.status_code == 404 and r.json["error"]["code"] == "not_found"
    r = c.get("/models/resnet152")
    assert r.status_code == 404 and r.json["error"]["details"]["available"] == list(LITE)
    r = c.put("/model/nope")
    assert r.status_code == 404 and r.json["error"]["code"] == "unknown_model"


def test_v2_models_and_metadata(v2_app):
    c = v2_app.test_client()
    assert c.get("/models").json == list(LITE)
    meta = c.get("/models/efficientnet_lite1").json
    assert meta["preprocessing"]["input_size"] == 240 and meta["loaded"] is True
    assert meta["default"] is False


def test_v2_choice_is_per_session(v2_app):
    alice, bob = v2_app.test_client(), v2_app.test_client()
    assert alice.put("/model/efficientnet_lite2").json == {
        "model": "efficientnet_lite2",
        "scope": "session",
    }
    assert alice.get("/model").json == {"model": "efficientnet_lite2", "source": "session"}
    assert bob.get("/model").json == {"model": "efficientnet_lite0", "source": "default"}
    assert alice.post("/predict", data=upload()).json["model"] == "efficientnet_lite2"
    assert bob.post("/predict", data=upload()).json["model"] == "efficientnet_lite0"
    # the body wins over the session
    assert alice.post("/predict", data=upload(model="efficientnet_lite1")).json["model"] == (
        "efficientnet_lite1"
    )


def test_a_forged_session_cookie_is_ignored(v2_app):
    c = v2_app.test_client()
    c.set_cookie("hw5_session", "eyJtb2RlbCI6ImVmZmljaWVudG5ldF9saXRlMiJ9.forged.sig")
    assert c.get("/model").json["source"] == "default"


def test_readyz_is_503_until_models_are_loaded():
    gate = threading.Event()

    def slow_loader(name):
        gate.wait(10)
        return load_classifier(name)

    # a prediction waits for the load at most the queue's timeout
    settings = ServingSettings(version="v1", load="background", queue_timeout=0.3)
    registry = ModelRegistry(settings.models, loader=slow_loader)
    app = create_app(settings, registry=registry)
    c = app.test_client()
    r = c.get("/readyz")
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert r.json["models"] == {"efficientnet_lite0": "loading"}
    r = c.post("/predict", data=upload())
    assert r.status_code == 503 and r.json["error"]["code"] == "not_ready"
    assert c.get("/healthz").status_code == 200  # alive while loading
    # one that arrives while loading, and the load ends within its wait: answered, not refused
    registry.load_wait = 30
    answers = []
    waiting = threading.Thread(
        target=lambda: answers.append(app.test_client().post("/predict", data=upload()))
    )
    waiting.start()
    time.sleep(0.5)  # without the wait it would have had its 503 by now
    gate.set()
    assert registry.wait_ready(30)
    waiting.join(60)
    assert answers and answers[0].status_code == 200, answers and answers[0].json
    assert c.get("/readyz").status_code == 200
    assert c.post("/predict", data=upload()).status_code == 200


def test_a_failed_background_load_is_reported():
    def broken(name):
        raise RuntimeError("disk on fire")

    settings = ServingSettings(version="v1", load="background")
    registry = ModelRegistry(settings.models, loader=broken)
    app = create_app(settings, registry=registry)
    registry._thread.join(10)
    c = app.test_client()
    assert c.get("/healthz").status_code == 503
    r = c.get("/readyz")
    assert r.status_code == 503 and "disk on fire" in r.json["error"]
    assert "disk on fire" in c.post("/predict", data=upload()).json["error"]["message"]


def test_unexpected_errors_are_a_json_500_without_internals(v1_app, monkeypatch):
    state = v1_app.extensions["hw5kit"]

    def boom(req):
        raise KeyError("secret internal detail")

    monkeypatch.setattr(state.service, "predict", boom)
    r = v1_app.test_client().post("/predict", data=upload())
    assert r.status_code == 500 and r.json["error"]["code"] == "internal"
    assert "secret" not in r.get_data(as_text=True)


def test_the_session_cookie_is_secure_over_https_only(v2_app):
    plain = v2_app.test_client().put("/model/efficientnet_lite1")
    cookie = plain.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    # behind Cloud Run: TLS ends at Google's front end, which says so in X-Forwarded-Proto
    proxied = v2_app.test_client().put(
        "/model/efficientnet_lite1", headers={"X-Forwarded-Proto": "https"}
    )
    assert "Secure" in proxied.headers["Set-Cookie"]
    direct = v2_app.test_client().put("/model/efficientnet_lite1", base_url="https://localhost")
    assert "Secure" in direct.headers["Set-Cookie"]


def test_two_instances_with_the_same_key_accept_each_others_sessions():
    def instance(key: str):
        settings = ServingSettings(
            version="v2",
            models=("efficientnet_lite0", "efficientnet_lite1"),
            default_model="efficientnet_lite0",
            secret_key=key,
            load="sync",
        )
        return create_app(settings, start=False)

    first, second, other = instance("k" * 64), instance("k" * 64), instance("x" * 64)
    chosen = first.test_client().put("/model/efficientnet_lite1")
    value = chosen.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    for app, source in ((second, "session"), (other, "default")):
        client = app.test_client()
        client.set_cookie("hw5_session", value)
        assert client.get("/model").json["source"] == source


def test_the_version_names_the_routes_and_the_old_keyword_flavor_still_works(monkeypatch):
    """v1/v2/v3 are "versions" everywhere (deployment.yaml's word); ``create_app(flavor=...)``,
    the name apps used before, keeps working."""
    for key in ("MODEL_NAME", "MODELS", "DEFAULT_MODEL"):
        monkeypatch.delenv(key, raising=False)
    old = create_app(flavor="v2", start=False)
    assert old.extensions["hw5kit"].settings.version == "v2"
    choose = "/model/efficientnet_lite1"
    assert old.test_client().put(choose).status_code == 200  # v2's route: a model per caller
    new = create_app(version="v1", start=False)
    assert new.extensions["hw5kit"].settings.version == "v1"
    assert new.test_client().put(choose).status_code == 404  # v1 has no such route
    with pytest.raises(ValueError, match="contradicts"):
        create_app(version="v1", flavor="v2", start=False)
    with pytest.raises(ValueError, match=r"contradicts settings\.version"):
        create_app(ServingSettings(version="v1"), version="v2", start=False)


def test_a_large_upload_is_parsed_in_memory_not_spooled_to_disk(v1_app, monkeypatch):
    """Werkzeug writes a file part over 500 kB to a temporary file; the backend keeps it in
    memory (the front already holds the whole request): a phone photo never touches the disk."""
    import werkzeug.formparser
    import werkzeug.wrappers.request

    def no_disk(*args, **kwargs):
        raise AssertionError("an upload was spooled to a temporary file")

    monkeypatch.setattr(werkzeug.formparser, "SpooledTemporaryFile", no_disk)
    monkeypatch.setattr(werkzeug.wrappers.request, "default_stream_factory", no_disk)
    data = photo("astronaut.png").path.read_bytes()
    assert len(data) > 600_000
    r = v1_app.test_client().post("/predict", data={"file": (io.BytesIO(data), "a.png")})
    assert r.status_code == 200, r.json
    assert r.json["image"]["bytes"] == len(data)
