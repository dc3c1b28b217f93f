"""frontend_v1 (minimal stand-in, replaced by the Frontends issue): classify an image URL."""

import os

import requests
import streamlit as st

SERVING_URL = os.environ.get("SERVING_URL", "http://127.0.0.1:8000").rstrip("/")

st.title("Image classifier (v1)")
url = st.text_input("Image URL")
if st.button("Classify") and url:
    answer = requests.post(f"{SERVING_URL}/predict", json={"url": url}, timeout=60).json()
    st.write(answer.get("category") or answer.get("error", {}).get("message"))
