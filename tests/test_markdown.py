"""hw5kit.markdown: the one table writer of the generated reports, and the docs' generated
blocks."""

import pytest

from hw5kit import markdown


def test_a_table_has_its_header_rule_and_rows():
    text = markdown.table(["model", "p50 (ms)", "n"], [["lite0", "5.8", 3], ["lite1", 7, 4]], "lr")
    assert text.splitlines() == [
        "| model | p50 (ms) | n |",
        "|---|---:|---|",
        "| lite0 | 5.8 | 3 |",
        "| lite1 | 7 | 4 |",
    ]


def test_a_pipe_in_a_cell_cannot_split_its_row():
    text = markdown.table(["sends"], [["a | b"], ["already \\| escaped"]])
    assert text.splitlines()[2:] == ["| a \\| b |", "| already \\| escaped |"]


@pytest.mark.parametrize(
    ("header", "rows", "align", "message"),
    [
        (["a", "b"], [["1"]], "", "a row of 1 cells in a table of 2 columns"),
        (["a"], [], "lr", "one of l, r, c per column"),
        (["a"], [], "x", "one of l, r, c per column"),
    ],
)
def test_a_malformed_table_is_refused(header, rows, align, message):
    with pytest.raises(ValueError, match=message):
        markdown.table(header, rows, align)


# ---- generated blocks ------------------------------------------------------------------------
B, E = "<!-- x:begin -->", "<!-- x:end -->"


def test_a_block_is_replaced_and_nothing_around_it():
    text = f"# t\nbefore\n{B}\nold\nlines\n{E}\nafter {B} again\n"
    assert (
        markdown.replace_block(text, B, E, "new")
        == f"# t\nbefore\n{B}\nnew\n{E}\nafter {B} again\n"
    )
    for broken in ("no markers", f"{E}\n{B}\n", f"{B} only"):
        with pytest.raises(markdown.BlockMissing):
            markdown.replace_block(broken, B, E, "new")


def test_rewrite_pages_checks_rewrites_and_fails_on_a_page_without_markers(tmp_path, capsys):
    fresh, stale, bare = (tmp_path / n for n in ("fresh.md", "stale.md", "bare.md"))
    fresh.write_text(f"{B}\nnew\n{E}\n")
    stale.write_text(f"{B}\nold\n{E}\n")
    bare.write_text("nothing\n")

    def render(text: str) -> str:
        return markdown.replace_block(text, B, E, "new")

    assert markdown.rewrite_pages([fresh, stale], render, check=True, command="make it") == 1
    assert "stale.md is stale: run make it" in capsys.readouterr().out
    assert stale.read_text() == f"{B}\nold\n{E}\n"
    assert markdown.rewrite_pages([fresh, stale], render, check=False, command="make it") == 0
    assert stale.read_text() == fresh.read_text()
    assert markdown.rewrite_pages([fresh], render, check=True, command="make it") == 0
    assert markdown.rewrite_pages([bare], render, check=False, command="make it") == 1
    assert bare.read_text() == "nothing\n"
    assert markdown.update_file(bare, B, E, "new") is False
    assert markdown.update_file(stale, B, E, "newer") is True
    assert stale.read_text() == f"{B}\nnewer\n{E}\n"
