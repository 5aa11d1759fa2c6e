"""TARA Studio dashboard: the router. Pages live in pages/; the library is tara_core."""
import streamlit as st

st.set_page_config(page_title="TARA Studio", page_icon="🧩", layout="wide")

pages = [
    st.Page("pages/methods.py", title="Methods", icon="📚", default=True),
]
st.navigation(pages).run()
