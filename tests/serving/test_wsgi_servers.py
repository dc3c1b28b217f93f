"""The app under a WSGI server other than gunicorn (werkzeug's, as `flask run` uses).

Error answers drain the refused body so keep-alive connections survive; that draining must
not wait for bytes that never come on servers that do not cut the input at Content-Length.
"""

import threading

import pytest
import requests
from werkzeug.serving import make_server

from hw5kit.serving.http import create_app
from hw5kit.serving.settings import ServingSettings


@pytest.fixture(scope="module")
def werkzeug_backend():
    app = create_app(ServingSettings(version="v1", load="sync"))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {}}, 400),
        ({"json": {"url": "ftp://x/y.png"}}, 400),
        ({"data": b"{broken", "headers": {"Content-Type": "application/json"}}, 400),
        ({"files": {"file": ("a.png", b"not an image at all")}}, 422),
        ({"data": b"x" * 5000, "headers": {"Content-Type": "text/plain"}}, 415),
    ],
)
def test_error_answers_do_not_hang(werkzeug_backend, kwargs, status):
    r = requests.post(f"{werkzeug_backend}/predict", timeout=10, **kwargs)
    assert r.status_code == status
    assert r.json()["error"]["code"]
