"""frontend_v2: classify an image with the model each visitor picks, or compare every model.

``SERVING_URL`` names backend_v2, ``UI_LANG`` the language (``fr`` by default, or ``en``). The
model choice lives in the visitor's own session and goes in the body of each request.
Run: ``streamlit run apps/frontend_v2/app.py``. The page lives in ``hw5kit.frontend.page``.
"""

from hw5kit.frontend.page import run

run("v2")
