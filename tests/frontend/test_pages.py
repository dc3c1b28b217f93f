"""The v1 and v2 pages under Streamlit's AppTest, talking HTTP to real backends on 127.0.0.1.

AppTest runs the app file in this process, as Streamlit would for one visitor; widgets are
driven through its API. The backends are the real Flask apps (see conftest), and a request
counter checks that the page sends exactly the requests it should.
"""

from __future__ import annotations

import pyarrow.ipc
import pytest
from streamlit.testing.v1 import AppTest

from hw5kit.frontend import views
from hw5kit.frontend.client import ServingClient, Upload
from hw5kit.frontend.i18n import NBSP, Translator
from hw5kit.photos import photo

from .conftest import APPS

FR, EN = Translator("fr"), Translator("en")


def page(version: str, monkeypatch, url: str | None, **env: str) -> AppTest:
    for name in ("SERVING_URL", "UI_LANG"):
        monkeypatch.delenv(name, raising=False)
    if url is not None:
        monkeypatch.setenv("SERVING_URL", url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(APPS / f"frontend_{version}" / "app.py", default_timeout=60)
    return at.run()


def texts(at: AppTest) -> str:
    """Every text the page shows (markdown, alerts, captions, titles), one per line."""
    parts = []
    for kind in ("title", "markdown", "caption", "success", "info", "warning", "error"):
        parts += [element.value for element in getattr(at, kind)]
    return "\n".join(parts)


def classify_url(at: AppTest, url: str) -> AppTest:
    at.text_input(key="url_text").input(url)
    return at.form_submit_button[0].click().run()


def classify_file(at: AppTest, name: str) -> AppTest:
    data = photo(name).path.read_bytes()
    return at.file_uploader(key="upload").set_value((name, data, "image/png")).run()


def charts(at: AppTest) -> list[list[dict]]:
    """The rows of every Vega-Lite chart on the page (Streamlit sends them as Arrow tables)."""
    tables = []
    for chart in at.get("vega_lite_chart"):
        blobs = [d.data.data for d in chart.proto.datasets] or [chart.proto.data.data]
        (blob,) = blobs
        tables.append(pyarrow.ipc.open_stream(blob).read_all().to_pylist())
    return tables


def assert_no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert "Traceback" not in texts(at)


# ---- v1 ------------------------------------------------------------------------------------
def test_v1_starts_in_french_with_its_model_and_an_invitation(app_v1, monkeypatch):
    at = page("v1", monkeypatch, app_v1.url)
    assert_no_exception(at)
    assert at.title[0].value == FR("title")
    assert at.info[0].value == FR("start_hint")
    sidebar = "\n".join(m.value for m in at.sidebar.markdown)
    assert "efficientnet\\_lite0" in sidebar
    assert "entrée 224" in "\n".join(c.value for c in at.sidebar.caption)
    assert not at.selectbox and not at.toggle  # v1: one model, nothing to pick or compare
    assert app_v1.count("POST", "/predict") == 0


def test_v1_classifies_a_url_shows_image_sentence_chart_and_timing(app_v1, photo_url, monkeypatch):
    url = photo_url("coffee.png")
    expected = ServingClient(app_v1.url).predict(url)
    at = page("v1", monkeypatch, app_v1.url)
    before = app_v1.count("POST", "/predict")
    classify_url(at, url)
    assert_no_exception(at)
    assert app_v1.count("POST", "/predict") == before + 1
    (success,) = at.success
    assert success.value == views.sentence(expected, FR)
    assert "**espresso**" in success.value
    assert at.image[0].value == [url]  # the browser loads it: the frontend never downloads it
    (rows,) = charts(at)  # every answer is a bar, labelled with its percentage
    assert [(r["label"], r["shown"]) for r in rows] == [
        (g.label, FR.percent(g.probability)) for g in expected.guesses
    ]
    assert any(c.value.startswith(FR("timing", roundtrip="")[:20]) for c in at.caption)
    # a rerun without any change sends no new request
    at.run()
    assert app_v1.count("POST", "/predict") == before + 1
    assert at.success[0].value == success.value


def test_v1_classifies_an_upload(app_v1, monkeypatch):
    at = page("v1", monkeypatch, app_v1.url)
    classify_file(at, "china.jpg")
    assert_no_exception(at)
    assert "**palace**" in at.success[0].value
    assert "/media/" in at.image[0].value[0]  # served by Streamlit from the uploaded bytes
    assert "china.jpg" in at.image[0].captions[0]
    # removing the file clears the answer and brings the invitation back
    at.file_uploader(key="upload").clear().run()
    assert not at.success and at.info[0].value == FR("start_hint")


def test_v1_top_k_changes_the_number_of_answers_with_one_request(app_v1, photo_url, monkeypatch):
    at = page("v1", monkeypatch, app_v1.url, UI_LANG="en")
    classify_url(at, photo_url("chelsea.png"))
    before = app_v1.count("POST", "/predict")
    at.slider(key="top_k").set_value(3).run()
    assert app_v1.count("POST", "/predict") == before + 1
    assert "**The 3 most likely answers**" in texts(at)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("", "err_url_empty"),
        ("chat.jpg", "err_url_scheme"),
        ("http://exa mple.org/chat.jpg", "err_url_invalid"),
    ],
)
def test_v1_an_invalid_url_is_explained_without_asking_the_backend(
    app_v1, monkeypatch, typed, expected
):
    at = page("v1", monkeypatch, app_v1.url)
    before = app_v1.count("POST", "/predict")
    classify_url(at, typed)
    assert_no_exception(at)
    assert app_v1.count("POST", "/predict") == before
    (error,) = at.error
    assert views.md(FR(expected, url=typed.strip())) in error.value
    assert not at.image  # nothing to show


