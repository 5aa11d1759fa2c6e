"""Merge: move the ρ sliders and the merge follows — φ(ρ) from the preference model at once, per-task accuracy
redrawn, optional per-ρ refinement; per-ρ TARA/AdaMerging re-optimize warm-started; the φ map; download."""
import io
import tempfile
import time
import zipfile
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from studio import (PALETTE, cached_eval, cached_individual, current_rho, get_param, optimization_lock,
                    preference_model, selection, slider_values)
from tara_core.diagnostics import split_module_name
from tara_core.evaluate import evaluate
from tara_core.firstview import DEFAULTS, default_bf16, evaluation, next_rhos, normalized_rho
from tara_core.methods import get_method
from tara_core.optimize import merge_from_phi
from tara_core.run import run_method

zoo, tasks = selection()
method = st.session_state.get("method", DEFAULTS["merge"]["method"])
spec = get_method(method)
st.title(f"Merge · {method}")
if spec.preference_of:
    st.caption("Each ρ slider (sidebar) says how much its task matters. The preference model gives the merge "
               "weights φ(ρ) for any ρ at once (fitted once per task set over all preferences); the accuracies "
               "below follow every slider move. **Refine** adds per-ρ optimization steps from φ(ρ).")
else:
    st.caption("Each ρ slider (sidebar) says how much its task matters. Per-ρ TARA/AdaMerging re-learn φ for "
               "the new ρ, starting from the previous φ (the paper's optimizer: a few steps move φ little; the "
               "*-pareto* methods follow ρ at once).")
if len(tasks) < 2:
    st.info("Select at least two tasks in the sidebar: merging needs two adapters or more.")
    st.stop()

names = [zoo.task_names[i] for i in tasks]
available = min(len(zoo.data[i].test_labels) for i in tasks)  # test examples every selected task has
c1, c2, c3, c4 = st.columns(4)
preview = c1.number_input("quick estimate on (test examples per task)", 5, 500, DEFAULTS["merge"]["preview"], 5,
                          key="eval_preview", help="Shown right after a slider move")
limit = c2.number_input("then on (test examples per task)", 20, 2000, DEFAULTS["merge"]["limit"], 20,
                        key="eval_limit", help="Computed right after the quick estimate (interrupted by a new move)")
bf16 = c3.toggle("bf16 (fast)", value=default_bf16(zoo), key="merge_bf16",
                 help="bfloat16 matmuls, on by default only where the CPU/GPU has them natively and the zoo ships no "
                      "fp32 first views (the demo zoos do: they stay fp32 so what is shipped is read, not recomputed); "
                      "off: fp32, the precision of the CLI's tables.")
prefetch = c4.toggle("prefetch likely next ρ", value=True, key="merge_prefetch",
                     help="Preference models: once the numbers are drawn, compute the quick estimate of the ρ a move "
                          "most likely lands on (the moved slider one step away or at 0 or 1, every slider at 0 or 1, "
                          "every slider one step away, then every other value of the moved slider), so such a move "
                          "shows at once. Any move stops it; off: nothing runs between moves.")
rho = current_rho(tasks)
rho_key = tuple(rho)  # normalized_rho: rounded as result keys are
uniform_key = tuple(normalized_rho([1.0] * len(tasks)))
raw_rho = slider_values(tasks)
previous = st.session_state.get("merge_raw_rho", raw_rho)
moved = [t for t, v in raw_rho.items() if v != previous.get(t, v)]
if moved:
    st.session_state["merge_moved_task"] = moved[0]
st.session_state["merge_raw_rho"] = raw_rho
focus = st.session_state.get("merge_moved_task")
if focus not in names:  # nothing moved yet: the task with the largest ρ (the first on ties)
    focus = names[max(range(len(names)), key=lambda i: rho[i])]
seed = int(st.session_state.get("seed", 0))
base_key = (zoo.name, method, tuple(tasks), seed)
adapters = zoo.adapters.subset(tasks)
store = st.session_state.setdefault("merge_store", {})  # per (base_key, ρ): φ and how it was obtained


