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

st.divider()
st.subheader("Bring your own adapters")
st.caption("Upload two or more PEFT LoRA adapters for one base model, each as a .zip of its folder "
           "(adapter_config.json + adapter_model.safetensors). They stay in a private temporary folder for this "
           "browser session only. Without task data, uploads can be inspected and merged with data-free methods.")
files = st.file_uploader("PEFT adapter archives (.zip)", type=["zip"], accept_multiple_files=True, key="uploads")
if files:
    from studio import upload_area
    from tara_core.adapters import AdapterError
    from tara_core.uploads import SessionHolder, extract_adapter_zip, load_uploaded_set, upload_name

    signature = tuple((f.name, f.size, f.file_id) for f in files)
    if st.session_state.get("upload_signature") != signature:
        st.session_state["upload_signature"] = signature
        st.session_state.pop("uploaded_set", None)
        st.session_state.pop("upload_error", None)
        area = upload_area()
        if "upload_folder" in st.session_state:  # the previous upload's files go with it
            area.discard(st.session_state.pop("upload_folder"))
        holder = st.session_state.setdefault("upload_holder", SessionHolder())
        session_dir = area.session_folder(holder)  # deleted when the session ends
        try:
            names = [upload_name(f.name) for f in files]
            folders = [extract_adapter_zip(f.getvalue(), session_dir, n) for f, n in zip(files, names)]
            st.session_state["uploaded_set"] = load_uploaded_set(folders, names)
            st.session_state["upload_folder"] = session_dir
        except (AdapterError, ValueError) as exc:
            area.discard(session_dir)  # refused: nothing stays on disk
            st.session_state["upload_error"] = str(exc)
    if st.session_state.get("upload_error"):
        st.error(f"Could not use these adapters: {st.session_state['upload_error']}")
    elif "uploaded_set" in st.session_state:
        uploaded = st.session_state["uploaded_set"]
        st.success(f"{len(uploaded)} adapters loaded and validated.")
        st.dataframe(pd.DataFrame([{"adapter": r["adapter"], "rank": r["ranks"], "alpha": r["lora_alpha"],
                                    "modules": r["modules"], "‖ΔW‖_F": round(r["delta_norm"], 3)}
                                   for r in uploaded.summary()]), hide_index=True, width="stretch")
