"""Anisotropy: how unevenly the task losses respond to the merge coefficients (κ) and how much the
descent direction turns when the preference changes (ξ)."""
import plotly.express as px
import streamlit as st

from studio import PALETTE, cached_anisotropy, current_rho, selection
from tara_core.firstview import DEFAULTS

zoo, tasks = selection()
st.title("Anisotropy")
st.caption("J = ∂(task entropies)/∂φ at the Task Arithmetic point (φ = 0.4). κ = σ_max/σ_min of J: large κ means "
           "some trade-offs are nearly impossible to steer. RAW = the LoRA directions as they come, ORTH = TARA-B's "
           "shared singular directions. ξ(ρ₁, ρ₂) = 1 − |cos| between the gradients for two preferences.")
if len(tasks) < 2:
    st.info("Select at least two tasks in the sidebar.")
    st.stop()
rho = current_rho(tasks)
df = cached_anisotropy(zoo.name, tuple(tasks), tuple(round(r, 4) for r in rho), DEFAULTS["anisotropy"]["batch_size"])
kappa = df[df.quantity.str.startswith("kappa") & (df.module != "all")]
plain = kappa[kappa.rho.isna()]
fig = px.line(plain.sort_values("layer"), x="layer", y="value", color="module", line_dash="basis", markers=True,
              log_y=True, color_discrete_sequence=PALETTE, hover_data={"value": ":.3g"})
fig.update_layout(yaxis_title="κ(J) (log scale)", xaxis_title="layer", legend_title="module, basis", height=420)
st.plotly_chart(fig, width="stretch", key="kappa_plot")
overall = df[(df.module == "all") & df.quantity.str.startswith("kappa")]
cols = st.columns(4)
plain_overall = {}  # κ(J) of all modules per basis, without ρ weighting
for col, (_, r) in zip(cols, overall.iterrows()):
    weighted = isinstance(r.rho, str)
    label = f"κ {r.basis.upper()}" + (" (current ρ)" if weighted else "")
    col.metric(label, f"{r.value:.3g}")
    if not weighted:
        plain_overall[r.basis] = r.value
if {"orth", "raw"} <= plain_overall.keys():
    change = plain_overall["orth"] / plain_overall["raw"] - 1
    better = "better" if change < 0 else "worse"
    st.caption(f"κ(J) of all modules together: ORTH is {better} conditioned than RAW by {100 * abs(change):.0f} % "
               "(the paper expects ORTH lower; README: the paper's findings on the demo zoos).")
xi = df[(df.quantity == "xi") & (df.module == "all")]
st.subheader("ξ over preference pairs (all modules)")
heat = xi.pivot_table(index="pair", columns="basis", values="value")
fig2 = px.imshow(heat, aspect="auto", color_continuous_scale="Viridis", zmin=0, zmax=1,
                 labels={"color": "ξ", "x": "basis", "y": "preference pair"})
fig2.update_layout(height=max(300, 22 * len(heat)))
st.plotly_chart(fig2, width="stretch", key="xi_plot")
st.caption("ξ = 0: the two preferences ask for the same direction; ξ = 1: orthogonal directions.")
