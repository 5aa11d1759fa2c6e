"""One entry point for every method on a zoo: data-free merges and data-driven ones (AdaMerging, TARA).

Thin orchestration used by the CLI and the dashboard alike: pick the task subset, resolve and validate the
method's parameters, run :func:`tara_core.merge` or :func:`tara_core.optimize.optimize`, and return a
:class:`~tara_core.methods.MergeResult` (plus the optimization record for data-driven methods).
"""
from __future__ import annotations

from typing import Callable, Sequence

from .methods import MergeResult, get_method, merge
from .optimize import MergeData, OptimizeResult, optimize, to_merge_result

__all__ = ["run_method"]


def run_method(zoo, method: str, params: dict | None = None, rho: Sequence[float] | None = None,
               tasks: Sequence[int] | None = None, *, warm_start=None, param=None,
               progress: Callable | None = None, should_cancel: Callable | None = None,
               on_best: Callable | None = None) -> tuple[MergeResult, OptimizeResult | None]:
    """Merge the zoo's adapters for ``tasks`` (default all) with ``method``.

    ``rho`` (one value per selected task) only applies to data-driven methods; ``warm_start``/``param``
    reuse a previous φ and parameterization (see :func:`tara_core.optimize.optimize`).
    """
    spec = get_method(method)
    tasks = list(range(len(zoo.task_names))) if tasks is None else list(tasks)
    adapters = zoo.adapters if tasks == list(range(len(zoo.task_names))) else zoo.adapters.subset(tasks)
    if not spec.data_driven:
        return merge(adapters, method, **(params or {})), None
    resolved = spec.resolve(params)
    record = optimize(MergeData.from_zoo(zoo, tasks), adapters, method, rho=rho, config=resolved,
                      warm_start=warm_start, param=param, progress=progress, should_cancel=should_cancel,
                      on_best=on_best)
    return to_merge_result(record, adapters, method), record
