"""Coverage: effective rank of the adapters' stacks per layer — how much of the update space they span."""
import pandas as pd
import plotly.express as px
import streamlit as st

from studio import PALETTE, cached_coverage, selection
from tara_core.diagnostics import coverage
from tara_core.firstview import DEFAULTS

zoo, tasks = selection()
st.title("Subspace coverage")
st.caption("Effective rank (exp of the entropy of the normalized singular values) of each stack, per layer. "
           "The rank-1 stack of all LoRA directions covers more than the N task updates (ΔW stack) do, but less "
           "than the per-task sum: directions of different tasks overlap. The paper's headline is the ratio "
           "rank-1 stack / per-task sum.")
if len(tasks) < 2:
    st.info("Select at least two tasks in the sidebar.")
    st.stop()
normalize = st.toggle("normalize atoms to unit norm", value=DEFAULTS["coverage"]["normalize"], key="cov_normalize")
df = cached_coverage(zoo.name, tuple(tasks), normalize, DEFAULTS["coverage"]["batch_size"])
mine = st.session_state.get("current_merge")
if mine and mine["zoo"] == zoo.name and mine["tasks"] == tuple(tasks):  # overlay the Merge page's current merge
    current = coverage(zoo.adapters.subset(tasks), merged=mine["merge"])
    current = current[current.quantity == "erank_merged"].assign(quantity=f"erank_merged ({mine['method']}, current ρ)")
    df = pd.concat([df, current], ignore_index=True)
types = sorted(df.module.unique())
mtype = st.selectbox("module type", types, key="cov_module")
sub = df[df.module == mtype].sort_values("layer")
fig = px.line(sub, x="layer", y="value", color="quantity", markers=True, color_discrete_sequence=PALETTE,
              hover_data={"value": ":.2f", "module_path": True})
fig.update_layout(yaxis_title="effective rank", xaxis_title="layer", legend_title="stack", height=420)
st.plotly_chart(fig, width="stretch", key="coverage_plot")
wide = df.pivot_table(index="quantity", columns="module", values="value", aggfunc="median").round(2)
ratio = (df[df.quantity == "erank_rank1_stack"].value.sum() / df[df.quantity == "erank_per_task_sum"].value.sum())
shown = f"{100 * ratio:.0f} %"
st.metric("rank-1 stack / per-task sum (all modules)", shown)
overlap = "barely overlap" if ratio >= 0.9 else "overlap"
st.caption(f"At {shown} these adapters' rank-1 directions {overlap}; the paper reports ≈ 70 % for its "
           "adapters, whose tasks share dominant directions of much wider layers (README: the paper's findings on "
           "the demo zoos).")
st.caption("Median over layers, per module type:")
st.dataframe(wide, width="stretch")
