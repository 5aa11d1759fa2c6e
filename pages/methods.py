"""Methods: every merge method TARA Studio implements, its parameters, defaults and paper."""
import pandas as pd
import streamlit as st

from tara_core.methods import METHODS

st.title("Merge methods")
st.caption("Every method merges per module; factored methods give an exact LoRA of rank ≤ Σ r_i.")
rows = [{
    "method": m.name,
    "name": m.title,
    "what it does": m.description,
    "parameters": ", ".join(f"{p.name}={p.default}" for p in m.params) or "—",
    "exact low-rank": m.exact_lowrank,
    "paper": m.paper,
} for m in METHODS.values()]
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
