"""Dashboard helpers shared by app.py and the pages: cached zoo access and the session's selection.

The library (tara_core) never imports streamlit; this module adapts it: ``st.cache_resource`` for zoos
and models (small hashable keys: the zoo name), ``st.cache_data`` for results that are pure functions of
their inputs (method, parameters, task subset). Nothing cached is ever mutated: merges are applied as
weight overrides, never written into the base model.
"""
from __future__ import annotations


import streamlit as st

from tara_core.zoo import list_zoos, open_zoo

PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D"]


@st.cache_resource(show_spinner="Opening the zoo (checking file hashes)...")
def get_zoo(name: str):
    """The zoo, opened once and shared across sessions (read-only), with its small parts loaded (adapters,
    heads, data: a fraction of a second). The backbone (seconds: transformers and the weights) is not needed to
    draw a page's first view, which is read from disk; :func:`warm_up` loads it once the first page is drawn."""
    zoo = open_zoo(name)
    _ = zoo.heads, zoo.data, zoo.adapters
    return zoo


@st.cache_resource(show_spinner=False)
def warm_up(name: str):
    """Load the zoo's backbone and run one merged forward pass (one test example per task) in a background thread,
    once per zoo and server, after a page is drawn (app.py calls this last), so that the first slider move waits
    for neither. A page that needs the backbone sooner waits for the same load (the zoo's parts load once, under
    its lock). Started while the first page was still being drawn, the same load made that page slower on 2 cores
    (16.1 s against 12.8 s loading it before the page)."""
    import threading

    def load() -> None:
        from tara_core.evaluate import evaluate
        from tara_core.methods import merge

        zoo = get_zoo(name)
        _ = zoo.backbone
        if all(len(d.test_labels) for d in zoo.data):  # one merged forward, as a slider move runs it
            evaluate(zoo, merge(zoo.adapters, "ta"), limit=1)

    thread = threading.Thread(target=load, name=f"warm-up-{name}", daemon=True)
    thread.start()
    return thread


@st.cache_resource
def upload_area():
    """This server's upload folders (leftovers of servers that are gone are removed when it starts)."""
    from tara_core.uploads import UploadArea

    return UploadArea()


def zoo_names() -> list[str]:
    return [p.name for p in list_zoos()]


def selection():
    """(zoo, selected task indices) from the sidebar's keyed widgets."""
    zoo = get_zoo(st.session_state["zoo"])
    names = st.session_state.get("tasks") or zoo.task_names
    return zoo, [zoo.task_names.index(n) for n in names if n in zoo.task_names]


@st.cache_data(show_spinner=False, max_entries=256)
def cached_eval(zoo_name: str, method: str, params: tuple, tasks: tuple[int, ...], limit: int | None = None,
                bf16: bool = False, rho: tuple[float, ...] | None = None) -> dict:
    """Merge the selected adapters with any method (data-driven ones at ``rho``, default uniform) and evaluate
    on their test sets (the first ``limit`` examples); disk-cached (:mod:`tara_core.firstview`)."""
    from tara_core.firstview import evaluation

    return evaluation(get_zoo(zoo_name), method, dict(params), list(tasks), rho=None if rho is None else list(rho),
                      limit=limit, bf16=bf16)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_individual(zoo_name: str, tasks: tuple[int, ...], limit: int | None, bf16: bool = False) -> dict:
    """Each adapter alone on the same test examples a merge is evaluated on (normalized accuracy's denominator)."""
    from tara_core.firstview import individual

    return individual(get_zoo(zoo_name), list(tasks), limit, bf16)


def preference_model(zoo_name: str, method: str, tasks: tuple[int, ...]):
    """(model, file) of a preference method for the selected tasks: shipped or cached on disk, else fitted once
    (minutes, with a progress bar); the opened zoo (shared by every session) keeps it in memory after that."""
    from tara_core.methods import get_method
    from tara_core.preference import preference_model_for

    bar = st.empty()

    def progress(step, total, record):
        bar.progress(step / total, text=f"Fitting the preference model for these tasks (once): step {step}/{total}")

    variant = get_method(method).preference_of
    with optimization_lock():
        out = preference_model_for(get_zoo(zoo_name), variant, list(tasks), param=get_param(zoo_name, variant, tasks),
                                   progress=progress)
    bar.empty()
    return out


PREFERENCE = ["tara-b-pareto", "tara-a-pareto"]
DATA_DRIVEN = ["tara-b", "tara-a", "adamerging-layer", "adamerging-task"]


@st.cache_resource
def optimization_lock():
    """One optimization at a time per server: reruns and fragments of a session (and other sessions) can
    overlap in Streamlit's threads, and all of them train through the one cached base model."""
    import threading

    return threading.Lock()


def slider_values(tasks: list[int]) -> dict[str, float]:
    """The sidebar's raw ρ slider value of each selected task (1 before the slider is drawn)."""
    zoo = get_zoo(st.session_state["zoo"])
    return {zoo.task_names[i]: float(st.session_state.get(f"rho_{zoo.task_names[i]}", 1.0)) for i in tasks}


def current_rho(tasks: list[int]) -> list[float]:
    """The sidebar's ρ for the selected tasks (:func:`tara_core.firstview.normalized_rho` of the sliders)."""
    from tara_core.firstview import normalized_rho

    return normalized_rho(list(slider_values(tasks).values()))


@st.cache_resource(show_spinner="Factoring the adapters (one thin SVD per module)...", max_entries=16)
def get_param(zoo_name: str, variant: str, tasks: tuple[int, ...]):
    """The read-only parameterization (per-module factors / SVDs) shared by every session: the opened zoo's own
    (:func:`tara_core.run.shared_parameterization`), which the CLI paths use too."""
    from tara_core.run import shared_parameterization

    return shared_parameterization(get_zoo(zoo_name), variant, tasks)


@st.cache_data(show_spinner="Computing effective-rank stacks...", max_entries=32)
def cached_coverage(zoo_name: str, tasks: tuple[int, ...], normalize: bool, batch_size: int = 16):
    from tara_core.firstview import coverage_frame

    return coverage_frame(get_zoo(zoo_name), list(tasks), normalize, batch_size)


@st.cache_data(show_spinner="Computing the Jacobian J in the RAW and ORTH bases...", max_entries=32)
def cached_anisotropy(zoo_name: str, tasks: tuple[int, ...], rho: tuple[float, ...], batch_size: int = 8):
    from tara_core.firstview import anisotropy_frame

    return anisotropy_frame(get_zoo(zoo_name), list(tasks), list(rho), batch_size)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_front(zoo_name: str, pair: tuple[int, int], methods: tuple[str, ...], points: int, steps: int,
                 limit: int, context: tuple[int, ...], bf16: bool = False):
    from tara_core.firstview import front

    return front(get_zoo(zoo_name), pair, methods, points, steps, limit, list(context), bf16)


@st.cache_data(show_spinner="Measuring interference from the val inputs' second moments...", max_entries=8)
def cached_osrm_report(base: str, samples: int):
    from tara_core.firstview import osrm_report

    return osrm_report(get_zoo(base), get_zoo(f"{base}-osrm"), samples)
