"""frontend_v3: classify an image with any model, through the v3 API gateway.

``API_GATEWAY`` names the gateway (its ``GET /models`` fills the model list and
``POST /model/<name>/predict`` classifies), ``API_GATEWAY_KEY`` the API key when the gateway
requires one, ``UI_LANG`` the language (``fr`` by default, or ``en``).
Run: ``streamlit run apps/frontend_v3/app.py``. The page lives in ``hw5kit.frontend.page``.
"""

from hw5kit.frontend.page import run

run("v3")
