"""The frontends' environment: defaults, accepted forms, and a readable problem for bad values."""

import os
import subprocess
import sys

import pytest

from hw5kit.frontend.config import DEFAULT_BASE_URL, FrontendConfig, parse_base_url
from hw5kit.frontend.i18n import Translator

from ..conftest import ROOT


def test_defaults_are_french_and_the_local_backend():
    config = FrontendConfig.from_env("v1", {})
    assert config.lang == "fr"
    assert config.base_url == DEFAULT_BASE_URL and config.url_is_default
    assert config.problems == ()
    assert config.version.url_var == "SERVING_URL" and not config.version.pick_model


def test_each_version_reads_its_own_variable():
    env = {"SERVING_URL": "https://backend-abc.a.run.app/", "API_GATEWAY": "https://gw.dev/api"}
    assert FrontendConfig.from_env("v2", env).base_url == "https://backend-abc.a.run.app"
    v3 = FrontendConfig.from_env("v3", env)
    assert v3.base_url == "https://gw.dev/api" and v3.version.gateway
    with pytest.raises(ValueError, match="unknown frontend version"):
        FrontendConfig.from_env("v4", env)


@pytest.mark.parametrize(
    ("value", "lang"),
    [
        ("en", "en"),
        ("EN", "en"),
        ("en_US.UTF-8", "en"),
        ("en-GB", "en"),
        ("fr_FR", "fr"),
        ("", "fr"),
    ],
)
def test_ui_lang_accepts_languages_and_locales(value, lang):
    config = FrontendConfig.from_env("v1", {"UI_LANG": value})
    assert config.lang == lang and config.problems == ()


def test_an_unknown_language_falls_back_to_french_and_says_so():
    config = FrontendConfig.from_env("v1", {"UI_LANG": "de"})
    assert config.lang == "fr"
    (problem,) = config.problems
    assert not problem.fatal
    text = Translator("fr")(problem.key, **problem.params)
    assert "« de »" in text and "fr, en" in text


@pytest.mark.parametrize(
    "value",
    [
        "backend:8000",
        "ftp://host/",
        "http://",
        "http://host:port/",
        "http://host/?x=1",
        "http://host/#frag",
        "http://ho st/",
    ],
)
def test_a_bad_url_is_a_fatal_problem_naming_the_variable(value):
    config = FrontendConfig.from_env("v2", {"SERVING_URL": value})
    assert config.base_url is None
    (problem,) = config.problems
    assert problem.fatal
    text = Translator("en")(problem.key, **problem.params)
    assert text.startswith(f"SERVING_URL is “{value}”") and "http(s)://host" in text


def test_good_urls_keep_their_path_and_port():
    assert parse_base_url("http://127.0.0.1:8000", "X") == ("http://127.0.0.1:8000", None)
    assert parse_base_url("https://h.example/base/", "X") == ("https://h.example/base", None)
    assert parse_base_url("http://[::1]:9/", "X") == ("http://[::1]:9", None)


def test_the_frontend_code_imports_neither_torch_nor_the_serving_core():
    """The frontend images stay small: the page must not pull torch in through hw5kit."""
    code = (
        "import sys, hw5kit.frontend.page; "
        "print(sorted(m for m in ('torch', 'hw5kit.serving') if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT / "src")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
