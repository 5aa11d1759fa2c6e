"""LoRA-LEGO (Zhao et al., ICLR 2025, arXiv 2409.16167): merge by clustering rank-wise units.

Every rank-1 pair (b_ij, a_ij) of every adapter is a "minimal semantic unit". Units are written in a
canonical form before clustering — scale s_i w_i folded into a, norms balanced (‖b‖ = ‖a‖) and the sign
fixed so a's largest-magnitude entry is positive — because (b, a), (cb, a/c) and (−b, −a) are the same
atom but far apart as vectors. k-means (k = ``clusters``, default max r_i; scikit-learn, seeded) runs on
the unit-normalized concatenations [b; a]; each centroid (mean b, mean a over its members) is one rank of
the merged LoRA. Parameter re-weighting: the result is rescaled so ‖ΔW‖_F equals the mean of the tasks'
‖w_i ΔW_i‖_F (averaging shrinks norms), then × λ.
"""
from __future__ import annotations

import torch

from ..lowrank import Factors, frobenius_norm
from .base import task_weights


def canonical_units(deltas: list[Factors | None], weights: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """All rank-1 units as rows: b (K × d_out) and a (K × d_in), in canonical scale and sign."""
    bs, as_ = [], []
    for d, w in zip(deltas, weights):
        if d is None:
            continue
        b, a = d.B.T, d.A * w  # scale s_i is already folded into A
        nb, na = b.norm(dim=1, keepdim=True), a.norm(dim=1, keepdim=True)
        c = torch.sqrt(na / nb.clamp(min=1e-30)).clamp(min=1e-30)
        b, a = b * c, a / c
        sign = torch.sign(a.gather(1, a.abs().argmax(dim=1, keepdim=True)))
        sign[sign == 0] = 1
        bs.append(b * sign)
        as_.append(a * sign)
    return torch.cat(bs), torch.cat(as_)


def lora_lego(deltas: list[Factors | None], params: dict, ctx) -> Factors:
    w = task_weights(params, len(deltas))
    b, a = canonical_units(deltas, w)
    k = params["clusters"] or max(d.rank for d in deltas if d is not None)
    k = min(k, b.shape[0])
    feats = torch.cat([b, a], dim=1)
    feats = feats / feats.norm(dim=1, keepdim=True).clamp(min=1e-30)
    from sklearn.cluster import KMeans  # here, not at import: sklearn (and scipy.stats) take seconds to import

    labels = KMeans(n_clusters=k, n_init=10, random_state=params["seed"]).fit_predict(feats.double().numpy())
    labels = torch.as_tensor(labels)
    Bm = torch.stack([b[labels == c].mean(dim=0) for c in range(k)], dim=1)
    Am = torch.stack([a[labels == c].mean(dim=0) for c in range(k)], dim=0)
    merged = Factors(Bm, Am)
    target = sum(frobenius_norm(d.scaled(wi)) for d, wi in zip(deltas, w) if d is not None)
    target /= sum(d is not None for d in deltas)
    norm = frobenius_norm(merged)
    scale = target / norm if norm > 0 else 0.0
    return merged.scaled(scale * params["lambda"])
