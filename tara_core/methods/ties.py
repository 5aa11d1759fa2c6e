"""TIES-Merging (Yadav et al., NeurIPS 2023, arXiv 2306.01708), with PEFT's conventions.

Per task keep the top ``density`` fraction of ΔW_i's entries by magnitude (trim); elect a sign per entry
from the trimmed (unweighted) tasks, γ = sign(Σ_i T_i) (``total``) or sign(Σ_i sign T_i) (``frequency``);
disjoint mean of the weighted entries that agree with γ; × λ. Exactly ``peft.utils.merge_utils.ties``.

Memory is bounded by design: tasks are visited one at a time in two passes (sign mass, then agreeing
sum and count), so a module never holds more than a few d_out × d_in buffers whatever N is.

Sign ties: an entry whose election is exactly balanced elects +1 (PEFT's ``>= 0``). With ``total`` that needs
zero mass, so the merge is invariant to flipping the sign of a shared basis direction (KnOTS' singular pairs);
with ``frequency`` a tie of counts (as many + as − tasks) is common for N even, and a flip changes the elected
sign there: KnOTS-TIES with ``frequency`` is therefore basis-sign dependent, exactly as PEFT's and the
reference code's election are. Kept for equality with PEFT; use ``total`` (the default) for a unique merge.

``trim_scope``: ``module`` (default; PEFT's convention) keeps the top ``density`` of each ΔW_i per module;
``model`` keeps the top ``density`` of each task's entries over **all** its modules, as the TIES and KnOTS
reference code does on the flattened task vector (:func:`model_thresholds`; the kernels then get the per-task
thresholds in their context).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..lowrank import Factors
from .base import task_weights


def magnitude_threshold(x: torch.Tensor, density: float) -> float:
    """The smallest magnitude kept when keeping k = ⌊density·numel⌋ entries (inf when k = 0)."""
    k = int(density * x.numel())
    if k <= 0:
        return float("inf")
    if k >= x.numel():
        return 0.0
    return float(x.abs().flatten().kthvalue(x.numel() - k + 1).values)


def elect_and_merge(
    task_tensor: Callable[[int], torch.Tensor | None],
    weights: list[float],
    majority_sign: str,
) -> torch.Tensor:
    """Sign election and disjoint weighted mean over tasks produced on demand by ``task_tensor(i)``.

    Equals PEFT's ``calculate_majority_sign_mask`` + ``disjoint_merge`` on the stacked tensors.
    """
    mass = None
    for i in range(len(weights)):
        t = task_tensor(i)
        if t is None:
            continue
        contrib = t if majority_sign == "total" else t.sign()
        mass = contrib.clone() if mass is None else mass.add_(contrib)
    if mass is None:
        raise ValueError("no task tensors to merge")
    gamma = torch.where(mass >= 0, 1.0, -1.0)
    del mass
    total = torch.zeros_like(gamma)
    count = torch.zeros_like(gamma)
    for i, w in enumerate(weights):
        t = task_tensor(i)
        if t is None:
            continue
        agree = (t.sign() == gamma).to(t.dtype)
        total.add_(t * agree * w)
        count.add_(agree)
    return total / count.clamp(min=1.0)


MAX_GLOBAL_ENTRIES = 1 << 28  # 1 GB of fp32 magnitudes per task for an exact model-wide threshold


def model_thresholds(per_module_tensors, n: int, density: float) -> list[float]:
    """Per task, the magnitude threshold that keeps the top ``density`` of its entries over every module.

    ``per_module_tensors`` yields, per module, the list of N per-task tensors (None where absent)."""
    magnitudes: list[list[torch.Tensor]] = [[] for _ in range(n)]
    for tensors in per_module_tensors:
        for i, t in enumerate(tensors):
            if t is not None:
                magnitudes[i].append(t.abs().flatten().float())
    out = []
    for i, parts in enumerate(magnitudes):
        if sum(p.numel() for p in parts) > MAX_GLOBAL_ENTRIES:
            raise ValueError(f"trim_scope 'model' needs all of task {i}'s {sum(p.numel() for p in parts):,} entries "
                             "at once (over 1 GB): use trim_scope=module")
        out.append(magnitude_threshold(torch.cat(parts), density) if parts else float("inf"))
    return out


def trimmed(deltas_dense: Callable[[int], torch.Tensor | None], density: float, n: int,
            given: list[float] | None = None):
    """Wrap a per-task dense producer with TIES magnitude trimming (per-module thresholds computed once, or
    the ``given`` model-wide ones)."""
    thresholds: dict[int, float] = dict(enumerate(given)) if given is not None else {}

    def produce(i: int) -> torch.Tensor | None:
        t = deltas_dense(i)
        if t is None or density >= 1:
            return t
        if i not in thresholds:
            thresholds[i] = magnitude_threshold(t, density)
        return torch.where(t.abs() >= thresholds[i], t, torch.zeros((), dtype=t.dtype))

    return produce


def ties(deltas: list[Factors | None], params: dict, ctx) -> torch.Tensor:
    """Dense TIES merge of one module.

    Args:
        deltas: per task ΔW_i as factors (None where absent).
        params: ``density``, ``majority_sign``, ``weights``, ``lambda``.
    Returns:
        The dense merged ΔW (generally full rank).
    """
    w = task_weights(params, len(deltas))
    dense = lambda i: None if deltas[i] is None else deltas[i].materialize()  # noqa: E731
    merged = elect_and_merge(trimmed(dense, params["density"], len(deltas), ctx.thresholds), w,
                             params["majority_sign"])
    return merged * params["lambda"]


def ties_trim_inputs(deltas: list[Factors | None], params: dict) -> list[torch.Tensor | None]:
    """What TIES trims in one module: each task's dense ΔW_i."""
    return [None if d is None else d.materialize() for d in deltas]
