"""Pareto: two tasks at a time — what each method can reach as the weight moves from one task to the other."""
import plotly.graph_objects as go
import streamlit as st

from studio import PALETTE, cached_front, current_rho, selection
from tara_core.firstview import DEFAULTS, default_bf16
from tara_core.pareto import hypervolume

zoo, tasks = selection()
st.title("Two-task Pareto fronts")
st.caption("Each point is one merge: x = accuracy on task A, y = accuracy on task B (test split). Data-free "
           "methods merge the two adapters and sweep their task weights; per-ρ TARA and AdaMerging sweep ρ over "
           "the two tasks (warm-starting neighbouring points); the preference models (*-pareto) read φ(ρ) of "
           "the model of all selected tasks on its a–b edge (ρ = t on A, 1 − t on B, 0 on the others), no "
           "optimization. Up and to the right is better; hollow markers are dominated points.")
if len(tasks) < 2:
    st.info("Select at least two tasks in the sidebar.")
    st.stop()
names = [zoo.task_names[i] for i in tasks]
c1, c2 = st.columns(2)
a = c1.selectbox("task A (x axis)", names, index=0, key="pareto_a")
b = c2.selectbox("task B (y axis)", names, index=1, key="pareto_b")
if a == b:
    st.warning("Pick two different tasks.")
    st.stop()
D = DEFAULTS["pareto"]
methods = st.multiselect("methods", ["ta", "ties", "knots-ties", "adamerging-layer", "tara-a", "tara-b",
                                     "tara-a-pareto", "tara-b-pareto"],
                         default=list(D["methods"]), key="pareto_methods")
c3, c4, c5 = st.columns(3)
points = c3.slider("points per method", 3, 11, D["points"], key="pareto_points")
steps = c4.number_input("per-ρ methods: steps at the first point", 5, 500, D["steps"], 5, key="pareto_steps")
limit = c5.number_input("test examples per task", 20, 1000, D["limit"], 20, key="pareto_limit")
bf16 = st.toggle("bf16 (fast)", value=default_bf16(zoo), key="pareto_bf16",
                 help="bfloat16 matmuls, on by default where the hardware has them natively (about 2× faster) and "
                      "the zoo ships no fp32 first views (the demo zoos do); off: fp32")
pair = (zoo.task_names.index(a), zoo.task_names.index(b))
with st.spinner(f"Sweeping {len(methods)} methods × {points} points..."):
    df = cached_front(zoo.name, pair, tuple(methods), int(points), int(steps), int(limit), tuple(tasks), bf16)
fig = go.Figure()
for k, (m, g) in enumerate(df.groupby("method", sort=False)):
    color = "#888888" if m.startswith("individual") else PALETTE[k % len(PALETTE)]
    g = g.sort_values("t")
    fig.add_trace(go.Scatter(
        x=g.acc_a, y=g.acc_b, mode="markers" if m.startswith("individual") else "lines+markers", name=m,
        marker=dict(color=color, size=11 if m.startswith("individual") else 8,
                    symbol=["star" if m.startswith("individual") else ("circle" if f else "circle-open")
                            for f in g.on_front]),
        line=dict(color=color), customdata=g[["t"]],
        hovertemplate=f"{m}<br>t = %{{customdata[0]:.2f}}<br>{a}: %{{x:.1f}}%<br>{b}: %{{y:.1f}}%<extra></extra>"))
rho = dict(zip([zoo.task_names[i] for i in tasks], current_rho(tasks)))
t_now = rho[a] / (rho[a] + rho[b]) if rho[a] + rho[b] > 0 else 0.5
data_driven = df[df.method.isin(["tara-a", "tara-b", "adamerging-layer", "tara-a-pareto", "tara-b-pareto"])]
if len(data_driven):
    near = data_driven.loc[(data_driven.t - t_now).abs().groupby(data_driven.method).idxmin()]
    fig.add_trace(go.Scatter(x=near.acc_a, y=near.acc_b, mode="markers", name=f"current ρ (t ≈ {t_now:.2f})",
                             marker=dict(size=18, color="rgba(0,0,0,0)", line=dict(width=2, color="#E45756"))))
fig.update_layout(xaxis_title=f"{a} accuracy (%)", yaxis_title=f"{b} accuracy (%)", height=520,
                  legend_title="method")
st.plotly_chart(fig, width="stretch", key="pareto_plot")
curves = df[~df.method.str.startswith("individual")]
hv = curves.groupby("method", sort=False).apply(lambda g: hypervolume(g.acc_a, g.acc_b), include_groups=False)
st.caption("Hypervolume (area dominated by each front above (0, 0), accuracy² / 100; larger is better): "
           + " · ".join(f"{m} {v / 100:.1f}" for m, v in hv.items()))
st.dataframe(df[["method", "t", "acc_a", "acc_b", "on_front", "seconds"]].round(2), hide_index=True, width="stretch")
