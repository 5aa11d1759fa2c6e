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
    """Merge the selected adapters with a data-free method and evaluate on their test sets."""
    zoo = get_zoo(zoo_name)
    start = time.perf_counter()
    result = merge(zoo.adapters.subset(list(tasks)), method, **dict(params))
    merge_s = time.perf_counter() - start
    acc = evaluate(zoo, result, tasks=list(tasks))
    return {"accuracy": acc, "merge_seconds": merge_s, "seconds": time.perf_counter() - start}