def preference_phi():
    """φ at the current ρ: refined (if the user refined this ρ) or the preference model's φ(ρ)."""
    model, path = preference_model(zoo.name, method, tuple(tasks))
    entry = store.get((base_key, rho_key))
    with st.expander("Refine at this ρ (optional per-ρ optimization from φ(ρ))"):
        r1, r2 = st.columns(2)
        steps = r1.number_input("refine steps", 1, 500, 20, 5, key="refine_steps")
        go = r2.button("Refine", key="refine", help="Optimize φ at this ρ, starting from the model's φ(ρ)")
        if go:
            cfg = {**model.meta["settings"], "refine_steps": int(steps), "bf16": bf16}
            bar = st.progress(0.0, text="refining φ at this ρ...")
            start = time.perf_counter()
            with optimization_lock():
                _, record = run_method(zoo, method, cfg, rho=rho, tasks=tasks,
                                       param=get_param(zoo.name, spec.preference_of, tuple(tasks)),
                                       progress=lambda s, t, r: bar.progress(s / t, text=f"step {s}/{t} · "
                                                                                          f"objective {r['loss']:.4f}"))
            bar.empty()
            entry = store[(base_key, rho_key)] = {"phi": record.phi, "how": f"φ(ρ) + {record.steps_run} refine "
                                                  f"steps in {time.perf_counter() - start:.1f} s"}
        if entry:
            st.caption(f"This ρ is refined ({entry['how']}). Move a slider to return to the model's φ(ρ).")
    if entry:
        return entry["phi"], entry["how"], entry["how"]
    start = time.perf_counter()
    phi = model.phi(list(rho_key))
    how = (f"φ(ρ) from the preference model ({model.meta.get('steps_run', '?')} fit steps, "
           f"{'shipped' if path and zoo.folder in path.parents else 'cached'}) in {1000 * (time.perf_counter() - start):.0f} ms")
    return phi, how, "model"


def optimized_phi():
    """Per-ρ TARA/AdaMerging: cold start once, then warm steps from the previous ρ's φ."""
    c4, c5, c6 = st.columns(3)
    cold_steps = c4.number_input("steps (first run)", 1, 1000, 60, 10, key="cold_steps",
                                 help="AdamW steps from φ = 0.4 (TA) when nothing is cached yet")
    warm_steps = c5.number_input("steps (after a ρ move)", 1, 500, 3, 1, key="warm_steps",
                                 help="AdamW steps from the previous φ")
    batch_size = c6.number_input("batch per task", 1, 64, 8, 1, key="merge_batch")
    entry = store.get((base_key, rho_key))
    if entry is None:
        last = store.get((base_key, "last"))
        warm = last["phi"] if last is not None else None
        steps = int(warm_steps if warm is not None else cold_steps)
        bar = st.progress(0.0, text=f"{'warm' if warm is not None else 'cold'} start: optimizing φ...")
        start = time.perf_counter()
        def keep_latest(phi, step):  # an interrupted run (the next slider move) still advances the warm start
            store[(base_key, "last")] = {"phi": phi, "how": f"interrupted after {step} steps"}

        with optimization_lock():
            _, record = run_method(zoo, method, {"steps": steps, "batch_size": int(batch_size), "seed": seed,
                                                 "bf16": bf16}, rho=rho, tasks=tasks, warm_start=warm,
                                   param=get_param(zoo.name, method, tuple(tasks)),
                                   progress=lambda s, t, r: bar.progress(s / t, text=f"step {s}/{t} · objective "
                                                                                      f"{r['loss']:.4f}"),
                                   on_best=keep_latest)
        bar.empty()
        entry = {"phi": record.phi, "how": f"{record.steps_run} {'warm' if warm is not None else 'cold'} steps in "
                                           f"{time.perf_counter() - start:.1f} s"}
        store[(base_key, rho_key)] = store[(base_key, "last")] = entry
    return entry["phi"], entry["how"], entry["how"]


def evaluations(merged, n: int, status=None) -> dict:
    """Accuracy of the current merge on the first n test examples per task: a preference model's φ(ρ) through
    the disk cache (the same merge for every session; shipped for the first view), anything else memoized
    per session, ρ and φ source.

    With a ``status`` placeholder, the count of tasks done is written to it after each task. Each write is a
    Streamlit call, where a rerun asked for by a newer slider move stops this run, so a move during a long
    evaluation waits for one task's forward, not for all of them."""
    def report(done: int, total: int) -> None:
        status.caption(f"{done} of {total} tasks done on {min(n, available)} test examples each…")

    progress = None if status is None else report
    if source == "model":
        if progress is None:
            return cached_eval(zoo.name, method, (), tuple(tasks), n, bf16, rho_key)["accuracy"]
        return evaluation(zoo, method, {}, tasks, rho=list(rho_key), limit=n, bf16=bf16, progress=progress)["accuracy"]
    memo = st.session_state.setdefault("merge_acc", {})
    key = (base_key, rho_key, source, n, bf16)
    if key not in memo:
        memo[key] = evaluate(zoo, merged, tasks=tasks, limit=n, bf16=bf16, progress=progress)
    return memo[key]


