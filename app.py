"""TARA Studio dashboard: the router and the shared sidebar. Pages live in pages/; the library is tara_core."""
import os

import streamlit as st

from studio import DATA_DRIVEN, PREFERENCE, current_rho, get_zoo, warm_up, zoo_names
from tara_core.firstview import DEFAULTS
from tara_core.methods import METHODS

st.set_page_config(page_title="TARA Studio", page_icon=":material/merge:", layout="wide")

with st.sidebar:
    st.markdown("### TARA Studio")
    names = zoo_names()
    if not names:
        st.error("No zoo found. Build one with `python -m tara_core zoo build demo-text`.")
        st.stop()
    preferred = os.environ.get("TARA_DEFAULT_ZOO", "demo-text")
    default = names.index(preferred) if preferred in names else 0
    st.selectbox("Zoo", names, index=default, key="zoo", help="A base model with one LoRA adapter per task")
    zoo = get_zoo(st.session_state["zoo"])
    st.multiselect("Tasks", zoo.task_names, default=zoo.task_names, key="tasks",
                   help="Which adapters to merge (and which test sets to evaluate)")
    selected = st.session_state.get("tasks") or zoo.task_names
    learned = PREFERENCE + DATA_DRIVEN
    options = learned + [m for m in METHODS if m not in learned]
    st.selectbox("Method", options, index=options.index(DEFAULTS["merge"]["method"]), key="method",
                 help="Used by the Merge page; ρ matters for the preference models (*-pareto), TARA and AdaMerging")
    st.markdown("**Preference ρ** (one weight per task)")
    for name in selected:
        st.slider(name, 0.0, 1.0, 1.0, DEFAULTS["merge"]["slider_step"], key=f"rho_{name}")
    rho = current_rho([zoo.task_names.index(n) for n in selected]) if selected else []
    st.caption("normalized ρ = " + ", ".join(f"{r:.2f}" for r in rho))
    st.number_input("Seed", min_value=0, value=0, step=1, key="seed")

pages = [
    st.Page("pages/adapters.py", title="Adapters", icon=":material/inventory_2:", default=True),
    st.Page("pages/merge.py", title="Merge", icon=":material/tune:"),
    st.Page("pages/coverage.py", title="Coverage", icon=":material/stacked_line_chart:"),
    st.Page("pages/anisotropy.py", title="Anisotropy", icon=":material/explore:"),
    st.Page("pages/pareto.py", title="Pareto", icon=":material/balance:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/bar_chart:"),
    st.Page("pages/osrm.py", title="OSRM", icon=":material/call_split:"),
    st.Page("pages/methods.py", title="Methods", icon=":material/menu_book:"),
]
st.navigation(pages).run()
warm_up(st.session_state["zoo"])  # after the page is drawn: the backbone loads while the user reads
