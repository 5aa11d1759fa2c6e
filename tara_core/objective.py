"""The preference-weighted entropy objective TARA and AdaMerging minimize (TARA.md §6.1–6.2).

f_i = mean predictive entropy of task i's head on an unlabeled batch of task i (labels are never used).
Scalarizations of the per-task f_i under a preference ρ (validated: length N, finite, ≥ 0, normalized to
sum 1):

* ``stch`` (default, the reference code): α · log Σ_i exp(ρ_i (f_i − z_i) / α)
* ``stch-abs`` (the paper's Eq. with |·|):   α · log Σ_i exp(ρ_i |f_i − z_i| / α)
* ``linear`` (AdaMerging's objective):       Σ_i ρ_i f_i

z_i (anchors) = the mean val entropy with adapter i alone. α = 1 by default; small α focuses on the worst
task, large α spreads the effort.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["SCALARIZATIONS", "ObjectiveError", "validate_rho", "entropy", "scalarize"]

SCALARIZATIONS = ("stch", "stch-abs", "linear")


class ObjectiveError(ValueError):
    """Bad preference vector or objective settings."""


def validate_rho(rho: Sequence[float] | None, n: int) -> torch.Tensor:
    """ρ as a float64 tensor summing to 1 (uniform when None); clear errors for anything else."""
    if rho is None:
        return torch.full((n,), 1.0 / n, dtype=torch.float64)
    values = [float(r) for r in rho]
    if len(values) != n:
        raise ObjectiveError(f"ρ has {len(values)} values but there are {n} tasks")
    if not all(math.isfinite(v) for v in values):
        raise ObjectiveError(f"ρ must be finite, got {values}")
    if any(v < 0 for v in values):
        raise ObjectiveError(f"ρ must be non-negative, got {values}")
    total = sum(values)
    if total <= 0:
        raise ObjectiveError("ρ must have at least one positive entry")
    return torch.tensor(values, dtype=torch.float64) / total


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample −Σ_c p_c log(p_c + 1e-10), p = softmax(logits) (the reference code's ε)."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    p = torch.softmax(logits, dim=-1)
    return -(p * torch.log(p + 1e-10)).sum(-1)


def scalarize(f: torch.Tensor, rho: torch.Tensor, anchors: torch.Tensor | None = None, kind: str = "stch",
              alpha: float = 1.0) -> torch.Tensor:
    """Scalarize per-task losses ``f`` (N) under preference ``rho`` (N, sums to 1)."""
    rho = rho.to(f.dtype).to(f.device)
    if kind == "linear":
        return (rho * f).sum()
    if kind not in SCALARIZATIONS:
        raise ObjectiveError(f"unknown scalarization {kind!r}; use one of {SCALARIZATIONS}")
    if anchors is None:
        raise ObjectiveError(f"{kind} needs the anchors z_i")
    if not alpha > 0:
        raise ObjectiveError(f"alpha must be > 0, got {alpha}")
    gap = f - anchors.to(f.dtype).to(f.device)
    if kind == "stch-abs":
        gap = gap.abs()
    return alpha * torch.logsumexp(rho * gap / alpha, dim=0)