def test_v1_a_backend_error_shows_the_backends_own_message(app_v1, photo_url, monkeypatch):
    at = page("v1", monkeypatch, app_v1.url, UI_LANG="en")
    classify_url(at, photo_url("no-such-photo.png"))
    assert_no_exception(at)
    (error,) = at.error
    assert views.md(EN("err_remote_status")) in error.value
    assert views.md("The service said: “") in error.value and "404" in error.value


def test_v1_backend_down_is_a_readable_message_at_once_and_on_classify(
    closed_url, photo_url, monkeypatch
):
    at = page("v1", monkeypatch, closed_url)
    assert_no_exception(at)
    (warning,) = at.warning
    assert views.md(FR("err_models")) in warning.value
    assert views.md(FR("err_unreachable", url=closed_url)) in warning.value
    assert at.button(key="retry_models").label == FR("retry")
    classify_url(at, photo_url("coffee.png"))
    assert_no_exception(at)
    (error,) = at.error
    assert views.md(FR("err_unreachable", url=closed_url)) in error.value
    assert "SERVING\\_URL" in error.value


def test_v1_a_loading_backend_says_to_wait(app_loading, monkeypatch):
    at = page("v1", monkeypatch, app_loading.url, UI_LANG="en")
    classify_file(at, "coffee.png")
    assert_no_exception(at)
    warnings = [w.value for w in at.warning]
    assert any(views.md(EN("err_not_ready")) in w for w in warnings), warnings
    assert any(views.md(EN("hint_retry_in", seconds=2)) in w for w in warnings)


def test_a_bad_serving_url_stops_the_page_with_what_to_set(monkeypatch):
    at = page("v2", monkeypatch, "backend_v2:8000")
    assert_no_exception(at)
    (error,) = at.error
    assert "SERVING\\_URL vaut « backend\\_v2\\:8000 »" in error.value
    assert not at.text_input and not at.sidebar.selectbox


def test_an_unknown_language_is_french_with_a_warning(app_v1, monkeypatch):
    at = page("v1", monkeypatch, app_v1.url, UI_LANG="de")
    assert at.title[0].value == FR("title")
    assert "UI\\_LANG vaut « de »" in at.warning[0].value


