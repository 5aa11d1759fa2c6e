"""What the dashboard's pages compute, with their default settings, as disk-cached library calls.

Each function is a pure function of a zoo and its arguments, stored through
:func:`tara_core.results.cached_result`, so a page's first view on a shipped zoo reads a shipped, hash-checked
file and later views read the cache; only what a user changes is computed. :data:`DEFAULTS` holds the
settings the pages open with (the pages use them as their widgets' defaults), and :func:`precompute` computes
exactly those for a zoo (``zoo precompute``, also the last step of ``zoo build``).
"""
from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd

from .results import cached_result, results_used, writing_to_zoo

__all__ = ["DEFAULTS", "osrm_configs", "evaluation", "normalized_rho", "next_rhos", "first_view_rhos",
           "ships_first_views", "default_bf16", "individual", "coverage_frame", "anisotropy_frame", "front",
           "osrm_report", "precompute", "preference_source"]

DEFAULTS = {
    "merge": {"method": "tara-b-pareto", "preview": 10, "limit": 200, "slider_step": 0.05},
    "pareto": {"methods": ("ta", "tara-b", "tara-b-pareto"), "points": 5, "steps": 40, "limit": 100},
    "compare": {"methods": ("ta", "ties", "knots-ties", "tsv", "iso-c", "tara-b-pareto"), "steps": 50},
    "coverage": {"normalize": False, "batch_size": 16},
    "anisotropy": {"batch_size": 8},
    "osrm": {"lambdas": (0.2, 0.4, 0.6, 1.0), "samples": 32},
}


def _tasks(zoo, tasks) -> list[int]:
    return list(range(len(zoo.task_names))) if tasks is None else [int(t) for t in tasks]


def normalized_rho(raw: Sequence[float]) -> list[float]:
    """Raw slider values (each in [0, 1]) as a preference ρ: normalized to sum 1, uniform when all are 0, rounded
    to 6 digits (the precision results are keyed on, so the same sliders always give the same key)."""
    total = sum(raw)
    return [round(v / total if total > 0 else 1.0 / len(raw), 6) for v in raw]


def next_rhos(raw: Sequence[float], first: int = 0, step: float | None = None) -> list[list[float]]:
    """The ρ a user most likely moves to next from the raw slider values ``raw``, in the order the Merge page
    prefetches them: slider ``first`` (the last moved) one step down and up and at its ends (0: the task
    dropped, 1: restored), then every other slider at its ends, then every other slider one step down and up,
    then every other value of slider ``first`` on its grid of steps, nearest first (a click anywhere on its
    track lands on one of them). Each normalized with :func:`normalized_rho`, the current ρ and duplicates left
    out. ``step`` defaults to the sliders' step (``DEFAULTS["merge"]["slider_step"]``). :func:`precompute` ships
    these around the all-ones first view."""
    step = DEFAULTS["merge"]["slider_step"] if step is None else step
    others = [k for k in range(len(raw)) if k != first]
    candidates = ([(first, raw[first] - step), (first, raw[first] + step), (first, 0.0), (first, 1.0)]
                  + [(k, end) for k in others for end in (0.0, 1.0)]
                  + [(k, raw[k] + d) for k in others for d in (-step, step)]
                  + sorted(((first, i * step) for i in range(round(1 / step) + 1)),
                           key=lambda c: (abs(c[1] - raw[first]), c[1])))
    here = normalized_rho(raw)
    out = []
    for k, value in candidates:
        value = round(value, 2)
        if 0.0 <= value <= 1.0:
            moved = normalized_rho([value if i == k else v for i, v in enumerate(raw)])
            if moved != here and moved not in out:
                out.append(moved)
    return out


def first_view_rhos(n: int) -> list[list[float]]:
    """What :func:`precompute` ships around the all-ones first view of ``n`` sliders: :func:`next_rhos` with
    every slider as the moved one in turn, so a first click anywhere on any slider's track, or a key press on
    it, is read from the zoo. Slider 0's list comes first (the same order as before this covered all sliders)."""
    out = []
    for first in range(n):
        out += [rho for rho in next_rhos([1.0] * n, first=first) if rho not in out]
    return out


