"""Adapters: what is in the current zoo — tasks, ranks, alphas, modules, ‖ΔW‖ and individual accuracy."""
import pandas as pd
import streamlit as st

from studio import selection

zoo, tasks = selection()
st.title(f"Adapters · {zoo.name}")
st.caption(zoo.manifest.description)
if not tasks:
    st.info("Select at least one task in the sidebar.")
    st.stop()

summary = {row["adapter"]: row for row in zoo.adapters.summary()}
rows = []
for i in tasks:
    t = zoo.manifest.tasks[i]
    s = summary[t.name]
    rows.append({
        "task": t.title, "classes": len(t.classes), "rank": s["ranks"], "alpha": s["lora_alpha"],
        "modules": s["modules"], "‖ΔW‖_F": round(s["delta_norm"], 3),
        "base + head (%)": t.base_accuracy, "adapter (%)": t.individual_accuracy,
        "val / test": f"{t.splits.val} / {t.splits.test}", "licence": t.licence,
    })
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
st.caption("‖ΔW‖_F: Frobenius norm of the adapter's full update over all modules. Accuracies are on each "
           "task's test split; 'base + head' is the frozen base model with the task's head alone.")
if len(tasks) == 1:
    st.info("One adapter selected: merging needs at least two to be interesting.")
