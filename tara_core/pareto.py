"""Two-task Pareto fronts and preference sensitivity (TARA.md §8.3, the paper's Fig. 3/4).

For a pair of tasks (a, b) every method sweeps one knob over ``points`` values t ∈ [1, 0]:

* data-free methods (TA, TIES, KnOTS-TIES, ...) — the task weights w = (2t, 2(1 − t)), so t = ½ is the
  method's default merge;
* data-driven methods (AdaMerging, TARA-A, TARA-B) — the preference ρ = (t, 1 − t). Neighbouring grid points
  warm-start from each other: the first point runs ``steps`` AdamW steps from φ = φ_init, every later one
  ``warm_steps`` from the previous φ (a slider moving along the simplex).
* preference models (``tara-a-pareto``, ``tara-b-pareto``) — no optimization per point: φ(ρ) of the model
  fitted on the ``context`` tasks (default: all of the zoo's), read on the edge of its simplex, ρ = t on task
  a, 1 − t on task b and 0 on the others (all the context's adapters stay in the merge; the model decides
  how much of the zero-ρ ones to keep).

Each method's sweep is one independent chain, so chains run sequentially (``backend="local"``), in a local
process pool (``"process"``, the default) or as Ray tasks (``"ray"``, for users with a cluster); every chain
is seeded, so all backends give the same table. The individual adapters are added as reference points, and
``on_front`` marks each method's non-dominated points (maximizing both accuracies).
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

__all__ = ["BACKENDS", "grid", "non_dominated", "method_chain", "pareto_front", "preference_sensitivity",
           "emphasis_rhos", "steering", "steering_summary", "hypervolume"]

BACKENDS = ("process", "local", "ray")


def grid(points: int) -> list[float]:
    """t values from 1 (all on task a) to 0 (all on task b)."""
    if points < 2:
        raise ValueError(f"a front needs at least 2 points, got {points}")
    return [round(float(t), 10) for t in np.linspace(1.0, 0.0, points)]


def non_dominated(acc_a: Sequence[float], acc_b: Sequence[float]) -> list[bool]:
    """True for points no other point beats on both tasks (≥ on both and > on one)."""
    pts = np.column_stack([acc_a, acc_b]).astype(float)
    keep = []
    for p in pts:
        dominated = np.any(np.all(pts >= p, axis=1) & np.any(pts > p, axis=1))
        keep.append(not bool(dominated))
    return keep


def _open(zoo_ref):
    from .zoo import open_zoo

    return open_zoo(zoo_ref, check_hashes=False) if isinstance(zoo_ref, (str, Path)) else zoo_ref


def method_chain(zoo_ref, tasks: tuple[int, int], method: str, ts: list[float], params: dict | None = None,
                 steps: int = 100, warm_steps: int = 30, limit: int | None = None,
                 threads: int | None = None, warm_start: bool = True, bf16: bool = False,
                 context: Sequence[int] | None = None, on_point: Callable[[], None] | None = None) -> list[dict]:
    """One method's sweep over ``ts`` (a warm-started chain for data-driven methods, unless ``warm_start``
    is False: then every point runs ``steps`` from φ_init); ``bf16``: optimize and evaluate under bf16
    autocast (:mod:`tara_core.precision`); ``context``: the task set of a preference model's simplex;
    ``on_point``: called after every point."""
    import torch

    from .evaluate import evaluate
    from .methods import get_method
    from .run import run_method

    if threads:
        torch.set_num_threads(threads)
    zoo = _open(zoo_ref)
    spec = get_method(method)
    rows, phi, param = [], None, None
    for k, t in enumerate(ts):
        start = time.perf_counter()
        if spec.preference_of:
            ctx = list(range(len(zoo.task_names))) if context is None else list(context)
            rho = [t if i == tasks[0] else (1.0 - t if i == tasks[1] else 0.0) for i in ctx]
            result, record = run_method(zoo, method, params, rho=rho, tasks=ctx, param=param)
            param = record.param
        elif spec.data_driven:
            p = {**(params or {}), "steps": steps if phi is None else warm_steps, "bf16": bf16}
            result, record = run_method(zoo, method, p, rho=[t, 1.0 - t], tasks=list(tasks), warm_start=phi, param=param)
            phi, param = (record.phi if warm_start else None), record.param
        else:
            result, _ = run_method(zoo, method, {**(params or {}), "weights": [2 * t, 2 * (1 - t)]}, tasks=list(tasks))
        acc = evaluate(zoo, result, tasks=list(tasks), limit=limit, bf16=bf16)
        names = [zoo.task_names[i] for i in tasks]
        rows.append({"method": method, "t": t, "acc_a": acc[names[0]], "acc_b": acc[names[1]],
                     "seconds": time.perf_counter() - start, "warm": spec.data_driven and k > 0 and warm_start})
        if on_point:
            on_point()
    return rows


@contextmanager
def _neutral_main():
    """Spawned workers re-import the parent's ``__main__`` (a script, a Streamlit page, a test runner's
    entry point); give them an empty one instead, since the chains only need tara_core."""
    import sys
    import types

    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


def _run_chains(jobs: list[dict], backend: str, workers: int | None,
                tick: Callable[[int], None] = lambda n: None) -> list[list[dict]]:
    """Every job's chain, in the jobs' order; ``tick(n)`` reports n more points done (per point in this
    process, per finished chain elsewhere)."""
    if backend == "local" or len(jobs) == 1:
        return [method_chain(**job, on_point=lambda: tick(1)) for job in jobs]
    if backend == "process":
        from concurrent.futures import ProcessPoolExecutor, as_completed
        import multiprocessing as mp

        workers = workers or min(len(jobs), os.cpu_count() or 1)
        threads = max(1, (os.cpu_count() or 1) // workers)
        with _neutral_main(), ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(method_chain, **{**job, "threads": threads}): job for job in jobs}
            for done in as_completed(futures):
                tick(len(futures[done]["ts"]))
            return [f.result() for f in futures]  # in the jobs' order
    if backend == "ray":
        try:
            import ray
        except ImportError:
            raise ValueError("backend 'ray' needs the ray package (pip install 'ray[default]')") from None
        started = not ray.is_initialized()
        if started:
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False)
        try:
            remote = ray.remote(num_cpus=1)(method_chain)
            refs = {remote.remote(**{**job, "threads": 1}): job for job in jobs}
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                tick(len(refs[ready[0]]["ts"]))
            return ray.get(list(refs))
        finally:
            if started:
                ray.shutdown()
    raise ValueError(f"unknown backend {backend!r}; use one of {BACKENDS}")


def pareto_front(zoo, tasks: tuple[int, int], methods: Sequence[str] = ("ta", "ties", "knots-ties",
                 "adamerging-layer", "tara-a", "tara-b"), points: int = 11, params: dict[str, dict] | None = None,
                 steps: int = 100, warm_steps: int = 30, limit: int | None = None, backend: str = "process",
                 workers: int | None = None, warm_start: bool = True, bf16: bool = False,
                 context: Sequence[int] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """The two-task front of every method plus the individual adapters (method ``individual:<task>``).
    ``context``: the tasks whose preference model ``*-pareto`` methods read (default all; must hold the pair).
    ``progress(done, total)``: grid points done over all methods.

    ``bf16`` runs every chain and evaluation under bf16 autocast (fp32 by default).

    ``zoo`` is a :class:`~tara_core.zoo.Zoo` (or its folder, which process/Ray workers reopen).
    """
    from .evaluate import evaluate
    from .methods import get_method, merge

    if len(set(tasks)) != 2:
        raise ValueError(f"pick two different tasks, got {tasks}")
    for m in methods:
        get_method(m)  # unknown methods fail before any work starts
    zoo_obj = _open(zoo)
    ref = str(zoo_obj.folder) if backend != "local" else zoo_obj
    ts = grid(points)
    if context is not None and not set(tasks) <= set(context):
        raise ValueError(f"the pair {tuple(tasks)} is not inside the context tasks {list(context)}")
    jobs = [dict(zoo_ref=ref, tasks=tuple(tasks), method=m, ts=ts, params=(params or {}).get(m), steps=steps,
                 warm_steps=warm_steps, limit=limit, warm_start=warm_start, bf16=bf16,
                 context=None if context is None else list(context)) for m in methods]
    total, done = len(jobs) * len(ts), [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], total)

    rows = [r for chain in _run_chains(jobs, backend, workers, tick) for r in chain]
    names = [zoo_obj.task_names[i] for i in tasks]
    for i in tasks:
        alone = merge(zoo_obj.adapters.subset([i]), "cat")
        acc = evaluate(zoo_obj, alone, tasks=list(tasks), limit=limit, bf16=bf16)
        rows.append({"method": f"individual:{zoo_obj.task_names[i]}", "t": float(i == tasks[0]),
                     "acc_a": acc[names[0]], "acc_b": acc[names[1]], "seconds": 0.0, "warm": False})
    df = pd.DataFrame(rows)
    df["task_a"], df["task_b"] = names
    df["on_front"] = False
    for m, idx in df.groupby("method").groups.items():
        df.loc[idx, "on_front"] = non_dominated(df.loc[idx, "acc_a"], df.loc[idx, "acc_b"])
    df["on_global_front"] = non_dominated(df["acc_a"], df["acc_b"])
    return df


def preference_sensitivity(zoo, methods: Sequence[str] = ("adamerging-layer", "tara-b"), draws: int = 5,
                           steps: int = 100, seed: int = 0, limit: int | None = None,
                           progress: Callable[[str], None] | None = None, bf16: bool = False) -> pd.DataFrame:
    """Per-task accuracy over random ρ ~ Dirichlet(1) draws (the paper's Fig. 4): a method that follows ρ
    spreads; one that ignores it does not. Rows: method, draw, task, rho_task, accuracy (fp32 evaluation;
    ``bf16`` only speeds up the optimization)."""
    from .evaluate import evaluate
    from .methods import get_method
    from .run import run_method

    zoo = _open(zoo)
    rng = np.random.default_rng(seed)
    rhos = [rng.dirichlet(np.ones(len(zoo.task_names))).tolist() for _ in range(draws)]
    rows = []
    for m in methods:
        for d, rho in enumerate(rhos):
            per_rho = {} if get_method(m).preference_of else {"steps": steps}  # a preference model is fitted once
            result, _ = run_method(zoo, m, {**per_rho, "bf16": bf16}, rho=rho)
            acc = evaluate(zoo, result, limit=limit)
            for i, task in enumerate(zoo.task_names):
                rows.append({"method": m, "draw": d, "task": task, "rho_task": rho[i], "accuracy": acc[task]})
            if progress:
                progress(f"{m} draw {d + 1}/{draws}")
    return pd.DataFrame(rows)


def sensitivity_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method and task: min, max, std and spread (max − min) of accuracy over the ρ draws, and the
    correlation between a task's ρ and its accuracy (does the accuracy follow the preference?)."""
    g = rows.groupby(["method", "task"])
    out = g["accuracy"].agg(["min", "max", "std"])
    out["spread"] = out["max"] - out["min"]
    out["corr(rho, acc)"] = g.apply(lambda d: d["rho_task"].corr(d["accuracy"]), include_groups=False)
    return out.reset_index()


def emphasis_rhos(n: int, emphasis: float = 0.5) -> list[tuple[str | None, list[float]]]:
    """Uniform ρ (label None) and, for every task k, ρ_k = ``emphasis`` with the others sharing the rest."""
    rest = (1.0 - emphasis) / (n - 1)
    return [(None, [1.0 / n] * n)] + [(k, [emphasis if i == k else rest for i in range(n)]) for k in range(n)]


def steering(zoo, method: str, params: dict | None = None, emphasis: float = 0.5, limit: int | None = None,
             tasks: Sequence[int] | None = None, bf16: bool = False,
             progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Does ρ steer a method? Normalized accuracy of every task at uniform ρ and with each task emphasized
    (:func:`emphasis_rhos`). Data-driven methods get ρ itself; data-free ones the task weights N ρ (so TA
    at uniform ρ is its default merge). Normalization uses the individual adapters' accuracy on the same
    examples (:func:`~tara_core.evaluate.individual_accuracies`). Rows: method, emphasized (task name or
    'uniform'), rho, task, accuracy, normalized_accuracy."""
    from .evaluate import evaluate, individual_accuracies
    from .methods import get_method
    from .run import run_method

    zoo = _open(zoo)
    tasks = list(range(len(zoo.task_names))) if tasks is None else list(tasks)
    names = [zoo.task_names[i] for i in tasks]
    n = len(tasks)
    spec = get_method(method)
    individual = individual_accuracies(zoo, tasks, limit, bf16)
    rows, param = [], None
    for k, rho in emphasis_rhos(n, emphasis):
        label = "uniform" if k is None else names[k]
        if spec.data_driven:
            result, record = run_method(zoo, method, params, rho=rho, tasks=tasks, param=param)
            param = record.param
        else:
            result, _ = run_method(zoo, method, {**(params or {}), "weights": [n * r for r in rho]}, tasks=tasks)
        acc = evaluate(zoo, result, tasks=tasks, limit=limit, bf16=bf16)
        for name in names:
            rows.append({"method": method, "emphasized": label, "rho": rho[names.index(name)], "task": name,
                         "accuracy": acc[name], "normalized_accuracy": 100.0 * acc[name] / individual[name]})
        if progress:
            progress(f"{method}: ρ emphasizing {label}")
    return pd.DataFrame(rows)


def steering_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method: each task's gain when emphasized (normalized accuracy at its emphasis − at uniform ρ),
    the steer (mean gain), how many tasks gain, the uniform-ρ average normalized accuracy, and how far the
    average over all tasks moves from it at an emphasis (mean and smallest |change| over the emphases; with
    emphasis 0 this is the dashboard's "drop one slider to 0")."""
    out = []
    for method, g in rows.groupby("method", sort=False):
        uni = g[g.emphasized == "uniform"].set_index("task")["normalized_accuracy"]
        gains = {t: float(g[(g.emphasized == t) & (g.task == t)]["normalized_accuracy"].iloc[0] - uni[t])
                 for t in uni.index}
        moves = [float(g[g.emphasized == t]["normalized_accuracy"].mean() - uni.mean()) for t in uni.index]
        out.append({"method": method, **{f"gain {t}": v for t, v in gains.items()},
                    "steer": float(np.mean(list(gains.values()))), "tasks gaining": sum(v > 0 for v in gains.values()),
                    "uniform average": float(uni.mean()), "average change": float(np.mean(moves)),
                    "smallest |average change|": float(min(abs(m) for m in moves))})
    return pd.DataFrame(out)


def hypervolume(acc_a: Sequence[float], acc_b: Sequence[float], ref: tuple[float, float] = (0.0, 0.0)) -> float:
    """Area dominated by the points (maximizing both) above the reference point ``ref``, in accuracy²
    units: the standard two-objective hypervolume of a front."""
    pts = sorted({(float(a), float(b)) for a, b in zip(acc_a, acc_b) if a > ref[0] and b > ref[1]}, reverse=True)
    area, best_b = 0.0, ref[1]
    for a, b in pts:  # a descending: each point adds the strip above the best b so far
        if b > best_b:
            area += (a - ref[0]) * (b - best_b)
            best_b = b
    return area
