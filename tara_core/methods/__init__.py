"""Merge methods: a registry of named kernels and the :func:`merge` entry point."""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import torch

from ..adapters import AdapterSet
from .base import MergeError, MergeMethod, MergeResult, ModuleDelta, Param
from .registry import METHODS, get_method, register

__all__ = ["merge", "METHODS", "get_method", "register", "MergeError", "MergeMethod", "MergeResult",
           "ModuleDelta", "Param"]


@dataclass(frozen=True)
class KernelContext:
    """What a kernel may need besides the deltas: deterministic per-(module, task) random generators."""

    seed: int
    module: str
    task_index: tuple[int, ...] | None = None  # maps kernel-local task j to the set's task index
    thresholds: tuple[float, ...] | None = None  # per task, a model-wide TIES trim threshold (trim_scope=model)

    def generator(self, j: int) -> torch.Generator:
        i = j if self.task_index is None else self.task_index[j]
        key = zlib.crc32(f"{self.seed}:{self.module}:{i}".encode())
        return torch.Generator().manual_seed(key)

    def remap(self, index: list[int]) -> "KernelContext":
        return KernelContext(self.seed, self.module, tuple(index), self.thresholds)


def merge(adapter_set: AdapterSet, method: str, progress=None, **params) -> MergeResult:
    """Merge every module of ``adapter_set`` with a data-free ``method``.

    Args:
        adapter_set: the N adapters (``tara_core.adapters.load_adapter_set``).
        method: a registered name (``tara_core.methods.METHODS``), e.g. ``"ta"``, ``"knots-ties"``.
        progress: optional ``progress(done, total)`` called after each module.
        **params: method parameters (PEFT conventions: ``lambda``, ``density``, ``majority_sign``,
            ``seed``, ``weights``); unknown names or out-of-range values raise :class:`MergeError`.
    Returns:
        A :class:`MergeResult` with the merged ΔW per module (factored where the method allows).
    """
    spec = get_method(method)
    if spec.data_driven:
        raise MergeError(f"method {method!r} learns its coefficients from data; use tara_core.optimize")
    resolved = spec.resolve(params)
    if resolved.get("weights") is not None and len(resolved["weights"]) != len(adapter_set):
        raise MergeError(f"'weights' has {len(resolved['weights'])} values but there are {len(adapter_set)} adapters")
    start = time.perf_counter()
    thresholds = None
    if resolved.get("trim_scope") == "model" and resolved.get("density", 1.0) < 1:
        from .ties import model_thresholds

        with torch.no_grad():
            thresholds = tuple(model_thresholds((spec.trim_inputs(adapter_set.factors(m), resolved)
                                                 for m in adapter_set.module_names), len(adapter_set),
                                                resolved["density"]))
    deltas: dict[str, ModuleDelta] = {}
    for k, module in enumerate(adapter_set.module_names):
        ctx = KernelContext(int(resolved.get("seed") or 0), module, thresholds=thresholds)
        with torch.no_grad():
            deltas[module] = spec.kernel(adapter_set.factors(module), resolved, ctx)
        if progress is not None:
            progress(k + 1, len(adapter_set.module_names))
    return MergeResult(
        method=method,
        params=resolved,
        deltas=deltas,
        adapter_names=adapter_set.names,
        adapter_hashes=[a.sha256 for a in adapter_set.adapters],
        weight_shapes=dict(adapter_set.weight_shapes),
        fan_in_fan_out=dict(adapter_set.fan_in_fan_out),
        info={"seconds": time.perf_counter() - start, "exact_lowrank": spec.exact_lowrank},
    )
