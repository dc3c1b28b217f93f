"""The documentation site, as `nox -s docs` builds it (the same builder, strict, in .nox/docs),
then read in headless Chromium from a loopback server: the student guide's first step in
English and in French, the diagrams, and not one request leaving 127.0.0.1."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from hw5kit import devenv, docsite
from hw5kit.photos import serve_directory

from ..conftest import ROOT, SUPPORT

pytestmark = pytest.mark.slow

STUDENT = ("student/index", "student/cloud", "student/troubleshooting")
TA = ("ta/index", "ta/gradescope", "ta/results")


def guarded_env(tmp: Path) -> dict[str, str]:
    """The build under the network guard: a lookup or connection off loopback is logged."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW5_")}
    env["PYTHONPATH"] = str(SUPPORT / "netguard")
    env["NETGUARD_LOG"] = str(tmp / "netguard.log")
    return env


@pytest.fixture(scope="session")
def docs_python() -> Path:
    """.nox/docs, created or updated on demand, as nox -s docs does."""
    return devenv.ensure(ROOT, profile=devenv.DOCS, log=lambda message: None)


@pytest.fixture(scope="session")
def site(docs_python, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("docs")
    out = tmp / "site"
    docsite.build(out, python=docs_python, env=guarded_env(tmp))
    guard = tmp / "netguard.log"
    assert not guard.exists() or guard.read_text() == "", guard.read_text()
    return out


def test_the_site_builds_strict_with_every_page_in_both_languages(site):
    for page in ("", "student/", "ta/", "maintainer/", "maintainer/benchmarks/"):
        assert (site / page / "index.html").is_file(), page
    for page in STUDENT + TA:
        name = page.removesuffix("/index").removesuffix("index")
        english = (site / name / "index.html").read_text()
        french = (site / "fr" / name / "index.html").read_text()
        assert '<html lang="en"' in english and '<html lang="fr"' in french, page
        assert english != french
        assert (ROOT / "docs" / f"{page}.fr.md").is_file(), f"{page} has no French version"
    # a maintainer page has no French version: the French site shows the English one
    assert "Generated blocks" in (site / "fr" / "maintainer" / "index.html").read_text()
    # Mermaid comes with the site (no CDN), and no web font is asked for
    assert (site / docsite.MERMAID).read_bytes() == (ROOT / "docs" / docsite.MERMAID).read_bytes()
    home = (site / "index.html").read_text()
    assert "fonts.googleapis.com" not in home and "fonts.gstatic.com" not in home
    assert home.count('class="mermaid"') == 4


def test_a_broken_link_or_a_page_left_out_fails_the_build(docs_python, tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy2(ROOT / docsite.CONFIG, copy / docsite.CONFIG)
    guide = copy / "docs" / "student" / "index.fr.md"
    guide.write_text(guide.read_text() + "\n[la suite](etape-10.md), [ici](cloud.md#nulle-part)\n")
    (copy / "docs" / "maintainer" / "orphan.md").write_text("# Not in the navigation\n")
    with pytest.raises(docsite.DocsError) as failure:
        docsite.build(tmp_path / "site", copy, python=docs_python, env=guarded_env(tmp_path))
    message = str(failure.value)
    assert "student/index.fr.md" in message and "etape-10.md" in message
    assert "#nulle-part" in message
    assert "orphan.md" in message


@pytest.mark.browser
def test_the_student_guide_s_first_step_in_english_and_in_french(site, new_page):
    page = new_page()
    outside: list[str] = []
    with serve_directory(site) as base:

        def route(request_route):
            url = request_route.request.url
            if url.startswith(base + "/"):
                request_route.continue_()
            else:
                outside.append(url)
                request_route.abort()

        page.context.route("**/*", route)
        page.goto(f"{base}/student/")
        first = page.locator("article ol > li").first
        assert first.inner_text().startswith("Account and credits."), first.inner_text()
        assert page.locator("html").get_attribute("lang") == "en"

        # the language menu leads to the same step in French
        page.locator(".md-header__option .md-select").hover()
        page.locator(".md-select__link", has_text="Français").click()
        page.wait_for_url(f"{base}/fr/student/")
        first = page.locator("article ol > li").first
        assert first.inner_text().startswith("Compte et crédits."), first.inner_text()
        assert page.locator("html").get_attribute("lang") == "fr"
        assert "hw5-<matricule>" in page.locator("article").inner_text()

        # the home page's diagrams are drawn by the vendored Mermaid
        page.goto(f"{base}/")
        diagrams = page.locator("div.mermaid")
        diagrams.first.wait_for(state="attached")
        page.wait_for_function("document.querySelectorAll('pre.mermaid').length === 0")
        assert diagrams.count() == 4
        for i in range(4):
            box = diagrams.nth(i).bounding_box()
            assert box and box["height"] > 40, (i, box)
        sources = re.findall(
            r"```mermaid\n(.*?)```", (ROOT / "docs" / "index.md").read_text(), re.S
        )
        parsed = page.evaluate(
            "async (texts) => { const out = [];"
            " for (const t of texts) { try { await mermaid.parse(t); out.push('ok'); }"
            " catch (e) { out.push(String(e)); } } return out; }",
            sources,
        )
        assert parsed == ["ok"] * len(sources)
    assert outside == [], f"the site asked for something off 127.0.0.1: {outside}"
