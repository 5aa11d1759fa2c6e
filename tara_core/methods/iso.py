"""Iso-C and Iso-CTS (Marczak et al., ICML 2025, arXiv 2502.04959): isotropic merging.

Iso-C: SVD of ΔTA = Σ_i w_i ΔW_i = U S Vᵀ (factored); replace the spectrum by its mean σ̄ over the nonzero
singular values; ΔW = λ σ̄ U Vᵀ. (The dense reference code averages over all min(d_out, d_in) values,
which for low-rank deltas would shrink σ̄ and add null-space noise; here only the nonzero ones count.)

Iso-CTS: per task s = ⌊(R − ⌊f·R⌋)/N⌋ directions (R the rank of ΔTA, f = ``common_fraction``) and a common
subspace of the top k = R − N·s singular directions of ΔTA — the (R − ⌊f·R⌋) mod N leftover directions grow
the common subspace, as the reference code does, so the merge keeps R directions in all; per task, the top s
directions of ΔW_i with the common subspace projected out of its left side;
stack [common, task-specific], orthogonalize U and V (polar factors), isotropic spectrum σ̄ = mean of the
kept singular values; ΔW = λ σ̄ U⊥ V⊥ᵀ.
"""
from __future__ import annotations

import torch

from ..lowrank import Factors, polar, thin_svd
from .base import task_weights


def _task_sum(deltas, params) -> Factors:
    w = task_weights(params, len(deltas))
    return Factors.concat([d.scaled(wi) for d, wi in zip(deltas, w) if d is not None])


def _nonzero(S: torch.Tensor, shape) -> int:
    if S.numel() == 0 or S[0] <= 0:
        return 0
    tol = S[0] * max(shape) * torch.finfo(S.dtype).eps
    return int((S > tol).sum())


def iso_c(deltas: list[Factors | None], params: dict, ctx) -> Factors:
    ta = _task_sum(deltas, params)
    svd = thin_svd(ta.B, ta.A)
    r = max(1, _nonzero(svd.S, ta.shape))
    sbar = svd.S[:r].mean()
    return Factors(svd.U[:, :r] * (sbar * params["lambda"]), svd.Vh[:r])


def iso_cts(deltas: list[Factors | None], params: dict, ctx) -> Factors:
    w = task_weights(params, len(deltas))
    ta = _task_sum(deltas, params)
    svd = thin_svd(ta.B, ta.A)
    R = max(1, _nonzero(svd.S, ta.shape))
    per_task = (R - max(1, int(params["common_fraction"] * R))) // len(deltas)
    k = R - len(deltas) * per_task  # the leftover directions go to the common subspace (reference code)
    Uc = svd.U[:, :k]
    Us, Ss, Vhs = [Uc], [svd.S[:k]], [svd.Vh[:k]]
    if per_task > 0:
        for d, wi in zip(deltas, w):
            if d is None:
                continue
            B_perp = d.B - Uc @ (Uc.T @ d.B)
            task = thin_svd(B_perp, d.A * wi)
            Us.append(task.U[:, :per_task])
            Ss.append(task.S[:per_task])
            Vhs.append(task.Vh[:per_task])
    U_perp = polar(torch.cat(Us, dim=1))
    Vh_perp = polar(torch.cat(Vhs, dim=0).T).T
    sbar = torch.cat(Ss).mean()
    return Factors(U_perp * (sbar * params["lambda"]), Vh_perp)
