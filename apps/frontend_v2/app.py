"""frontend_v2 (minimal stand-in, replaced by the Frontends issue): pick a model, classify."""

import os

import requests
import streamlit as st

SERVING_URL = os.environ.get("SERVING_URL", "http://127.0.0.1:8000").rstrip("/")

st.title("Image classifier (v2)")
models = requests.get(f"{SERVING_URL}/models", timeout=10).json()
model = st.selectbox("Model", models)
url = st.text_input("Image URL")
if st.button("Classify") and url:
    body = {"url": url, "model": model}
    answer = requests.post(f"{SERVING_URL}/predict", json=body, timeout=60).json()
    st.write(answer.get("category") or answer.get("error", {}).get("message"))
