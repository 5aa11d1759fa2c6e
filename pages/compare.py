"""Compare: every method on the selected tasks — normalized accuracy table, grouped bars and time taken."""
import pandas as pd
import plotly.express as px
import streamlit as st

from studio import PALETTE, cached_eval, selection
from tara_core.firstview import DEFAULTS
from tara_core.methods import METHODS

zoo, tasks = selection()
st.title("Compare methods")
st.caption("Normalized accuracy = 100 · merged accuracy / the task's own adapter accuracy, on each test split.")
if len(tasks) < 2:
    st.info("Select at least two tasks in the sidebar to compare merges.")
    st.stop()
methods = st.multiselect("Methods", list(METHODS), default=list(DEFAULTS["compare"]["methods"]),
                         key="compare_methods")
steps = st.number_input("steps for per-ρ TARA / AdaMerging (uniform ρ)", 1, 500, DEFAULTS["compare"]["steps"], 10,
                        key="compare_steps", help="The preference models (*-pareto) are read at uniform ρ")
rows = []
progress = st.progress(0.0, text="Merging and evaluating...")
for k, m in enumerate(methods):
    params = (("steps", int(steps)),) if METHODS[m].data_driven and not METHODS[m].preference_of else ()
    res = cached_eval(zoo.name, m, params, tuple(tasks))
    for i in tasks:
        t = zoo.manifest.tasks[i]
        acc = res["accuracy"][t.name]
        rows.append({"method": m, "task": t.name, "accuracy (%)": acc,
                     "normalized (%)": 100 * acc / t.individual_accuracy, "seconds": res["seconds"]})
    progress.progress((k + 1) / max(len(methods), 1), text=f"{m} done")
progress.empty()
if not rows:
    st.stop()
df = pd.DataFrame(rows)
avg = df.groupby("method", sort=False)[["normalized (%)", "seconds"]].mean().reset_index()
st.dataframe(df.pivot_table(index="method", columns="task", values="normalized (%)", sort=False)
             .assign(average=avg.set_index("method")["normalized (%)"],
                     seconds=avg.set_index("method")["seconds"]).round(1), width="stretch")
fig = px.bar(df, x="task", y="normalized (%)", color="method", barmode="group",
             color_discrete_sequence=PALETTE, hover_data={"accuracy (%)": ":.1f", "normalized (%)": ":.1f"})
fig.add_hline(y=100, line_dash="dot", annotation_text="individual adapter")
fig.update_layout(yaxis_title="normalized accuracy (%)", xaxis_title="task", legend_title="method")
st.plotly_chart(fig, width="stretch")
