"""KnOTS (Stoica et al., ICLR 2025, arXiv 2410.19735): align LoRAs in a shared basis, then merge there.

SVD of [ΔW_1, .., ΔW_N] = U Σ [V_1ᵀ, .., V_Nᵀ] at R = Σ r_i (lossless; computed from the factors by
:func:`~tara_core.lowrank.hconcat_svd`). Task i's aligned update is Σ V_iᵀ (R × d_in); the N small
matrices are merged with TA / TIES / DARE-TIES into M and ΔW = U M — factored, rank ≤ R.
"""
from __future__ import annotations


from ..lowrank import Factors, hconcat_svd
from .base import present, task_weights
from .dare import dropped
from .ties import elect_and_merge, trimmed


def _aligned(deltas: list[Factors | None]):
    svd = hconcat_svd(present(deltas))
    return svd, [svd.S[:, None] * vh for vh in svd.Vh_blocks]  # Σ V_iᵀ per present task


def knots_trim_inputs(deltas: list[Factors | None], params: dict) -> list:
    """What KnOTS-TIES trims in one module: each task's aligned block Σ V_iᵀ (None where absent)."""
    _, aligned = _aligned(deltas)
    it = iter(aligned)
    return [None if d is None else next(it) for d in deltas]


def knots(deltas: list[Factors | None], params: dict, ctx) -> Factors:
    """KnOTS merge of one module; ``params['inner']`` is 'ta', 'ties' or 'dare'."""
    w_all = task_weights(params, len(deltas))
    idx = [i for i, d in enumerate(deltas) if d is not None]
    svd, aligned = _aligned(deltas)
    w = [w_all[i] for i in idx]
    inner = params["inner"]
    if inner == "ta":
        M = sum(a * wi for a, wi in zip(aligned, w))
    else:
        block = lambda j: aligned[j]  # noqa: E731
        if inner == "ties":
            given = None if ctx.thresholds is None else [ctx.thresholds[i] for i in idx]
            produce = trimmed(block, params["density"], len(aligned), given)
        else:  # dare: random drop + rescale, then TIES election (KnOTS-DARE)
            produce = dropped(block, params["density"], ctx.remap(idx))
        M = elect_and_merge(produce, w, params["majority_sign"])
    return Factors(svd.U, M * params["lambda"])
