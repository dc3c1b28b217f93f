"""The words and the chart a prediction becomes, and the message every failure becomes."""

import pytest

from hw5kit.frontend.client import (
    ApiError,
    BackendTimeout,
    BackendUnreachable,
    BadResponse,
    Guess,
    InvalidImageURL,
    Prediction,
)
from hw5kit.frontend.i18n import NBSP, Translator
from hw5kit.frontend.messages import describe
from hw5kit.frontend.views import agreement, bar_chart, chart_rows, md, sentence, timing_text

FR, EN = Translator("fr"), Translator("en")


def prediction(model="efficientnet_lite0", probs=(0.87, 0.08, 0.02), source="url", labels=None):
    labels = labels or ["espresso", "cup", "eggnog"]
    return Prediction(
        model=model,
        guesses=tuple(
            Guess(label, i, p) for i, (label, p) in enumerate(zip(labels, probs, strict=True))
        ),
        source=source,
        timing_ms={"fetch": 12.3, "preprocess": 4.0, "inference": 41.7, "total": 58.9},
        image={"bytes": 1000},
        roundtrip_ms=75.2,
    )


def test_markdown_escaping_keeps_text_as_it_is():
    assert md("efficientnet_lite0") == r"efficientnet\_lite0"
    assert md("a*b* [x](http://evil) $x$ :smile:") == (
        r"a\*b\* \[x\]\(http\://evil\) \$x\$ \:smile\:"
    )


def test_the_sentence_names_model_label_and_confidence():
    assert sentence(prediction(), FR) == (
        f"**efficientnet\\_lite0** y voit{NBSP}: **espresso** (87,0{NBSP}% de confiance)."
    )
    unsure = sentence(prediction(probs=(0.21, 0.2, 0.1)), EN)
    assert unsure.startswith("**efficientnet\\_lite0** is unsure") and "(21.0% confident)" in unsure


def test_chart_rows_keep_the_order_and_highlight_the_top_answer():
    rows = chart_rows(prediction(), EN)
    assert [r["label"] for r in rows] == ["espresso", "cup", "eggnog"]
    assert [r["top"] for r in rows] == [True, False, False]
    assert [r["shown"] for r in rows] == ["87.0%", "8.0%", "2.0%"]
    spec = bar_chart(prediction(), FR).to_dict()
    assert spec["data"]["values"][0] == {
        "rank": 1,
        "label": "espresso",
        "probability": 0.87,
        "shown": f"87,0{NBSP}%",
        "top": True,
    }
    bars = spec["layer"][0]
    assert bars["mark"]["type"] == "bar"
    assert bars["encoding"]["y"]["sort"] == {"field": "rank", "order": "ascending"}


def test_timing_shows_the_round_trip_and_the_download_only_for_urls():
    by_url = timing_text(prediction(source="url"), EN)
    assert f"Answered in **75{NBSP}ms**" in by_url
    assert f"inference 42{NBSP}ms" in by_url and f"image download 12{NBSP}ms" in by_url
    by_upload = timing_text(prediction(source="upload"), FR)
    assert f"Réponse en **75{NBSP}ms**" in by_upload and "téléchargement" not in by_upload


def test_agreement_between_models():
    same = {m: prediction(model=m) for m in ("a", "b", "c")}
    assert agreement(same, EN) == "All 3 models agree: **espresso**."
    mixed = dict(same, c=prediction(model="c", labels=["cup", "espresso", "eggnog"]))
    assert agreement(mixed, EN) == "The models disagree: **espresso** (a, b), **cup** (c)."
    assert agreement({"a": same["a"]}, EN) is None


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (InvalidImageURL("", "empty"), "Saisissez d'abord l'adresse"),
        (InvalidImageURL("chat.jpg", "scheme"), "« chat.jpg » n'est pas une adresse web"),
        (BackendUnreachable("http://b:1"), "ne répond pas (http://b:1)"),
        (BackendTimeout("http://b:1", 60), "dans les 60"),
        (BadResponse("http://b:1", 404, "<html>"), "réponse inattendue (HTTP 404)"),
        (ApiError(422, "remote_status", "the URL answered HTTP 404"), "a répondu par une erreur"),
        (ApiError(403, "blocked_destination", "private address"), "réseau privé ou local"),
        (ApiError(422, "not_an_image", "cannot identify image"), "pas une image lisible"),
        (ApiError(413, "too_large", "over 20 MB"), "trop volumineux"),
        (ApiError(400, "unknown_model", "no model x"), "Ce modèle n'existe pas"),
        (ApiError(418, "teapot", "short and stout"), "n'a pas accepté la requête (HTTP 418)"),
        (ApiError(500, "internal", "boom"), "a rencontré une erreur (HTTP 500)"),
    ],
)
def test_every_failure_is_a_sentence_in_the_page_language(exc, expected):
    message = describe(exc, FR)
    assert expected in message.text
    assert message.level == "error" or isinstance(exc, BackendTimeout)
    if isinstance(exc, ApiError):
        assert message.detail == f"Message du service{NBSP}: « {exc.message} »"


def test_unreachable_and_bad_response_name_the_variable_to_check():
    assert (
        "API_GATEWAY points to it"
        in describe(BackendUnreachable("http://gw"), EN, url_var="API_GATEWAY").hint
    )
    assert "SERVING_URL (http://b:1)" in describe(BadResponse("http://b:1", 404), EN).hint


def test_not_ready_and_overloaded_are_warnings_with_the_wait():
    loading = describe(ApiError(503, "not_ready", "models loading", retry_after=7), EN)
    assert loading.level == "warning" and "still loading" in loading.text
    assert loading.hint == f"Try again in 7{NBSP}s."
    busy = describe(ApiError(503, "overloaded", "queue full"), FR)
    assert busy.level == "warning" and "surchargé" in busy.text


def test_anything_else_is_an_apology_with_a_time_not_a_traceback():
    message = describe(KeyError("internal detail"), EN)
    assert message.text == "Something unexpected went wrong in this page."
    assert "UTC" in message.hint and "KeyError" not in message.hint + message.text


def test_a_front_ends_own_error_page_is_read_by_its_status():
    """Cloud Run, a gateway or a proxy answer 429/5xx with a page of their own, not our JSON."""
    busy = describe(BadResponse("https://b.run.app", 429, "<html>Rate exceeded"), EN)
    assert busy.level == "warning" and busy.text == "The service is overloaded right now."
    assert describe(BadResponse("https://b.run.app", 503, "<html>"), EN).level == "warning"
    broken = describe(BadResponse("https://b.run.app", 502, "<html>Bad Gateway"), EN)
    assert broken.text == "The service ran into an error (HTTP 502)."
    misrouted = describe(BadResponse("https://b.run.app", 404, "<html>Not Found"), EN)
    assert "Check that SERVING_URL (https://b.run.app)" in misrouted.hint
