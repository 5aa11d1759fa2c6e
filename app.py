"""TARA Studio dashboard: the router and the shared sidebar. Pages live in pages/; the library is tara_core."""
import streamlit as st

from studio import get_zoo, zoo_names

st.set_page_config(page_title="TARA Studio", page_icon="🧩", layout="wide")

with st.sidebar:
    st.markdown("### TARA Studio")
    names = zoo_names()
    if not names:
        st.error("No zoo found. Build one with `python -m tara_core zoo build demo-text`.")
        st.stop()
    default = names.index("demo-text") if "demo-text" in names else 0
    st.selectbox("Zoo", names, index=default, key="zoo", help="A base model with one LoRA adapter per task")
    zoo = get_zoo(st.session_state["zoo"])
    st.multiselect("Tasks", zoo.task_names, default=zoo.task_names, key="tasks",
                   help="Which adapters to merge (and which test sets to evaluate)")
    st.number_input("Seed", min_value=0, value=0, step=1, key="seed")

pages = [
    st.Page("pages/adapters.py", title="Adapters", icon="🧱", default=True),
    st.Page("pages/compare.py", title="Compare", icon="📊"),
    st.Page("pages/methods.py", title="Methods", icon="📚"),
]
st.navigation(pages).run()
