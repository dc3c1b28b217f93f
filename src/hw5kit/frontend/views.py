"""What a prediction looks like on the page: the sentence, the bar chart, the timing line and
the comparison summary. Plain functions of a :class:`~.client.Prediction` (no Streamlit), so the
tests check the words and the chart's data directly.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

import altair as alt

# Imported whole, now, before any visitor's script runs: altair finds pandas through
# sys.modules, and when two sessions draw their first chart at the same moment one of them can
# see a half-imported pandas ("partially initialized module 'pandas' has no attribute
# 'Timestamp'"). The import lock makes every other session wait for this module instead.
import pandas  # noqa: F401

from .client import Prediction
from .i18n import Translator

UNSURE_BELOW = 0.30  # under this top-1 probability the sentence says the model hesitates
TOP_COLOR = "#ff4b4b"
OTHER_COLOR = "#9aa5b1"

# Characters Streamlit's Markdown would interpret: CommonMark punctuation, "$" (LaTeX) and ":"
# (emoji and icon shortcodes). Text that comes from outside (URLs, the service's messages,
# labels) goes through md() so that it shows exactly as it is.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>$:~])")


def md(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def sentence(prediction: Prediction, tr: Translator) -> str:
    top = prediction.top
    key = "sentence_sure" if top.probability >= UNSURE_BELOW else "sentence_unsure"
    return tr(key, model=md(prediction.model), label=md(top.label), pct=tr.percent(top.probability))


def chart_rows(prediction: Prediction, tr: Translator) -> list[dict]:
    return [
        {
            "rank": rank,
            "label": g.label,
            "probability": g.probability,
            "shown": tr.percent(g.probability),
            "top": rank == 1,
        }
        for rank, g in enumerate(prediction.guesses, start=1)
    ]


def bar_chart(prediction: Prediction, tr: Translator, *, compact: bool = False) -> alt.Chart:
    """Horizontal bars, most likely first, the top answer highlighted, each bar labelled."""
    rows = chart_rows(prediction, tr)
    data = alt.Data(values=rows)
    axis_label, axis_prob = tr("axis_label"), tr("axis_probability")
    y = alt.Y(
        "label:N",
        sort=alt.EncodingSortField(field="rank", order="ascending"),
        title=None,
        axis=alt.Axis(labelLimit=140 if compact else 240),
    )
    base = alt.Chart(data).encode(
        y=y,
        tooltip=[
            alt.Tooltip("label:N", title=axis_label),
            alt.Tooltip("shown:N", title=axis_prob),
        ],
    )
    # no x axis: every bar carries its percentage; the headroom keeps "95,1 %" inside the chart
    headroom = 1.4 if compact else 1.22
    x = alt.X("probability:Q", axis=None, scale=alt.Scale(domain=[0, headroom]))
    bars = base.mark_bar(cornerRadiusEnd=3).encode(
        x=x,
        color=alt.when("datum.top").then(alt.value(TOP_COLOR)).otherwise(alt.value(OTHER_COLOR)),
    )
    text = base.mark_text(align="left", dx=4, fontSize=13).encode(x=x, text="shown:N")
    return (bars + text).properties(height=alt.Step(22 if compact else 30))


def timing_text(prediction: Prediction, tr: Translator) -> str:
    """``Réponse en 85 ms · dont inférence 40 ms, ...`` from the answer's ``timing_ms``."""
    parts = [tr("timing", roundtrip=tr.duration(prediction.roundtrip_ms))]
    timing = prediction.timing_ms
    if "inference" in timing and "preprocess" in timing:
        parts.append(
            tr(
                "timing_parts",
                inference=tr.duration(timing["inference"]),
                preprocess=tr.duration(timing["preprocess"]),
            )
        )
    if prediction.source == "url" and "fetch" in timing:
        parts.append(tr("timing_fetch", fetch=tr.duration(timing["fetch"])))
    return " · ".join(parts)


def agreement(results: Mapping[str, Prediction], tr: Translator) -> str | None:
    """One line saying whether the models' top answers agree; None with fewer than two."""
    if len(results) < 2:
        return None
    tops = Counter(p.top.label for p in results.values())
    if len(tops) == 1:
        return tr("compare_agree", count=len(results), label=md(next(iter(tops))))
    summary = ", ".join(
        f"**{md(label)}** ({', '.join(md(m) for m, p in results.items() if p.top.label == label)})"
        for label, _ in tops.most_common()
    )
    return tr("compare_disagree", summary=summary)
