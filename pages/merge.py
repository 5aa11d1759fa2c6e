"""Merge: move the ρ sliders and watch φ re-optimize (warm-started), then per-task accuracy and the φ map."""
import io
import tempfile
import time
import zipfile
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from studio import PALETTE, cached_eval_limited, current_rho, get_param, optimization_lock, selection
from tara_core.diagnostics import split_module_name
from tara_core.evaluate import evaluate
from tara_core.methods import get_method
from tara_core.optimize import merge_from_phi
from tara_core.precision import bf16_is_native
from tara_core.run import run_method

zoo, tasks = selection()
method = st.session_state.get("method", "tara-b")
st.title(f"Merge · {method}")
st.caption("Each ρ slider (sidebar) says how much its task matters. TARA re-learns one weight φ per LoRA "
           "direction for the new ρ, starting from the previous φ, so small moves converge in a few steps.")
if len(tasks) < 2:
    st.info("Select at least two tasks in the sidebar: merging needs two adapters or more.")
    st.stop()

spec = get_method(method)
c1, c2, c3, c4 = st.columns(4)
cold_steps = c1.number_input("steps (first run)", 1, 1000, 60, 10, key="cold_steps",
                             help="AdamW steps from φ = 0.4 (TA) when nothing is cached yet")
warm_steps = c2.number_input("steps (after a ρ move)", 1, 500, 3, 1, key="warm_steps",
                             help="AdamW steps from the previous φ")
batch_size = c3.number_input("batch per task", 1, 64, 8, 1, key="merge_batch")
limit = c4.number_input("test examples per task", 20, 2000, 100, 20, key="eval_limit",
                        help="Accuracy is measured on the first N test examples of each task")
bf16 = st.toggle("bf16 (fast)", value=bf16_is_native(zoo.device), key="merge_bf16",
                 help="Run the model's matmuls in bfloat16 (on by default where the hardware has native bf16: "
                      "about 2× faster steps and 3× faster evaluation here; accuracies move by rounding only). "
                      "Off: fp32, the precision of the CLI's tables.")
rho = current_rho(tasks)
key = (zoo.name, method, tuple(tasks), int(batch_size), int(st.session_state.get("seed", 0)), bf16)
runs = st.session_state.setdefault("merge_runs", {})
partial = st.session_state.setdefault("merge_partial", {})


def _result(run):
    """(MergeResult, accuracies) of a stored run, evaluated once per run and evaluation setting."""
    if run.get("acc_key") != (limit, bf16):
        run["merge"] = merge_from_phi(get_param(zoo.name, method, tuple(tasks)), run["phi"],
                                      zoo.adapters.subset(tasks), method, params={"rho": run["rho"]})
        run["acc"] = evaluate(zoo, run["merge"], tasks=tasks, limit=int(limit), bf16=bf16)
        run["acc_key"] = (limit, bf16)
    return run["merge"], run["acc"]


@st.fragment
def optimize_panel():
    run = runs.get(key)
    stop = st.button("Stop", key="stop_merge", help="Stop optimizing and keep the best φ so far")
    if stop and key in partial and partial[key]["rho"] == rho:
        p = partial.pop(key)
        runs[key] = {"rho": rho, "phi": p["phi"], "steps": p["step"], "stopped": True, "seconds": p["seconds"]}
        run = runs[key]
    elif spec.data_driven and (run is None or run["rho"] != rho):
        warm = run["phi"] if run is not None else None
        steps = int(warm_steps if warm is not None else cold_steps)
        bar = st.progress(0.0, text=f"{'warm' if warm is not None else 'cold'} start: optimizing φ...")
        start = time.perf_counter()

        def on_progress(step, total, record):
            bar.progress(step / total, text=f"step {step}/{total} · objective {record['loss']:.4f}")

        def on_best(phi, step):
            partial[key] = {"rho": rho, "phi": phi, "step": step, "seconds": time.perf_counter() - start}

        with optimization_lock():
            _, record = run_method(zoo, method, {"steps": steps, "batch_size": int(batch_size),
                                                 "seed": int(st.session_state.get("seed", 0)), "bf16": bf16},
                                   rho=rho, tasks=tasks, warm_start=warm,
                                   param=get_param(zoo.name, method, tuple(tasks)), progress=on_progress,
                                   on_best=on_best)
        partial.pop(key, None)
        runs[key] = {"rho": rho, "phi": record.phi, "steps": record.steps_run, "stopped": False,
                     "seconds": time.perf_counter() - start, "warm": warm is not None}
        bar.empty()
        run = runs[key]
    show_results(run)


