"""The preference-weighted objectives TARA and AdaMerging minimize (TARA.md §6.1–6.2, DESIGN.md §9).

Per task i a label-free loss f_i on an unlabeled batch of task i:

* ``entropy`` (the paper, AdaMerging): the mean predictive entropy H_i of task i's head; anchor z_i = the mean
  val entropy with adapter i alone (the reference code's substitute for the ideal point of Eq. 10).
* ``kl`` (distillation to the experts): the mean KL(p_i ‖ p_merged) between adapter i's own predictions on
  task i's unlabeled inputs and the merged model's. It needs no labels, it is 0 exactly at adapter i alone, so
  its ideal point z_i = 0 is attainable (Eq. 10 holds), and the tasks genuinely conflict: no merge of several
  adapters reproduces every expert at once, which is what gives a preference something to trade.

The gap g_i the preference weighs:

* ``raw`` (the paper): g_i = f_i − z_i (can be negative: a task below its anchor then loses weight as ρ_i
  grows, the inverted steering DESIGN.md §9 describes);
* ``ta``: g_i = max(f_i − z_i, 0) / (f_i(TA) − z_i), the gap relative to the Task Arithmetic start point
  (λ = φ_init), never negative, so every task's gap starts at 1 and ρ compares like with like.

Scalarizations of g under a preference ρ (validated: length N, finite, ≥ 0, normalized to sum 1):

* ``stch`` (default, the reference code): α · log Σ_i exp(ρ_i g_i / α)
* ``stch-abs`` (the paper's Eq. with |·|):   α · log Σ_i exp(ρ_i |g_i| / α)
* ``linear`` (AdaMerging's objective):       Σ_i ρ_i f_i (raw gaps) or Σ_i ρ_i g_i (``ta`` gaps)

α = 1 by default; a small α (0.05–0.2 on ``ta`` gaps, which are ≈ 1) makes STCH a smooth weighted max, so the
task with the largest ρ-weighted gap dominates the gradient: the preference bites.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["SCALARIZATIONS", "LOSSES", "GAPS", "ObjectiveError", "validate_rho", "sharpen", "entropy",
           "kl_to_teacher", "task_loss", "scalarize"]

SCALARIZATIONS = ("stch", "stch-abs", "linear")
LOSSES = ("entropy", "kl")
GAPS = ("raw", "ta")


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
    if not total > 0 or not math.isfinite(total):
        raise ObjectiveError("ρ must have at least one positive entry and a finite sum")
    return torch.tensor(values, dtype=torch.float64) / total


def sharpen(rho: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """The weights the scalarization gives the tasks: ρ^γ renormalized (γ = 1: ρ itself). γ > 1 makes a
    preference count for more (ρ_k = 0.5 against 0.1 weighs 5× at γ = 1, 25× at γ = 2); uniform ρ and the
    simplex's faces are unchanged."""
    if gamma == 1.0:
        return rho
    w = rho.clamp_min(0) ** gamma
    return w / w.sum()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample −Σ_c p_c log(p_c + 1e-10), p = softmax(logits) (the reference code's ε)."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    p = torch.softmax(logits, dim=-1)
    return -(p * torch.log(p + 1e-10)).sum(-1)


def kl_to_teacher(logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(p_teacher ‖ softmax(logits)) = Σ_c p_c (log p_c − log q_c); ``teacher`` holds
    probabilities (rows sum to 1)."""
    log_q = torch.log_softmax(logits.float(), dim=-1)
    t = teacher.to(log_q.dtype)
    return (t * (torch.log(t.clamp_min(1e-10)) - log_q)).sum(-1)


def task_loss(logits: torch.Tensor, kind: str = "entropy", teacher: torch.Tensor | None = None) -> torch.Tensor:
    """The mean label-free loss f_i of one task's batch (``entropy`` or ``kl`` to the expert's probabilities)."""
    if kind == "entropy":
        return entropy(logits).mean()
    if kind == "kl":
        if teacher is None:
            raise ObjectiveError("loss 'kl' needs the expert's predictions on the batch")
        return kl_to_teacher(logits, teacher).mean()
    raise ObjectiveError(f"unknown loss {kind!r}; use one of {LOSSES}")


def scalarize(f: torch.Tensor, rho: torch.Tensor, anchors: torch.Tensor | None = None, kind: str = "stch",
              alpha: float = 1.0, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Scalarize per-task losses ``f`` (N) under preference ``rho`` (N, sums to 1).

    ``scale`` (N, positive) switches to ``ta`` gaps: g = max(f − z, 0) / scale, with scale = f(TA) − z.
    """
    rho = rho.to(f.dtype).to(f.device)
    if kind not in SCALARIZATIONS:
        raise ObjectiveError(f"unknown scalarization {kind!r}; use one of {SCALARIZATIONS}")
    if scale is None and kind == "linear":
        return (rho * f).sum()
    if anchors is None:
        raise ObjectiveError(f"{kind} needs the anchors z_i")
    if not alpha > 0:
        raise ObjectiveError(f"alpha must be > 0, got {alpha}")
    gap = f - anchors.to(f.dtype).to(f.device)
    if scale is not None:
        gap = gap.clamp_min(0) / scale.to(f.dtype).to(f.device)
        if kind == "linear":
            return (rho * gap).sum()
    if kind == "stch-abs":
        gap = gap.abs()
    return alpha * torch.logsumexp(rho * gap / alpha, dim=0)
