"""hw5kit.markdown: the one table writer of the generated reports and README tables."""

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
