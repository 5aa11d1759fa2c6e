"""OSRM: adapters initialized away from the other tasks' inputs — do they interfere less when merged?"""
import pandas as pd
import plotly.express as px
import streamlit as st

from studio import PALETTE, cached_eval, cached_osrm_report, get_zoo, selection, zoo_names
from tara_core.firstview import DEFAULTS, osrm_configs

zoo, tasks = selection()
st.title("OSRM: orthogonal-subspace initialization")
st.caption("OSRM starts each task's LoRA A in the directions the *other* tasks' inputs barely use, so that after "
           "merging, task j's inputs pass through task t's adapter almost untouched. Compared here: the standard "
           "adapters and their OSRM twins (same tasks, ranks, steps and seeds).")
base_name = zoo.name.removesuffix("-osrm")
if f"{base_name}-osrm" not in zoo_names() or base_name not in zoo_names():
    st.info(f"No OSRM variant of {base_name} yet. Build it with "
            f"`python -m tara_core osrm --zoo {base_name} --out zoos`.")
    st.stop()
if len(tasks) < 2:
    st.info("Select at least two tasks in the sidebar.")
    st.stop()
std, osrm = get_zoo(base_name), get_zoo(f"{base_name}-osrm")
names = [std.task_names[i] for i in tasks]
ind = pd.DataFrame({"task": names,
                    "standard (%)": [std.manifest.tasks[i].individual_accuracy for i in tasks],
                    "OSRM (%)": [osrm.manifest.tasks[i].individual_accuracy for i in tasks]})
st.subheader("Individual adapters")
st.dataframe(ind, hide_index=True, width="stretch")

st.subheader("Merged: average normalized accuracy")
lambdas = st.multiselect("TA λ grid", [0.2, 0.4, 0.6, 0.8, 1.0], default=list(DEFAULTS["osrm"]["lambdas"]),
                         key="osrm_lambdas")
rows = []
bar = st.progress(0.0, text="Merging and evaluating...")
configs = [(m, tuple((p or {}).items()), label) for m, p, label in osrm_configs() if m != "ta"]
configs = [("ta", (("lambda", lam),), f"TA λ={lam}") for lam in lambdas] + configs
for k, (method, params, label) in enumerate(configs):
    for variant, z in (("standard", std), ("OSRM", osrm)):
        acc = cached_eval(z.name, method, params, tuple(tasks))["accuracy"]
        norm = [100 * acc[n] / z.manifest.tasks[z.task_names.index(n)].individual_accuracy for n in names]
        rows.append({"merge": label, "adapters": variant, "normalized (%)": sum(norm) / len(norm)})
    bar.progress((k + 1) / len(configs))
bar.empty()
df = pd.DataFrame(rows)
fig = px.bar(df, x="merge", y="normalized (%)", color="adapters", barmode="group", color_discrete_sequence=PALETTE,
             hover_data={"normalized (%)": ":.1f"})
fig.update_layout(yaxis_title="average normalized accuracy (%)", xaxis_title="merge", height=380)
st.plotly_chart(fig, width="stretch", key="osrm_bars")


st.subheader("Interference per module")
st.caption("Input interference ‖A_t H_jᵀ‖ / (‖A_t‖ ‖H_j‖): how much of task j's inputs adapter t's A picks up "
           "(mean over ordered task pairs), at initialization and after fine-tuning.")
rep = cached_osrm_report(base_name, DEFAULTS["osrm"]["samples"])
summary = (rep.groupby(["adapters", "stage", "layer", "module"])["input_interference"].mean().reset_index())
summary["variant"] = summary.adapters + " · " + summary.stage
fig2 = px.line(summary.sort_values("layer"), x="layer", y="input_interference", color="variant", line_dash="module",
               markers=True, color_discrete_sequence=PALETTE)
fig2.update_layout(yaxis_title="input interference", xaxis_title="layer", height=420)
st.plotly_chart(fig2, width="stretch", key="osrm_interference")
