"""TSV-M, Task Singular Vectors merging (Gargiulo et al., CVPR 2025, arXiv 2412.00081).

Per task SVD ΔW_i = U_i S_i V_iᵀ (from the factors), keep the top k_i components, stack U = [U_1..U_N],
V likewise, S block-diagonal; replace U and V by their orthogonal polar factors (U⊥ = P Qᵀ for U = P Σ Qᵀ);
ΔW = λ U⊥ S V⊥ᵀ, factored with rank Σ k_i.

k_i = ⌈f · basis_i⌉ with f = ``sv_fraction`` (default 1/N). ``sv_basis='rank'`` (default, METHODS.md) takes
basis_i = r_i, the LoRA rank; ``'dim'`` takes min(d_out, d_in) as the TSV code does for dense deltas,
which for LoRA keeps every component and makes TSV-M an orthogonalized concatenation.
"""
from __future__ import annotations

import math

import torch

from ..lowrank import Factors, polar, thin_svd
from .base import task_weights


def tsv(deltas: list[Factors | None], params: dict, ctx) -> Factors:
    w = task_weights(params, len(deltas))
    frac = params["sv_fraction"] or 1.0 / len(deltas)
    Us, Ss, Vhs = [], [], []
    for d, wi in zip(deltas, w):
        if d is None:
            continue
        svd = thin_svd(d.B, d.A)
        basis = d.rank if params["sv_basis"] == "rank" else min(d.shape)
        k = max(1, min(math.ceil(frac * basis), svd.S.shape[0]))
        Us.append(svd.U[:, :k])
        Ss.append(svd.S[:k] * wi)
        Vhs.append(svd.Vh[:k])
    U_perp = polar(torch.cat(Us, dim=1))
    Vh_perp = polar(torch.cat(Vhs, dim=0).T).T
    S = torch.cat(Ss)
    return Factors(U_perp * (S * params["lambda"]), Vh_perp)
