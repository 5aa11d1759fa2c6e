"""One entry point for every method on a zoo: data-free merges and data-driven ones (AdaMerging, TARA).

Thin orchestration used by the CLI and the dashboard alike: pick the task subset, resolve and validate the
method's parameters, run :func:`tara_core.merge` or :func:`tara_core.optimize.optimize`, and return a
:class:`~tara_core.methods.MergeResult` (plus the optimization record for data-driven methods).
"""
from __future__ import annotations

from typing import Callable, Sequence

from .methods import MergeResult, get_method, merge
from .optimize import MergeData, OptimizeResult, merge_from_phi, optimize, to_merge_result

__all__ = ["run_method", "run_preference", "refine_config"]


def run_method(zoo, method: str, params: dict | None = None, rho: Sequence[float] | None = None,
               tasks: Sequence[int] | None = None, *, warm_start=None, param=None,
               progress: Callable | None = None, should_cancel: Callable | None = None,
               on_best: Callable | None = None, on_step: Callable | None = None
               ) -> tuple[MergeResult, OptimizeResult | None]:
    """Merge the zoo's adapters for ``tasks`` (default all) with ``method``.

    ``rho`` (one value per selected task) only applies to data-driven methods; ``warm_start``/``param``
    reuse a previous φ and parameterization; ``on_step`` sees φ after every step of a per-ρ optimization
    (see :func:`tara_core.optimize.optimize`).
    """
    spec = get_method(method)
    tasks = list(range(len(zoo.task_names))) if tasks is None else list(tasks)
    adapters = zoo.adapters if tasks == list(range(len(zoo.task_names))) else zoo.adapters.subset(tasks)
    if not spec.data_driven:
        return merge(adapters, method, **(params or {})), None
    resolved = spec.resolve(params)
    if spec.preference_of:
        return run_preference(zoo, spec.name, resolved, rho, tasks, adapters, param=param, progress=progress,
                              should_cancel=should_cancel)
    data = MergeData.from_zoo(zoo, tasks, resolved.get("merge_set"))
    record = optimize(data, adapters, method, rho=rho, config=resolved,
                      warm_start=warm_start, param=param, progress=progress, should_cancel=should_cancel,
                      on_best=on_best, on_step=on_step)
    return to_merge_result(record, adapters, method), record


def refine_config(cfg) -> dict:
    """The per-ρ optimizer settings of a preference model's refinement: its objective, the refine lr/steps."""
    return {"steps": cfg.refine_steps, "lr": cfg.refine_lr, "weight_decay": 0.0, "batch_size": cfg.batch_size,
            "phi_init": cfg.phi_init, "loss": cfg.loss, "gap": cfg.gap, "scalarization": cfg.scalarization,
            "alpha": cfg.alpha, "sharpness": cfg.sharpness, "seed": cfg.seed, "mode": cfg.mode, "bf16": cfg.bf16}


def run_preference(zoo, method: str, resolved: dict, rho, tasks: list[int], adapters, *, param=None,
                   progress: Callable | None = None, should_cancel: Callable | None = None
                   ) -> tuple[MergeResult, OptimizeResult]:
    """The merge at ρ of a preference model (``tara-a-pareto`` / ``tara-b-pareto``): the model is read from a
    file (shipped, cached or ``model=``) or fitted once; ``refine_steps`` > 0 adds per-ρ steps from φ(ρ)."""
    from .methods.learned import parse_preference_config
    from .objective import validate_rho
    from .preference import preference_model_for

    spec = get_method(method)
    cfg = parse_preference_config(resolved)
    if param is None or param.variant != spec.preference_of:
        param = shared_parameterization(zoo, spec.preference_of, tasks, cfg.phi_init)
    model, path = preference_model_for(zoo, spec.preference_of, tasks, cfg, param=param, progress=progress,
                                       should_cancel=should_cancel)
    rho_t = validate_rho(rho, len(tasks))
    phi = model.phi(rho_t)
    record = OptimizeResult(spec.preference_of, rho_t.tolist(), phi, phi, 0, config=cfg.model_dump())
    record.param = param
    if cfg.refine_steps:
        data = MergeData.from_zoo(zoo, tasks, cfg.merge_set)
        data.teachers = model.teachers
        record = optimize(data, adapters, spec.preference_of, rho=rho_t.tolist(), config=refine_config(cfg),
                          warm_start=phi, param=param, progress=progress, should_cancel=should_cancel)
        phi = record.phi
    source = {"file": None if path is None else str(path), "sha256": model.meta.get("sha256"),
              "fitted_steps": model.meta.get("steps_run"), "fit_seconds": model.meta.get("seconds")}
    result = merge_from_phi(param, phi, adapters, method, params={**resolved, "rho": rho_t.tolist()},
                            info={"preference_model": source, "refine_steps": cfg.refine_steps})
    return result, record


def shared_parameterization(zoo, variant: str, tasks: Sequence[int] | None = None, phi_init: float = 0.4):
    """The parameterization (one thin SVD per module) of these tasks, built once per opened zoo: a preference
    model's merge at a new ρ then costs φ(ρ) and the merged factors only. Read-only, so sessions share it."""
    from .tara import build_parameterization

    tasks = list(range(len(zoo.task_names))) if tasks is None else list(tasks)
    key = ("parameterization", variant, tuple(tasks), float(phi_init))
    if key not in zoo.memo:
        zoo.memo.setdefault(key, build_parameterization(zoo.adapters.subset(tasks), variant, phi_init))
    return zoo.memo[key]
