"""Property-based fuzzing of the JSON API (hypothesis): whatever arrives, never a 500.

The Flask test client takes most examples (fast, in process); a bounded sample goes to a live
gunicorn backend as well. Every answer must be JSON with either a prediction or a documented
error code, and a 4xx for anything that is not a usable request.
"""

import io
import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw5kit.serving.errors import ERROR_CODES
from hw5kit.serving.http import create_app
from hw5kit.serving.settings import FetchLimits, ServingSettings

# URLs that never leave the machine: blocked addresses, bad forms, loopback ports nobody serves
# (the app below does not allow loopback, so those are refused before connecting as well).
urls = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "http://169.254.169.254/computeMetadata/v1/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://127.0.0.1:1/a.png",
            "https://10.0.0.1/a.jpg",
            "http://0x7f.1/",
            "ftp://x/y",
            "file:///etc/passwd",
            "http://[fe80::1%25lo]/",
            "http://ex ample/",
            "http://[::1]:0/",
        ]
    ),
    st.builds(
        lambda host, path: f"http://{host}/{path}",
        st.sampled_from(["127.0.0.1", "10.1.2.3", "[::1]", "0", "192.168.0.1", "[fd00::1]"]),
        st.text(max_size=30),
    ),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "url": st.one_of(urls, json_values),
            "model": st.one_of(st.sampled_from(["efficientnet_lite0", "", "x" * 200]), json_values),
            "top_k": json_values,
        },
    ),
    json_values,
)


@pytest.fixture(scope="module")
def client():
    settings_ = ServingSettings(
        version="v2",
        models=("efficientnet_lite0",),
        default_model="efficientnet_lite0",
        load="sync",
        fetch=FetchLimits(allow_loopback=False, connect_timeout=0.5, total_timeout=1),
        max_upload_bytes=200_000,
    )
    return create_app(settings_).test_client()


def check(status: int, payload: dict) -> None:
    assert status < 500, payload
    if status != 200:
        code = payload["error"]["code"]
        assert code in ERROR_CODES and status in ERROR_CODES[code][0], (status, payload)
        assert payload["error"]["message"]


FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(body=bodies)
def test_any_json_body_is_never_a_500(client, body):
    r = client.post("/predict", data=json.dumps(body), content_type="application/json")
    check(r.status_code, r.get_json())


@FUZZ
@given(raw=st.binary(max_size=300), content_type=st.sampled_from(
    ["application/json", "application/x-www-form-urlencoded", "text/plain", "", "image/png",
     "multipart/form-data", "multipart/form-data; boundary=x", "application/vnd.api+json"]
))  # fmt: skip
def test_any_raw_body_is_never_a_500(client, raw, content_type):
    r = client.post("/predict", data=raw, content_type=content_type or None)
    check(r.status_code, r.get_json())


@FUZZ
@given(
    data=st.binary(max_size=400),
    prefix=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"RIFF"]),
    fields=st.dictionaries(
        st.sampled_from(["model", "top_k", "url", "extra"]),
        st.one_of(
            st.text(max_size=20),
            # numbers in every script: '²', '٣', 'Ⅻ' look like digits to str.isdigit()
            st.text(st.characters(categories=("Nd", "No", "Nl")), min_size=1, max_size=3),
        ),
        max_size=3,
    ),
)
def test_any_upload_is_never_a_500(client, data, prefix, fields):
    form = {"file": (io.BytesIO(prefix + data), "x.jpg"), **fields}
    r = client.post("/predict", data=form, content_type="multipart/form-data")
    check(r.status_code, r.get_json())


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    path=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="?#"),
        max_size=40,
    ),
)
def test_any_route_is_never_a_500(client, method, path):
    r = client.open("/" + path.lstrip("/"), method=method)
    assert r.status_code < 500
    if r.status_code >= 400:
        check(r.status_code, r.get_json())


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(body=bodies)
def test_a_sample_against_live_gunicorn(catalog_backend, body):
    """The catalog's backend allows loopback, but the loopback URLs above name ports where
    nothing listens (80, 1) or addresses refused anyway."""
    r = requests.post(
        f"{catalog_backend.url}/predict",
        data=json.dumps(body),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    check(r.status_code, r.json())