def draw(acc: dict, n: int, final: bool, box, at_uniform: dict | None = None) -> None:
    """Metrics and per-task bars of the merge at this ρ on the first n test examples; ``at_uniform``: the same
    method's accuracies at uniform ρ on the same examples (for the moved task's change)."""
    individual = cached_individual(zoo.name, tuple(tasks), n, bf16)
    ta = cached_eval(zoo.name, "ta", (), tuple(tasks), n, bf16)["accuracy"]
    norm = [100 * acc[t] / individual[t] for t in names]
    norm_ta = [100 * ta[t] / individual[t] for t in names]
    weighted, weighted_ta = sum(r * v for r, v in zip(rho, norm)), sum(r * v for r, v in zip(rho, norm_ta))
    with box.container():
        m1, m2, m3 = st.columns(3)
        m1.metric("average normalized accuracy", f"{sum(norm) / len(norm):.1f} %",
                  delta=f"{sum(norm) / len(norm) - sum(norm_ta) / len(norm_ta):+.1f} vs TA",
                  help="Mean over tasks of 100 · merged accuracy / the task's own adapter's accuracy, both on the "
                       "same test examples. A trade between tasks can leave it flat: see the tasks themselves.")
        m2.metric("ρ-weighted normalized accuracy", f"{weighted:.1f} %", delta=f"{weighted - weighted_ta:+.1f} vs TA",
                  help="Σ ρ_k · normalized accuracy of task k: how well the merge serves this preference (the plain "
                       "average at uniform ρ). The delta compares TA weighted by the same ρ.")
        k = names.index(focus)
        change = None if at_uniform is None else norm[k] - 100 * at_uniform[focus] / individual[focus]
        m3.metric(f"{focus} (ρ = {rho[k]:.2f})", f"{norm[k]:.1f} %",
                  delta=None if change is None else f"{change:+.1f} vs uniform ρ",
                  help="The task whose slider moved last: its normalized accuracy and its change from uniform ρ")
        st.caption(f"On the first {min(n, available)} test examples per task"
                   + ("" if final else f" — computing on {min(int(limit), available)}…"))
        rows = [{"task": t, "model": label, "normalized accuracy (%)": 100 * a[t] / individual[t], "accuracy (%)": a[t]}
                for t in names for label, a in ((method, acc), ("TA (λ=0.4)", ta))]
        fig = px.bar(pd.DataFrame(rows), x="task", y="normalized accuracy (%)", color="model", barmode="group",
                     color_discrete_sequence=PALETTE, hover_data={"accuracy (%)": ":.1f",
                                                                  "normalized accuracy (%)": ":.1f"})
        fig.add_hline(y=100, line_dash="dot", annotation_text="its own adapter")
        fig.update_layout(height=360, legend_title="model", xaxis_title="task")
        st.plotly_chart(fig, width="stretch", key=f"acc_bars_{'final' if final else 'quick'}")


def prefetch_next(n: int) -> None:
    """The quick estimate (n examples per task) of every likely next ρ (:func:`next_rhos`) into the disk cache,
    in this script run after the page is drawn: a newer move stops it at its next progress write (one task's
    forward)."""
    note = st.empty()
    todo = next_rhos([raw_rho[t] for t in names], first=names.index(focus))
    for k, rho_next in enumerate(todo):
        evaluation(zoo, method, {}, tasks, rho=rho_next, limit=n, bf16=bf16,
                   progress=lambda d, t: note.caption(f"prefetching likely next ρ: {k} of {len(todo)} ready…"))
    note.empty()


