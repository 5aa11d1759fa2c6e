"""Task Arithmetic (Ilharco et al., ICLR 2023, arXiv 2212.04089) and exact concatenation.

ΔW = λ Σ_i w_i ΔW_i, exact in factored form: B' = [B_1..B_N], A' = [λ w_1 s_1 A_1; ..; λ w_N s_N A_N]
(METHODS.md). ``cat`` is the same sum with λ = 1: PEFT's ``add_weighted_adapter(combination_type="cat")``.
"""
from __future__ import annotations

import torch

from ..lowrank import Factors
from .base import MergeError, task_weights


def task_arithmetic(deltas: list[Factors | None], params: dict, ctx) -> Factors:
    """λ Σ_i w_i ΔW_i as one factor pair of rank Σ r_i.

    Args:
        deltas: per task ΔW_i = s_i B_i A_i as factors (None where the task lacks the module).
        params: ``lambda`` and ``weights``.
    Returns:
        Factors of the merged delta (exact).
    """
    w = task_weights(params, len(deltas))
    parts = [d.scaled(params["lambda"] * wi) for d, wi in zip(deltas, w) if d is not None]
    if not parts:
        raise MergeError("no adapter adapts this module")
    return Factors.concat(parts)


def zero_like(shape: tuple[int, int]) -> Factors:
    return Factors(torch.zeros(shape[0], 1), torch.zeros(1, shape[1]))
