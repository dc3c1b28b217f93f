"""Both languages say everything, with the same placeholders, and write numbers their way."""

import pytest

from hw5kit.frontend.i18n import LANGS, NBSP, NNBSP, STRINGS, Translator, placeholders


def test_every_language_has_every_key_with_the_same_placeholders():
    reference = STRINGS["fr"]
    for lang in LANGS:
        assert set(STRINGS[lang]) == set(reference), lang
        for key, text in STRINGS[lang].items():
            own = placeholders(text) - {"nbsp", "nnbsp"}
            assert own == placeholders(reference[key]) - {"nbsp", "nnbsp"}, (lang, key)
            assert text.strip(), (lang, key)


@pytest.mark.parametrize("lang", LANGS)
def test_every_string_formats_with_its_placeholders(lang):
    tr = Translator(lang)
    for key, text in STRINGS[lang].items():
        params = {name: f"<{name}>" for name in placeholders(text) - {"nbsp", "nnbsp"}}
        shown = tr(key, **params)
        assert "{" not in shown, (lang, key, shown)


def test_french_is_the_default_and_unknown_languages_are_refused():
    assert Translator().lang == "fr"
    assert Translator()("classify") == "Classer l'image"
    assert Translator("en")("classify") == "Classify image"
    with pytest.raises(ValueError, match="unsupported language 'de'"):
        Translator("de")


def test_numbers_percentages_durations_and_sizes_follow_the_language():
    fr, en = Translator("fr"), Translator("en")
    assert fr.percent(0.8734) == f"87,3{NBSP}%"
    assert en.percent(0.8734) == "87.3%"
    assert fr.percent(1.0) == f"100,0{NBSP}%"
    assert fr.percent(0.0002) == f"< 0,1{NBSP}%"
    assert en.percent(0.0) == "0.0%"
    assert fr.number(12345.6, 1) == f"12{NNBSP}345,6"
    assert en.number(12345.6, 1) == "12,345.6"
    assert fr.duration(54.4) == f"54{NBSP}ms"
    assert fr.duration(4.3) == f"4,3{NBSP}ms"
    assert en.duration(1234) == f"1.2{NBSP}s"
    assert fr.size(512) == f"512{NBSP}o"
    assert en.size(1536) == f"1.5{NBSP}KB"
    assert fr.size(3 * 1024 * 1024) == f"3,0{NBSP}Mo"
