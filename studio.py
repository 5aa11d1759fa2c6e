"""Dashboard helpers shared by app.py and the pages: cached zoo access and the session's selection.

The library (tara_core) never imports streamlit; this module adapts it: ``st.cache_resource`` for zoos
and models (small hashable keys: the zoo name), ``st.cache_data`` for results that are pure functions of
their inputs (method, parameters, task subset). Nothing cached is ever mutated: merges are applied as
weight overrides, never written into the base model.
"""
from __future__ import annotations

import time

import streamlit as st

from tara_core.evaluate import evaluate
from tara_core.methods import merge
from tara_core.zoo import list_zoos, open_zoo

PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D"]


@st.cache_resource(show_spinner="Opening the zoo (checking file hashes)...")
def get_zoo(name: str):
    zoo = open_zoo(name)
    _ = zoo.backbone, zoo.heads, zoo.data, zoo.adapters  # load once, share across sessions (read-only)
    return zoo


def zoo_names() -> list[str]:
    return [p.name for p in list_zoos()]


def selection():
    """(zoo, selected task indices) from the sidebar's keyed widgets."""
    zoo = get_zoo(st.session_state["zoo"])
    names = st.session_state.get("tasks") or zoo.task_names
    return zoo, [zoo.task_names.index(n) for n in names if n in zoo.task_names]


@st.cache_data(show_spinner=False, max_entries=256)
def cached_eval(zoo_name: str, method: str, params: tuple, tasks: tuple[int, ...]) -> dict:
    """Merge the selected adapters with any method (data-driven ones at uniform ρ) and evaluate on their
    test sets."""
    from tara_core.run import run_method

    zoo = get_zoo(zoo_name)
    start = time.perf_counter()
    result, _ = run_method(zoo, method, dict(params), tasks=list(tasks))
    merge_s = time.perf_counter() - start
    acc = evaluate(zoo, result, tasks=list(tasks))
    return {"accuracy": acc, "merge_seconds": merge_s, "seconds": time.perf_counter() - start}


DATA_DRIVEN = ["tara-b", "tara-a", "adamerging-layer", "adamerging-task"]


@st.cache_resource
def optimization_lock():
    """One optimization at a time per server: reruns and fragments of a session (and other sessions) can
    overlap in Streamlit's threads, and all of them train through the one cached base model."""
    import threading

    return threading.Lock()


def current_rho(tasks: list[int]) -> list[float]:
    """The sidebar's ρ for the selected tasks, normalized to sum 1 (uniform when all sliders are 0)."""
    zoo = get_zoo(st.session_state["zoo"])
    raw = [float(st.session_state.get(f"rho_{zoo.task_names[i]}", 1.0)) for i in tasks]
    total = sum(raw)
    return [r / total for r in raw] if total > 0 else [1.0 / len(tasks)] * len(tasks)


@st.cache_resource(show_spinner="Factoring the adapters (one thin SVD per module)...", max_entries=16)
def get_param(zoo_name: str, variant: str, tasks: tuple[int, ...]):
    """The read-only parameterization (per-module factors / SVDs) shared by every session."""
    from tara_core.tara import build_parameterization

    zoo = get_zoo(zoo_name)
    return build_parameterization(zoo.adapters.subset(list(tasks)), variant)


@st.cache_data(show_spinner="Computing effective-rank stacks...", max_entries=32)
def cached_coverage(zoo_name: str, tasks: tuple[int, ...], normalize: bool, batch_size: int = 16):
    from tara_core.diagnostics import diagnose

    return diagnose(get_zoo(zoo_name), ("erank",), tasks=list(tasks), batch_size=batch_size, normalize=normalize)


@st.cache_data(show_spinner="Computing the Jacobian J in the RAW and ORTH bases...", max_entries=32)
def cached_anisotropy(zoo_name: str, tasks: tuple[int, ...], rho: tuple[float, ...], batch_size: int = 8):
    from tara_core.diagnostics import diagnose

    return diagnose(get_zoo(zoo_name), ("kappa", "xi"), tasks=list(tasks), batch_size=batch_size, rho=list(rho))


@st.cache_data(show_spinner=False, max_entries=32)
def cached_front(zoo_name: str, pair: tuple[int, int], methods: tuple[str, ...], points: int, steps: int,
                 warm_steps: int, limit: int, bf16: bool = False):
    from tara_core.pareto import pareto_front

    return pareto_front(get_zoo(zoo_name), pair, methods, points=points, steps=steps, warm_steps=warm_steps,
                        limit=limit, backend="local", bf16=bf16)


@st.cache_data(show_spinner=False, max_entries=256)
def cached_eval_limited(zoo_name: str, method: str, tasks: tuple[int, ...], limit: int, bf16: bool = False) -> dict:
    zoo = get_zoo(zoo_name)
    return evaluate(zoo, merge(zoo.adapters.subset(list(tasks)), method), tasks=list(tasks), limit=limit, bf16=bf16)
