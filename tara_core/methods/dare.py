"""DARE (Yu et al., ICML 2024, arXiv 2311.03099): drop and rescale, then TA (linear) or TIES.

Each entry of ΔW_i is kept with probability ``density`` (PEFT's convention; drop rate p = 1 − density) and
survivors are rescaled by 1/density. Masks come from a generator seeded by (seed, module, task), so the
same seed gives the same merge, independent of the order modules are visited in.
"""
from __future__ import annotations

import torch

from ..lowrank import Factors
from .base import task_weights
from .ties import elect_and_merge


def dare_mask(shape: tuple[int, ...], density: float, generator: torch.Generator) -> torch.Tensor:
    """Bernoulli(density) keep-mask drawn from ``generator``."""
    return torch.rand(shape, generator=generator) < density


def dropped(deltas_dense, density: float, ctx):
    """Per-task producer of mask_i ⊙ T_i / density (the same mask every time it is asked for task i)."""

    def produce(i: int) -> torch.Tensor | None:
        t = deltas_dense(i)
        if t is None or density >= 1:
            return t
        if density <= 0:
            return torch.zeros_like(t)
        mask = dare_mask(t.shape, density, ctx.generator(i))
        return torch.where(mask, t / density, torch.zeros((), dtype=t.dtype))

    return produce


def _dense(deltas):
    return lambda i: None if deltas[i] is None else deltas[i].materialize()


def dare_linear(deltas: list[Factors | None], params: dict, ctx) -> torch.Tensor:
    """λ Σ_i w_i DARE(ΔW_i): PEFT's ``dare_linear`` with a seeded mask, times λ."""
    w = task_weights(params, len(deltas))
    produce = dropped(_dense(deltas), params["density"], ctx)
    out = None
    for i, wi in enumerate(w):
        t = produce(i)
        if t is not None:
            out = t * wi if out is None else out.add_(t * wi)
    return out * params["lambda"]


def dare_ties(deltas: list[Factors | None], params: dict, ctx) -> torch.Tensor:
    """DARE drops, then TIES sign election and disjoint mean (PEFT's ``dare_ties``), times λ."""
    w = task_weights(params, len(deltas))
    produce = dropped(_dense(deltas), params["density"], ctx)
    return elect_and_merge(produce, w, params["majority_sign"]) * params["lambda"]
