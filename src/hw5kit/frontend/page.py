"""The Streamlit page of every frontend version; an app file is ``run("v1")`` and nothing else.

What a visitor does lives in *their* Streamlit session (``st.session_state``, one per browser
tab): the image they gave (``source``), the model they picked, the answer shown. Nothing is
kept in the process or in the backend between two visitors, and every request names its model,
so two people with different models never affect each other.

The answer shown always matches the current inputs: a new image, another model or another
number of answers sends one new request; an unchanged page sends none.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
from dataclasses import dataclass

import streamlit as st

from .client import FrontendError, Prediction, ServingClient, Upload, make_client
from .client import check_image_url as _check_url
from .config import FrontendConfig
from .i18n import Translator
from .messages import UserMessage, describe, unexpected
from .views import UNSURE_BELOW, agreement, bar_chart, md, sentence, timing_text

log = logging.getLogger(__name__)

IMAGE_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"]
MAX_UPLOAD_MB = 20  # the backends' default HW5_MAX_UPLOAD_MB
TOP_K_MAX = 10
TOP_K_DEFAULT = 5
COMPARE_COLUMNS = 3
MODELS_TTL = 60  # seconds the model list is cached
ICON = ":material/image_search:"  # Streamlit ships the Material Symbols font: no emoji font needed


@dataclass(frozen=True)
class Source:
    """The image a visitor gave: a URL as typed, or an uploaded file. ``id`` grows per action."""

    id: int
    url: str | None = None
    upload: Upload | None = None

    @property
    def image(self) -> str | Upload:
        return self.upload if self.upload is not None else (self.url or "")


@dataclass(frozen=True)
class Outcome:
    prediction: Prediction | None = None
    error: FrontendError | None = None


# ---- shared across sessions: only things that hold no visitor's state ---------------------
@st.cache_resource(show_spinner=False)
def _client(base_url: str, gateway: bool) -> ServingClient:
    # v3: the gateway's API key, when it requires one (API_GATEWAY_KEY, set at deploy)
    key = os.environ.get("API_GATEWAY_KEY", "").strip() if gateway else ""
    return make_client(base_url, gateway=gateway, api_key=key or None)


@st.cache_data(ttl=MODELS_TTL, show_spinner=False)
def _models(base_url: str, gateway: bool) -> list[str]:
    return _client(base_url, gateway).list_models()


@st.cache_data(ttl=MODELS_TTL, show_spinner=False)
def _model_info(base_url: str, gateway: bool, name: str) -> dict | None:
    try:
        return _client(base_url, gateway).model_info(name)
    except FrontendError:
        return None  # the description is a nicety: its absence is not an error


def predict(client: ServingClient, source: Source, model: str | None, top_k: int) -> Outcome:
    try:
        return Outcome(prediction=client.predict(source.image, model=model, top_k=top_k))
    except FrontendError as exc:
        return Outcome(error=exc)


# ---- entry point ---------------------------------------------------------------------------
def run(version: str) -> None:
    config = FrontendConfig.from_env(version)
    tr = Translator(config.lang)
    # visitors see messages, never tracebacks, and no developer menu (rerun, deploy...)
    st.set_option("client.showErrorDetails", "none")
    st.set_option("client.toolbarMode", "viewer")
    st.set_page_config(page_title=tr("page_title"), page_icon=ICON, layout="wide")
    try:
        Page(config, tr).render()
    except Exception:  # a bug: say so in words, keep the traceback for the logs
        log.exception("the %s frontend page failed", version)
        show_message(unexpected(tr))


def show_message(message: UserMessage) -> None:
    parts = [f"**{md(message.text)}**"]
    if message.hint:
        parts.append(md(message.hint))
    if message.detail:
        parts.append(md(message.detail))
    box = st.warning if message.level == "warning" else st.error
    box("\n\n".join(parts), icon=":material/warning:" if box is st.warning else ":material/error:")


class Page:
    def __init__(self, config: FrontendConfig, tr: Translator):
        self.config = config
        self.version = config.version
        self.tr = tr
        self.state = st.session_state
        self.state.setdefault("seq", 0)
        self.state.setdefault("source", None)

    def describe(self, exc: BaseException) -> UserMessage:
        return describe(exc, self.tr, url_var=self.version.url_var)

    # ---- the page, top to bottom ------------------------------------------------------------
    def render(self) -> None:
        tr, config = self.tr, self.config
        st.title(tr("title"))
        st.caption(tr("subtitle"))
        for problem in config.problems:
            (st.error if problem.fatal else st.warning)(md(tr(problem.key, **problem.params)))
        if config.base_url is None:
            return
        client = _client(config.base_url, self.version.gateway)

        models: list[str] | None = None
        try:
            models = _models(config.base_url, self.version.gateway)
        except FrontendError as exc:
            message = self.describe(exc)
            show_message(UserMessage(tr("err_models"), message.text, message.hint, "warning"))
            st.button(tr("retry"), key="retry_models")

        model, top_k, compare = self.sidebar(models)
        self.inputs()

        source: Source | None = self.state.source
        if source is None:
            st.info(tr("start_hint"), icon=":material/arrow_upward:")
            return
        if self.version.gateway and model is None:
            return  # the gateway needs a model name and none is known: the warning says why
        outcome = self.classify(client, source, model, top_k)
        self.result(source, outcome)
        if compare and models:
            self.compare(client, source, models, model, top_k, outcome)

    def sidebar(self, models: list[str] | None) -> tuple[str | None, int, bool]:
        tr, state = self.tr, self.state
        model: str | None = None
        compare = False
        with st.sidebar:
            st.header(tr("settings"))
            if self.version.pick_model and models:
                if state.get("chosen_model") in models and "model_picker" not in state:
                    state.model_picker = state.chosen_model  # the picker was away: restore
                model = st.selectbox(
                    tr("model_label"), models, key="model_picker", help=tr("model_help")
                )
                state.chosen_model = model  # survives runs where the picker cannot be shown
            elif self.version.pick_model:
                model = state.get("chosen_model")
            elif models:
                st.markdown(tr("model_fixed", model=md(models[0])))
            shown = model or (models[0] if models and not self.version.pick_model else None)
            if shown:
                self.model_info(shown)
            top_k = st.slider(tr("top_k_label"), 1, TOP_K_MAX, TOP_K_DEFAULT, key="top_k")
            if self.version.compare:
                compare = st.toggle(
                    tr("compare_label"), key="compare", help=tr("compare_help"), disabled=not models
                )
            st.divider()
            key = "service_default" if self.config.url_is_default else "service"
            st.caption(tr(key, url=self.config.base_url, var=self.version.url_var))
            st.caption(tr("version", version=self.version.name))
        return model, top_k, compare

    def model_info(self, name: str) -> None:
        info = _model_info(self.config.base_url, self.version.gateway, name)
        if not info:
            return
        size = (info.get("preprocessing") or {}).get("input_size")
        if size:
            st.caption(
                self.tr(
                    "model_info",
                    architecture=md(info.get("architecture") or name),
                    size=size,
                    dataset=md(info.get("dataset") or "ImageNet"),
                )
            )

    def inputs(self) -> None:
        tr = self.tr
        by_url, by_file = st.tabs([tr("tab_url"), tr("tab_upload")])
        with by_url, st.form("url_form", border=False):
            st.text_input(
                tr("url_label"),
                key="url_text",
                placeholder=tr("url_placeholder"),
                help=tr("url_help"),
            )
            st.form_submit_button(tr("classify"), type="primary", on_click=self._url_given)
        with by_file:
            st.file_uploader(
                tr("upload_label"),
                type=IMAGE_TYPES,
                key="upload",
                on_change=self._file_given,
                max_upload_size=MAX_UPLOAD_MB,
            )

    # callbacks: they only record what the visitor did; the requests happen in the run
    def _url_given(self) -> None:
        self.state.seq += 1
        self.state.source = Source(self.state.seq, url=self.state.get("url_text", ""))

    def _file_given(self) -> None:
        uploaded = self.state.get("upload")
        if uploaded is None:
            current = self.state.source
            if current is not None and current.upload is not None:
                self.state.source = None
            return
        self.state.seq += 1
        mime = uploaded.type or "application/octet-stream"
        data = Upload(uploaded.name, uploaded.getvalue(), mime)
        self.state.source = Source(self.state.seq, upload=data)

    # ---- one answer -----------------------------------------------------------------------------
    def classify(
        self, client: ServingClient, source: Source, model: str | None, top_k: int
    ) -> Outcome:
        key = (source.id, model, top_k)
        cached = self.state.get("outcome")
        if cached is None or cached[0] != key:
            with st.spinner(self.tr("spinner")):
                outcome = predict(client, source, model, top_k)
            self.state.outcome = cached = (key, outcome)
        return cached[1]

    def result(self, source: Source, outcome: Outcome) -> None:
        tr = self.tr
        if outcome.error is not None:  # no picture: it may well be what failed to load
            show_message(self.describe(outcome.error))
            return
        left, right = st.columns([2, 3], gap="large")
        with left:
            self.image(source)
        with right:
            prediction = outcome.prediction
            assert prediction is not None
            if prediction.top.probability >= UNSURE_BELOW:
                st.success(sentence(prediction, tr), icon=":material/check_circle:")
            else:
                st.info(sentence(prediction, tr), icon=":material/help:")
            st.markdown(f"**{tr('chart_title', k=len(prediction.guesses))}**")
            st.altair_chart(bar_chart(prediction, tr), width="stretch")
            st.caption(timing_text(prediction, tr))

    def image(self, source: Source) -> None:
        tr = self.tr
        st.subheader(tr("your_image"))
        upload = source.upload
        if upload is not None:
            caption = tr("image_caption_upload", name=upload.name, size=tr.size(len(upload.data)))
            try:
                st.image(upload.data, caption=caption)
            except Exception:  # not an image Streamlit can show; the answer says more
                st.caption(tr("image_unavailable"))
            return
        # the visitor's browser loads the image (the URL was checked: http or https only, so
        # st.image never reads a local file): this process never downloads it
        st.image(_check_url(source.url or ""), caption=tr("image_caption_url", url=source.url))

    # ---- every model side by side ---------------------------------------------------------------
    def compare(
        self,
        client: ServingClient,
        source: Source,
        models: list[str],
        chosen: str | None,
        top_k: int,
        outcome: Outcome,
    ) -> None:
        tr = self.tr
        st.divider()
        st.subheader(tr("compare_title"))
        if outcome.prediction is None:
            st.caption(tr("compare_skipped"))
            return
        key = (source.id, top_k, tuple(models))
        cached = self.state.get("comparison")
        if cached is None or cached[0] != key:
            with st.spinner(tr("spinner_compare", count=len(models))):
                results = compare_models(client, source, models, top_k)
            self.state.comparison = cached = (key, results)
        results: dict[str, Outcome] = cached[1]
        summary = agreement({m: o.prediction for m, o in results.items() if o.prediction}, tr)
        if summary:
            st.markdown(summary)
        for start in range(0, len(models), COMPARE_COLUMNS):
            row = models[start : start + COMPARE_COLUMNS]
            for column, name in zip(st.columns(COMPARE_COLUMNS, gap="medium"), row, strict=False):
                with column, st.container(border=True):
                    title = f"**{md(name)}**"
                    if name == chosen:
                        title += f" · _{tr('compare_yours')}_"
                    st.markdown(title)
                    one = results[name]
                    if one.prediction is None:
                        show_message(self.describe(one.error))
                        continue
                    p = one.prediction
                    pct = tr.percent(p.top.probability)
                    st.markdown(tr("compare_short", label=md(p.top.label), pct=pct))
                    st.altair_chart(bar_chart(p, tr, compact=True), width="stretch")
                    st.caption(tr("compare_timing", roundtrip=tr.duration(p.roundtrip_ms)))


def compare_models(
    client: ServingClient, source: Source, models: list[str], top_k: int
) -> dict[str, Outcome]:
    """Every model's answer for one image, the requests in parallel (v3: one backend each)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(4, len(models))) as pool:
        futures = {m: pool.submit(predict, client, source, m, top_k) for m in models}
        return {m: f.result() for m, f in futures.items()}