def phi_panel(phi, param) -> None:
    st.subheader("How much of each adapter is in the merge")
    share = {}
    for m, p in param.modules.items():
        g = param.gate(phi, m).detach().cpu()
        for i, t in enumerate(names):
            sel = p.task_of_row.cpu() == i
            if sel.any():
                share.setdefault(t, []).append(float(g[sel].mean()))
    st.caption("Mean φ over each adapter's directions and modules (0.4 = Task Arithmetic, 1 = the adapter at full "
               "strength, 0 = left out).")
    fig = px.bar(pd.DataFrame({"task": list(share), "mean φ": [sum(v) / len(v) for v in share.values()]}),
                 x="task", y="mean φ", color_discrete_sequence=PALETTE)
    fig.update_layout(height=260, yaxis_range=[min(0, *[min(v) for v in share.values()]) - 0.05, None])
    st.plotly_chart(fig, width="stretch", key="phi_share")
    st.subheader("φ per layer and direction")
    by_type = {}
    for module, values in phi.items():
        layer, mtype = split_module_name(module)
        by_type.setdefault(mtype, {})[layer] = values.detach().flatten().cpu().numpy()
    if "task" in phi:
        st.write(pd.DataFrame({"task": names, "λ": phi["task"].tolist()}))
        return
    mtype = st.selectbox("module type", sorted(by_type), key="phi_module")
    layers = sorted(by_type[mtype])
    fig = px.imshow([by_type[mtype][lay] for lay in layers], y=[str(lay) for lay in layers], aspect="auto",
                    color_continuous_scale="RdBu_r", color_continuous_midpoint=0.4,
                    labels={"x": "direction", "y": "layer", "color": "φ"})
    fig.update_layout(height=300)
    st.plotly_chart(fig, width="stretch", key="phi_map")


def download(merged) -> None:
    token = (base_key, rho_key, source)
    if st.button("Prepare the merged adapter for download", key="prep_download"):
        from tara_core.export import export

        with tempfile.TemporaryDirectory() as tmp, st.spinner("Exporting a PEFT adapter..."):
            out = Path(tmp) / "merged"
            export(merged, adapters, out)
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for f in sorted(out.rglob("*")):
                    if f.is_file():
                        zf.write(f, f.relative_to(out))
        st.session_state["download_zip"] = (token, buf.getvalue())
    ready = st.session_state.get("download_zip")
    if ready and ready[0] == token:  # never serve another ρ's merge
        st.download_button("Download merged adapter (.zip)", ready[1], file_name=f"{zoo.name}-{method}.zip",
                            mime="application/zip", key="download")


if spec.data_driven:
    phi, how, source = preference_phi() if spec.preference_of else optimized_phi()
    variant = spec.preference_of or method
    param = get_param(zoo.name, variant, tuple(tasks))
    merged = merge_from_phi(param, phi, adapters, method, params={"rho": rho})
    st.session_state["current_merge"] = {"zoo": zoo.name, "method": method, "tasks": tuple(tasks), "merge": merged}
    st.caption(f"φ for ρ = ({', '.join(f'{r:.2f}' for r in rho)}): {how}")
    box = st.empty()
    quick = int(min(preview, limit))

    def uniform(n: int) -> dict | None:
        """This method's accuracies at uniform ρ (disk-cached, shipped for the first view)."""
        return cached_eval(zoo.name, method, (), tuple(tasks), n, bf16, uniform_key)["accuracy"] if spec.preference_of else None

    larger = quick < min(limit, available)
    # the larger result when shipped or computed before (a drop, a restore): shown at once, no estimate first
    stored = (evaluation(zoo, method, {}, tasks, rho=list(rho_key), limit=int(limit), bf16=bf16, stored_only=True)
              if larger and source == "model" else None)
    if stored is not None:
        draw(stored["accuracy"], int(limit), True, box, uniform(int(limit)))
    else:
        draw(evaluations(merged, quick), quick, not larger, box, uniform(quick))
        if larger:
            status = st.empty()
            final = evaluations(merged, int(limit), status)
            status.empty()
            draw(final, int(limit), True, box, uniform(int(limit)))
    phi_panel(phi, param)
    download(merged)
    if spec.preference_of and prefetch and source == "model":
        prefetch_next(quick)
else:
    st.caption(f"{method} is data-free: ρ does not change it.")
    acc = cached_eval(zoo.name, method, (), tuple(tasks), int(limit), bf16)["accuracy"]
    draw(acc, int(limit), True, st.empty())
