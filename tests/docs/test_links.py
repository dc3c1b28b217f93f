"""README.md is the front door: every relative link in it leads to a file that exists, and to
the heading it names. Plus the checker itself, the vendored Mermaid's pin, and the build log
reading of hw5kit.docsite (no MkDocs needed)."""

from __future__ import annotations

import re

import pytest
import yaml

from hw5kit import docsite

from ..conftest import ROOT

README = ROOT / "README.md"


def test_every_relative_link_of_the_readme_resolves():
    links = docsite.relative_links(README)
    assert len(links) >= 20
    assert docsite.broken_links(README) == []


def test_the_readme_sends_each_reader_to_the_site_in_both_languages():
    targets = {link.target for link in docsite.relative_links(README)}
    for page in ("docs/student/index.md", "docs/student/index.fr.md", "docs/ta/index.md",
                 "docs/ta/index.fr.md", "docs/maintainer/index.md"):  # fmt: skip
        assert page in targets, page
    text = README.read_text()
    assert len(text.splitlines()) <= 160, "the README is the front door: keep it short"
    assert "nox -s docs" in text


def test_the_link_checker_finds_missing_files_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text(
        "# Guide\n\n## Step one: `nox -s setup`\n\n## Step one: `nox -s setup`\n\n"
        "```\n## not a heading\n```\n"
    )
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n## Two words\n\n"
        "[ok](docs/guide.md) [ok](docs/guide.md#step-one-nox--s-setup)"
        " [ok](docs/guide.md#step-one-nox--s-setup-1) [ok](#two-words) [ok](docs/)\n"
        "[web](https://example.org/x.md) `[code](nowhere.md)` ![img](missing.png)\n"
        "[gone](docs/nope.md)\n[bad anchor](docs/guide.md#step-two)\n[self](#three-words)\n"
        "[fenced is skipped](docs/guide.md#not-a-heading)\n"
        "```\n[in a code block](nowhere.md)\n```\n"
    )
    problems = docsite.broken_links(readme)
    assert problems == [
        "README.md:6: missing.png: no such file",
        "README.md:7: docs/nope.md: no such file",
        "README.md:8: docs/guide.md#step-two: guide.md has no heading with the anchor #step-two",
        "README.md:9: #three-words: README.md has no heading with the anchor #three-words",
        "README.md:10: docs/guide.md#not-a-heading: guide.md has no heading with the anchor "
        "#not-a-heading",
    ]
    assert docsite.main(["links", str(readme)]) == 1
    assert docsite.main(["links", str(README)]) == 0


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("What each path downloads", "what-each-path-downloads"),
        ("Configuration: `deployment.yaml`", "configuration-deploymentyaml"),
        ("v2's session key", "v2s-session-key"),
        ("Règles de nommage", "règles-de-nommage"),
        ("The [corpus](x.md)", "the-corpus"),
    ],
)
def test_anchors_are_github_s(heading, anchor):
    assert docsite.slug(heading) == anchor


def test_the_vendored_mermaid_is_the_pinned_release(tmp_path):
    docsite.check_mermaid()
    config = yaml.load((ROOT / docsite.CONFIG).read_text(), Loader=yaml.BaseLoader)  # noqa: S506
    assert docsite.MERMAID.as_posix() in config["extra_javascript"]
    assert config["theme"]["font"] == "false"
    assert (ROOT / "docs" / "assets" / "javascripts" / "mermaid.LICENSE.txt").is_file()
    tampered = tmp_path / docsite.MERMAID
    tampered.parent.mkdir(parents=True)
    tampered.write_bytes((ROOT / "docs" / docsite.MERMAID).read_bytes() + b"\n//")
    with pytest.raises(docsite.DocsError, match="sha256 differs"):
        docsite.check_mermaid(tmp_path)
    with pytest.raises(docsite.DocsError, match="missing"):
        docsite.check_mermaid(tmp_path / "nowhere")


def test_build_warnings_keep_their_continuation_lines():
    log = (
        "INFO    -  Building\n"
        "WARNING -  The following pages exist in the docs directory, but are not included in"
        ' the "nav" configuration:\n  - maintainer/orphan.md\n'
        "INFO    -  Documentation built\n"
        "WARNING -  Doc file 'a.md' contains a link 'b.md', but the target is not found.\n"
    )
    found = docsite.warnings(log)
    assert len(found) == 2
    assert found[0].endswith("\n  - maintainer/orphan.md")
    assert re.search(r"'b\.md'", found[1])


def fenced_blocks(text: str) -> list[str]:
    """The fenced code blocks of a page, each with its indentation removed."""
    blocks = re.findall(r"^( *)```[^\n]*\n(.*?)^\1```", text, re.M | re.S)
    return [
        "\n".join(line.removeprefix(indent) for line in body.splitlines())
        for indent, body in blocks
    ]


def test_the_french_pages_show_the_same_commands_as_the_english_ones():
    """A French page is the English one translated: the same code blocks, the same generated
    tables; a command changed in one language only fails here."""
    pairs = sorted((ROOT / "docs").rglob("*.fr.md"))
    names = {p.relative_to(ROOT / "docs").as_posix() for p in pairs}
    assert {f"{s}/{p}.fr.md" for s in ("student", "ta") for p in ("index",)} <= names
    assert len(pairs) >= 7
    for french in pairs:
        english = french.with_name(french.name.replace(".fr.md", ".md"))
        en_text, fr_text = english.read_text(), french.read_text()
        en_blocks = [b for b in fenced_blocks(en_text) if not b.startswith(("flowchart",))]
        fr_blocks = [b for b in fenced_blocks(fr_text) if not b.startswith(("flowchart",))]
        assert fr_blocks == en_blocks, french.name
        for marker in re.findall(r"<!-- BEGIN generated[^>]*-->", en_text):
            assert marker in fr_text, (french.name, marker)