def test_a_bug_in_the_page_is_an_apology_not_a_traceback(app_v1, photo_url, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(views, "timing_text", broken)
    monkeypatch.setattr("hw5kit.frontend.page.timing_text", broken)
    at = page("v1", monkeypatch, app_v1.url)
    classify_url(at, photo_url("coffee.png"))
    assert not at.exception
    (error,) = at.error
    assert views.md(FR("err_unexpected")) in error.value
    assert "secret internals" not in texts(at) and "RuntimeError" not in texts(at)


# ---- v2 ------------------------------------------------------------------------------------
def test_v2_picker_lists_the_backends_models_and_the_choice_goes_in_each_request(
    app_v2, photo_url, monkeypatch
):
    puts_before = sum(1 for method, _ in app_v2.requests if method == "PUT")
    at = page("v2", monkeypatch, app_v2.url)
    picker = at.selectbox(key="model_picker")
    assert picker.options == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert picker.value == "efficientnet_lite0"
    picker.select("efficientnet_lite2").run()
    url = photo_url("coffee.png")
    classify_url(at, url)
    assert_no_exception(at)
    expected = ServingClient(app_v2.url).predict(url, model="efficientnet_lite2")
    assert at.success[0].value == views.sentence(expected, FR)
    assert "efficientnet\\_lite2" in at.success[0].value
    assert at.session_state["chosen_model"] == "efficientnet_lite2"
    # the backend saw no PUT: the choice travels in the body, never in the backend's session
    assert sum(1 for method, _ in app_v2.requests if method == "PUT") == puts_before


def test_v2_switching_model_reclassifies_the_same_image_once(app_v2, photo_url, monkeypatch):
    at = page("v2", monkeypatch, app_v2.url)
    url = photo_url("chelsea.png")
    classify_url(at, url)
    first = at.success[0].value
    before = app_v2.count("POST", "/predict")
    at.selectbox(key="model_picker").select("efficientnet_lite1").run()
    assert app_v2.count("POST", "/predict") == before + 1
    expected = ServingClient(app_v2.url).predict(url, model="efficientnet_lite1")
    assert at.success[0].value == views.sentence(expected, FR) != first


def test_v2_compare_shows_every_model_side_by_side(app_v2, monkeypatch):
    at = page("v2", monkeypatch, app_v2.url, UI_LANG="en")
    classify_file(at, "coffee.png")
    at.toggle(key="compare").set_value(True).run()
    assert_no_exception(at)
    client = ServingClient(app_v2.url)
    data = Upload("coffee.png", photo("coffee.png").path.read_bytes(), "image/png")
    shown = texts(at)
    assert EN("compare_title") in [h.value for h in at.subheader]
    assert "All 3 models agree: **espresso**." in shown
    for model in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        p = client.predict(data, model=model)
        assert views.md(model) in shown
        assert EN("compare_short", label="espresso", pct=EN.percent(p.top.probability)) in shown
    assert "efficientnet\\_lite0** · _your choice_" in shown
    assert len(charts(at)) == 4  # the main answer and one per model
    # nothing changes, nothing is sent again
    before = app_v2.count("POST", "/predict")
    at.run()
    assert app_v2.count("POST", "/predict") == before


def test_v2_compare_waits_for_an_image_the_service_could_classify(app_v2, monkeypatch):
    at = page("v2", monkeypatch, app_v2.url)
    at.toggle(key="compare").set_value(True).run()
    before = app_v2.count("POST", "/predict")
    classify_url(at, "pas une url")
    assert app_v2.count("POST", "/predict") == before
    assert FR("compare_skipped") in [c.value for c in at.caption]


def test_v2_backend_down_keeps_the_page_usable(closed_url, monkeypatch):
    at = page("v2", monkeypatch, closed_url, UI_LANG="en")
    assert_no_exception(at)
    assert views.md(EN("err_models")) in at.warning[0].value
    assert not at.selectbox  # no list to pick from
    assert at.toggle(key="compare").disabled
    classify_file(at, "coffee.png")
    assert_no_exception(at)
    assert views.md(EN("err_unreachable", url=closed_url)) in at.error[0].value


def test_v2_percentages_read_as_the_language_writes_them(app_v2, monkeypatch):
    at = page("v2", monkeypatch, app_v2.url)
    classify_file(at, "coffee.png")
    assert f"{NBSP}% de confiance" in at.success[0].value


def test_v2_the_choice_survives_the_backend_going_away_and_back(app_v2, closed_url, monkeypatch):
    at = page("v2", monkeypatch, app_v2.url)
    at.selectbox(key="model_picker").select("efficientnet_lite1").run()
    monkeypatch.setenv("SERVING_URL", closed_url)  # the backend "moves away": no model list
    at.run()
    assert not at.selectbox and views.md(FR("err_models")) in at.warning[0].value
    monkeypatch.setenv("SERVING_URL", app_v2.url)
    at.run()
    assert at.selectbox(key="model_picker").value == "efficientnet_lite1"
    classify_file(at, "coffee.png")
    assert "efficientnet\\_lite1" in at.success[0].value