def show_results(run):
    names = [zoo.task_names[i] for i in tasks]
    individual = {t.name: t.individual_accuracy for t in zoo.manifest.tasks}
    ta = cached_eval_limited(zoo.name, "ta", tuple(tasks), int(limit), bf16)
    if spec.data_driven:
        merged, acc = _result(run)
        how = (f"stopped at step {run['steps']}" if run.get("stopped")
               else f"{run['steps']} {'warm' if run.get('warm') else 'cold'} steps")
        st.caption(f"φ for ρ = ({', '.join(f'{r:.2f}' for r in run['rho'])}): {how} in {run['seconds']:.1f} s")
    else:
        merged, acc = None, cached_eval_limited(zoo.name, method, tuple(tasks), int(limit), bf16)
        st.caption(f"{method} is data-free: ρ does not change it.")
    norm = [100 * acc[n] / individual[n] for n in names]
    norm_ta = [100 * ta[n] / individual[n] for n in names]
    m1, m2 = st.columns(2)
    m1.metric("average normalized accuracy", f"{sum(norm) / len(norm):.1f} %",
              delta=f"{sum(norm) / len(norm) - sum(norm_ta) / len(norm_ta):+.1f} vs TA")
    m2.metric("ρ-weighted normalized accuracy", f"{sum(r * v for r, v in zip(rho, norm)):.1f} %")
    rows = [{"task": n, "model": label, "accuracy (%)": a[n]}
            for n in names for label, a in ((method, acc), ("individual adapter", individual), ("TA (λ=0.4)", ta))]
    fig = px.bar(pd.DataFrame(rows), x="task", y="accuracy (%)", color="model", barmode="group",
                 color_discrete_sequence=PALETTE, hover_data={"accuracy (%)": ":.1f"})
    fig.update_layout(yaxis_title="test accuracy (%)", xaxis_title="task", legend_title="model", height=380)
    st.plotly_chart(fig, width="stretch", key="acc_bars")
    if merged is not None:
        phi_heatmap(run["phi"])
        download(merged)


def phi_heatmap(phi):
    st.subheader("φ per layer and direction")
    st.caption("Each cell is one learned weight φ (0.4 = Task Arithmetic). Rows: layers; columns: the LoRA "
               "directions of that module (TARA-B: task blocks of shared singular directions).")
    by_type = {}
    for module, values in phi.items():
        layer, mtype = split_module_name(module)
        by_type.setdefault(mtype, {})[layer] = values.detach().flatten().numpy()
    if not by_type or "task" in phi:
        st.write(pd.DataFrame({"task": [zoo.task_names[i] for i in tasks], "λ": phi["task"].tolist()}))
        return
    mtype = st.selectbox("module type", sorted(by_type), key="phi_module")
    layers = sorted(by_type[mtype])
    fig = px.imshow([by_type[mtype][lay] for lay in layers], y=[str(lay) for lay in layers], aspect="auto",
                    color_continuous_scale="RdBu_r", color_continuous_midpoint=0.4,
                    labels={"x": "direction", "y": "layer", "color": "φ"})
    fig.update_layout(height=320)
    st.plotly_chart(fig, width="stretch", key="phi_map")


def download(merged):
    if st.button("Prepare the merged adapter for download", key="prep_download"):
        from tara_core.export import export

        with tempfile.TemporaryDirectory() as tmp, st.spinner("Exporting a PEFT adapter..."):
            out = Path(tmp) / "merged"
            export(merged, zoo.adapters.subset(tasks), out)
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for f in sorted(out.rglob("*")):
                    if f.is_file():
                        zf.write(f, f.relative_to(out))
        st.session_state["download_zip"] = buf.getvalue()
    if st.session_state.get("download_zip"):
        st.download_button("Download merged adapter (.zip)", st.session_state["download_zip"],
                           file_name=f"{zoo.name}-{method}.zip", mime="application/zip", key="download")


optimize_panel()
