"""The frontends in headless Chromium: real Streamlit processes, real gunicorn backends, photos
served over loopback HTTP. What a person does (paste a URL, upload a file, pick a model, two
people at once, the backend going down) and what they read on the page.

Each version leaves a screenshot in artifacts/screenshots/ (git-ignored) to look at.
"""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from hw5kit import procs
from hw5kit.frontend.i18n import Translator
from hw5kit.photos import photo

from .conftest import SCREENSHOTS, check_frontend_stopped_clean, start_frontend

pytestmark = [pytest.mark.slow, pytest.mark.browser]

FR, EN = Translator("fr"), Translator("en")


# ---- fixtures: one frontend per version for the module --------------------------------------
@pytest.fixture(scope="module")
def frontend_v1(backend_v1, tmp_path_factory):
    frontend = start_frontend(
        "frontend_v1", tmp_path_factory.mktemp("fv1"), SERVING_URL=backend_v1.url
    )
    yield frontend
    check_frontend_stopped_clean(frontend)


@pytest.fixture(scope="module")
def frontend_v2(backend_v2, tmp_path_factory):
    frontend = start_frontend(
        "frontend_v2", tmp_path_factory.mktemp("fv2"), SERVING_URL=backend_v2.url
    )
    yield frontend
    check_frontend_stopped_clean(frontend)


# ---- helpers -------------------------------------------------------------------------------
def plain(text: str) -> str:
    """Text as a person reads it: every kind of space is a space."""
    return re.sub(r"[\s\u00a0\u202f]+", " ", text).strip()


def pattern(text: str) -> re.Pattern:
    """``text`` as a regular expression where any run of spaces (of any kind) matches."""
    return re.compile(re.escape(plain(text)).replace(r"\ ", r"\s+"))


def reference(base: str, url: str, model: str | None = None) -> dict:
    body = {"url": url, **({"model": model} if model else {})}
    answer = requests.post(f"{base}/predict", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def open_page(new_page, frontend, tr: Translator = FR, **size):
    page = new_page(**size)
    page.goto(frontend.url)
    page.get_by_role("textbox", name=tr("url_label")).wait_for()
    return page


def classify_url(page, url: str, tr: Translator = FR) -> None:
    page.get_by_role("tab", name=re.compile(re.escape(tr("tab_url").split(": ", 1)[-1]))).click()
    box = page.get_by_role("textbox", name=tr("url_label"))
    box.fill(url)
    page.get_by_role("button", name=tr("classify")).click()


def answer_text(page, kind: str = "Success") -> str:
    alert = page.get_by_test_id(f"stAlertContent{kind}").first
    alert.wait_for()
    # the text without the icon (a Material Symbols ligature, which reads as its name)
    return plain(alert.get_by_test_id("stMarkdownContainer").first.inner_text())


def wait_answer(page, *needles: str, kind: str = "Success") -> str:
    """Wait until the alert of this kind holds every needle (the page reruns as it goes)."""
    locator = page.get_by_test_id(f"stAlertContent{kind}")
    for needle in needles:
        locator.filter(has_text=pattern(needle)).first.wait_for()
    return answer_text(page, kind)


def pick_model(page, model: str, tr: Translator = FR) -> None:
    picker = page.get_by_role("combobox", name=tr("model_label"))
    picker.click()
    page.get_by_role("option", name=model, exact=True).click()
    expect(picker).to_have_value(model)


def image_loaded(page, selector: str) -> bool:
    image = page.locator(selector).first
    image.wait_for()
    image.evaluate("img => img.complete || new Promise(ok => img.addEventListener('load', ok))")
    return image.evaluate("img => img.naturalWidth > 0")


def chart_drawn(page) -> bool:
    chart = page.get_by_test_id("stVegaLiteChart").first
    chart.wait_for()
    drawn = chart.locator("canvas, svg").first
    drawn.wait_for()
    return drawn.bounding_box()["height"] > 50


def sentence(tr: Translator, answer: dict) -> str:
    top = answer["predictions"][0]
    return plain(
        tr(
            "sentence_sure",
            model=answer["model"],
            label=top["label"],
            pct=tr.percent(top["probability"]),
        ).replace("**", "")
    )


def no_traceback(page) -> None:
    body = page.inner_text("body")
    assert "Traceback" not in body and 'File "' not in body
    assert page.get_by_test_id("stException").count() == 0


# ---- health --------------------------------------------------------------------------------
def test_streamlit_health_endpoint_answers_for_probes(frontend_v1):
    answer = requests.get(frontend_v1.url + procs.STREAMLIT_HEALTH, timeout=5)
    assert answer.status_code == 200 and answer.text == "ok"


# ---- v1 ------------------------------------------------------------------------------------
def test_v1_paste_a_url_and_read_the_label(frontend_v1, backend_v1, new_page, photo_url):
    url = photo_url("coffee.png")
    expected = reference(backend_v1.url, url)
    page = open_page(new_page, frontend_v1)
    assert page.title() == FR("page_title")
    classify_url(page, url)
    text = wait_answer(page, "espresso")
    assert text == sentence(FR, expected)  # the backend's answer, in French
    assert image_loaded(page, f'img[src="{url}"]')  # shown by the browser from the URL
    assert chart_drawn(page)
    # the bar chart names every answer, most likely first, each with its percentage
    chart = plain(page.get_by_test_id("stVegaLiteChart").first.inner_text())
    labels = " ".join(g["label"] for g in expected["predictions"])
    percents = " ".join(plain(FR.percent(g["probability"])) for g in expected["predictions"])
    assert chart == f"{labels} {percents}", chart
    body = plain(page.inner_text("body"))
    assert re.search(r"Réponse en \d+(,\d)? m?s · dont inférence", body), body
    no_traceback(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "frontend_v1.png"))


