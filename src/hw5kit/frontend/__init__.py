"""The Streamlit frontends (v1, v2 and, later, v3) and the pieces they share.

The app files under ``apps/frontend_v*/`` are one call into :mod:`hw5kit.frontend.page`. The
logic lives here and most of it knows nothing of Streamlit, so it is tested directly:

* :mod:`.config`: the environment (``SERVING_URL``, ``API_GATEWAY``, ``UI_LANG``) checked, with a
  readable problem for each bad value;
* :mod:`.client`: the backend contract over HTTP (``requests``), for a v1/v2 backend
  (``POST /predict`` with the model in the body) or the v3 gateway
  (``POST /model/<name>/predict``), with typed errors;
* :mod:`.i18n`: every string the pages show, in French (the default) and English, and number
  formatting for each language;
* :mod:`.messages`: any error turned into a message a person can act on (never a traceback);
* :mod:`.views`: the sentence, the bar chart, the timing line and the comparison table;
* :mod:`.page`: the Streamlit page itself (widgets, per-session state).
"""
