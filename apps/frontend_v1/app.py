"""frontend_v1: classify an image (URL or file) with the one model of backend_v1.

``SERVING_URL`` names the backend, ``UI_LANG`` the language (``fr`` by default, or ``en``).
Run: ``streamlit run apps/frontend_v1/app.py``. The page lives in ``hw5kit.frontend.page``.
"""

from hw5kit.frontend.page import run

run("v1")