def test_v1_upload_a_file(frontend_v1, new_page):
    page = open_page(new_page, frontend_v1)
    page.get_by_role("tab", name=re.compile("Fichier")).click()
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(photo("china.jpg").path))
    text = wait_answer(page, "palace")
    assert text.startswith("efficientnet_lite0 y voit : palace")
    assert image_loaded(page, '[data-testid="stImage"] img[src*="/media/"]')
    assert "china.jpg" in page.inner_text("body")
    no_traceback(page)


def test_v1_bad_input_is_explained(frontend_v1, new_page, photo_url):
    page = open_page(new_page, frontend_v1)
    classify_url(page, "chat.jpg")
    error = answer_text(page, "Error")
    assert "« chat.jpg » n'est pas une adresse web" in error and "https://" in error
    missing = photo_url("no-such-photo.png")
    box = page.get_by_role("textbox", name=FR("url_label"))
    box.fill(missing)
    box.press("Enter")  # Enter in the URL box classifies, as the button does
    error = plain(
        page.get_by_test_id("stAlertContentError")
        .filter(has_text="Message du service")
        .first.inner_text()
    )
    assert "Le site qui héberge l'image a répondu par une erreur." in error
    assert "Message du service : «" in error and "404" in error
    no_traceback(page)


# ---- v2 ------------------------------------------------------------------------------------
def test_v2_switch_model_then_compare_all(frontend_v2, backend_v2, new_page, photo_url):
    url = photo_url("coffee.png")
    expected = {
        m: reference(backend_v2.url, url, m)
        for m in requests.get(f"{backend_v2.url}/models", timeout=10).json()
    }
    assert len(expected) == 3
    page = open_page(new_page, frontend_v2)
    classify_url(page, url)
    assert wait_answer(page, "efficientnet_lite0 y voit") == sentence(
        FR, expected["efficientnet_lite0"]
    )
    pick_model(page, "efficientnet_lite2")  # the same image is classified again with it
    assert wait_answer(page, "efficientnet_lite2 y voit") == sentence(
        FR, expected["efficientnet_lite2"]
    )
    assert "entrée 260 px" in plain(page.get_by_test_id("stSidebar").inner_text())

    page.get_by_text(FR("compare_label")).click()
    page.get_by_text("Les 3 modèles sont d'accord").wait_for()
    # the columns come in as the run goes on: wait for every model's chart before reading
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=stVegaLiteChart] canvas, "
        "[data-testid=stVegaLiteChart] svg').length >= 4"
    )
    for answer in expected.values():
        pct = FR.percent(answer["predictions"][0]["probability"])
        page.get_by_text(pattern(f"espresso · {pct}")).first.wait_for()
    body = plain(page.inner_text("body"))
    assert "efficientnet_lite2 · votre choix" in body
    no_traceback(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "frontend_v2.png"))


def test_v2_two_people_with_different_models_at_the_same_time(
    frontend_v2, backend_v2, new_page, photo_url
):
    """Alice picks lite1, Bob lite2, and they classify at the same moment, twice: each sees
    their own model's answer every time."""
    people = {
        "efficientnet_lite1": open_page(new_page, frontend_v2),
        "efficientnet_lite2": open_page(new_page, frontend_v2),
    }
    for model, page in people.items():
        pick_model(page, model)
    for name in ("chelsea.png", "china.jpg"):
        url = photo_url(name)
        expected = {m: reference(backend_v2.url, url, m) for m in people}
        assert (
            expected["efficientnet_lite1"]["predictions"]
            != expected["efficientnet_lite2"]["predictions"]
        )
        for page in people.values():  # both requests leave before either answer is read
            page.get_by_role("textbox", name=FR("url_label")).fill(url)
        for page in people.values():
            page.get_by_role("button", name=FR("classify")).click(no_wait_after=True)
        for model, page in people.items():
            top = expected[model]["predictions"][0]
            text = wait_answer(
                page, f"{model} y voit", top["label"], plain(FR.percent(top["probability"]))
            )
            assert text == sentence(FR, expected[model]), (model, name)
    for page in people.values():
        no_traceback(page)


# ---- the backend goes down -----------------------------------------------------------------
def test_backend_stopped_gives_a_readable_message(
    backend_factory, frontend_factory, new_page, photo_url
):
    backend = backend_factory("backend_v1")
    frontend = frontend_factory("frontend_v1", SERVING_URL=backend.url, UI_LANG="en")
    page = open_page(new_page, frontend, EN)
    url = photo_url("coffee.png")
    classify_url(page, url, EN)
    assert wait_answer(page, "efficientnet_lite0 sees espresso").startswith(
        "efficientnet_lite0 sees espresso"
    )

    backend.process.stop()
    classify_url(page, url, EN)  # the same image again: a new request, to a stopped backend
    error = wait_answer(page, "does not answer", kind="Error")
    assert error.startswith(f"The classification service does not answer ({backend.url}).")
    assert "SERVING_URL points to it" in error
    page.reload()  # a new visitor, the same words
    classify_url(page, url, EN)
    assert wait_answer(page, "does not answer", kind="Error") == error
    no_traceback(page)
    page.screenshot(path=str(SCREENSHOTS / "frontend_v1_backend_down.png"))