def ships_first_views(zoo) -> bool:
    """Whether ``zoo`` ships precomputed first views (``zoo precompute``: ``<zoo>/results/``, in fp32). The pages
    then start in fp32 even where bf16 is native (:func:`default_bf16`), so their first views and the Merge page's
    prefetched moves are read from the zoo, and every number shown is comparable with the shipped ones."""
    return any(name.startswith("results/") for name in zoo.manifest.files)  # listed, so hash-checked


def default_bf16(zoo) -> bool:
    """The pages' bf16 default: where bf16 is native (:func:`~tara_core.precision.bf16_is_native`) and the zoo
    ships no (fp32) first views; on the demo zoos the pages start in fp32 everywhere."""
    from . import precision

    return precision.bf16_is_native(zoo.device) and not ships_first_views(zoo)


def preference_source(zoo, method: str, params: dict | None, tasks: Sequence[int]) -> str | None:
    """The SHA-256 of the preference model a ``*-pareto`` method would use (it is part of a result's key)."""
    from .methods import get_method
    from .preference import preference_model_for

    spec = get_method(method)
    if not spec.preference_of:
        return None
    model, path = preference_model_for(zoo, spec.preference_of, list(tasks), spec.resolve(params))
    return model.meta.get("sha256")


def evaluation(zoo, method: str, params: dict | None = None, tasks: Sequence[int] | None = None,
               rho: Sequence[float] | None = None, limit: int | None = None, bf16: bool = False,
               progress: Callable[[int, int], None] | None = None, stored_only: bool = False) -> dict | None:
    """Test accuracy per task of ``method`` on ``tasks`` at ``rho`` (data-driven methods) on the first
    ``limit`` test examples, with the merge and evaluation seconds of the run that computed it.
    ``progress(done, total)`` is called after each task's evaluation when it is computed (not when stored);
    ``stored_only``: None unless it is shipped or cached (nothing is computed)."""
    import time

    from .evaluate import evaluate
    from .methods import get_method
    from .run import run_method

    tasks = _tasks(zoo, tasks)
    params = dict(params or {})
    key = {"method": method, "params": params, "tasks": tasks, "limit": limit, "bf16": bf16,
           "rho": None if rho is None else [round(float(r), 6) for r in rho],
           "model": preference_source(zoo, method, params, tasks)}
    spec = get_method(method)
    if spec.data_driven and not spec.preference_of and params.get("steps") is None:
        key["steps"] = "reference rule"  # not the fixed 250 that results stored before it keyed on {} too

    def compute():
        start = time.perf_counter()
        result, _ = run_method(zoo, method, params, rho=rho, tasks=tasks)
        merged = time.perf_counter() - start
        acc = evaluate(zoo, result, tasks=tasks, limit=limit, bf16=bf16, progress=progress)
        return {"accuracy": acc, "merge_seconds": merged, "seconds": time.perf_counter() - start}

    return cached_result(zoo, "evaluation", key, None if stored_only else compute)


def individual(zoo, tasks: Sequence[int] | None = None, limit: int | None = None, bf16: bool = False) -> dict:
    """Each adapter alone on its task's first ``limit`` test examples (normalized accuracy's denominators)."""
    from .evaluate import individual_accuracies

    tasks = _tasks(zoo, tasks)
    return cached_result(zoo, "individual", {"tasks": tasks, "limit": limit, "bf16": bf16},
                         lambda: individual_accuracies(zoo, tasks, limit, bf16))


def coverage_frame(zoo, tasks: Sequence[int] | None = None, normalize: bool = False, batch_size: int = 16) -> pd.DataFrame:
    from .diagnostics import diagnose

    tasks = _tasks(zoo, tasks)
    return cached_result(zoo, "coverage", {"tasks": tasks, "normalize": normalize, "batch_size": batch_size},
                         lambda: diagnose(zoo, ("erank",), tasks=tasks, batch_size=batch_size, normalize=normalize))


def anisotropy_frame(zoo, tasks: Sequence[int] | None = None, rho: Sequence[float] | None = None,
                     batch_size: int = 8) -> pd.DataFrame:
    from .diagnostics import diagnose

    tasks = _tasks(zoo, tasks)
    rho = None if rho is None else [round(float(r), 4) for r in rho]
    return cached_result(zoo, "anisotropy", {"tasks": tasks, "rho": rho, "batch_size": batch_size},
                         lambda: diagnose(zoo, ("kappa", "xi"), tasks=tasks, batch_size=batch_size, rho=rho))


def front(zoo, pair: tuple[int, int], methods: Sequence[str], points: int, steps: int, limit: int | None,
          context: Sequence[int] | None = None, bf16: bool = False) -> pd.DataFrame:
    """The two-task fronts of :func:`tara_core.pareto.pareto_front` (warm steps = steps // 4, at least 5);
    preference models are read on the edge of their simplex over ``context``."""
    from .pareto import pareto_front

    context = _tasks(zoo, context)
    models = {m: preference_source(zoo, m, None, context) for m in methods}
    key = {"pair": list(pair), "methods": list(methods), "points": points, "steps": steps, "limit": limit,
           "context": context, "bf16": bf16, "models": models}
    return cached_result(zoo, "front", key, lambda: pareto_front(
        zoo, tuple(pair), methods, points=points, steps=steps, warm_steps=max(5, steps // 4), limit=limit,
        backend="local", bf16=bf16, context=context))


def osrm_report(std, osrm, samples: int = 32) -> pd.DataFrame:
    from .recipes.osrm import interference_report

    from .preference import zoo_fingerprint

    return cached_result(std, "osrm-interference", {"osrm": osrm.name, "osrm_fingerprint": zoo_fingerprint(osrm),
                                                    "samples": samples},
                         lambda: interference_report(std, osrm, samples=samples))


def osrm_configs() -> list[tuple[str, dict | None, str]]:
    """The merges the OSRM page compares on a zoo and its OSRM twin: (method, params, label)."""
    return [("ta", {"lambda": lam}, f"TA λ={lam}") for lam in DEFAULTS["osrm"]["lambdas"]] + [
        ("ties", None, "TIES"), ("knots-ties", None, "KnOTS-TIES")]


def precompute(zoo, log: Callable[[str], None] = print, osrm_pair: bool = False, osrm_twin=None,
               folder=None) -> list[str]:
    """Compute every page's first view of ``zoo`` (full task set, :data:`DEFAULTS`) into ``<zoo>/results/``;
    returns the files its first views read or wrote. The shipped preference models must exist first (``zoo
    precompute`` fits them).
    ``osrm_pair``: the zoo is one of a standard/OSRM pair (its OSRM-page merges are computed);
    ``osrm_twin``: the OSRM twin of this standard zoo (the interference report is computed too); ``folder``:
    write there instead (results already in it under the same key are kept, not recomputed)."""
    n = len(zoo.task_names)
    uniform = [1.0 / n] * n
    with writing_to_zoo(zoo, folder) as folder:
        m = DEFAULTS["merge"]
        for limit in (m["preview"], m["limit"]):
            log(f"first views: individual adapters and TA on {limit} test examples per task")
            individual(zoo, limit=limit)
            evaluation(zoo, "ta", limit=limit)
            evaluation(zoo, m["method"], rho=uniform, limit=limit)
        log(f"first views: the quick estimate of every slider's values from the first view ({m['method']})")
        for rho in first_view_rhos(n):
            evaluation(zoo, m["method"], rho=rho, limit=m["preview"])
        if n > 1:  # a slider dragged to 0 is the Merge page's most common move: its larger result ships too
            log(f"first views: each task dropped (its slider at 0) on {m['limit']} test examples per task")
            for k in range(n):
                evaluation(zoo, m["method"], rho=normalized_rho([0.0 if i == k else 1.0 for i in range(n)]),
                           limit=m["limit"])
        c = DEFAULTS["compare"]
        for method in c["methods"]:
            log(f"first views: compare · {method}")
            evaluation(zoo, method, {"steps": c["steps"]} if method in ("tara-a", "tara-b") else None)
        log("first views: coverage and anisotropy")
        coverage_frame(zoo, **DEFAULTS["coverage"])
        anisotropy_frame(zoo, rho=uniform, **DEFAULTS["anisotropy"])
        p = DEFAULTS["pareto"]
        log("first views: the Pareto front of the first two tasks")
        front(zoo, (0, 1), p["methods"], p["points"], p["steps"], p["limit"])
        if osrm_pair or osrm_twin is not None:
            log("first views: the OSRM page's merges")
            for method, params, _ in osrm_configs():
                evaluation(zoo, method, params)
        if osrm_twin is not None:
            log("first views: OSRM interference")
            osrm_report(zoo, osrm_twin, DEFAULTS["osrm"]["samples"])
        return sorted(f"results/{name}" for name in results_used())
