"""Backbones: a frozen base model that produces task logits for a batch, given a merged delta.

The protocol is small (DESIGN.md §2):

* ``adapted_modules()`` — the base's linear modules LoRA may target, by name;
* ``preprocess(inputs)`` — raw task inputs (texts, images) to a batch of tensors;
* ``token_count(batch)`` — token positions a forward of the batch processes (for cost estimates);
* ``features(batch, weights=None)`` — the pooled representation, with ``weights`` an optional mapping
  from parameter names to replacement tensors (W_0 + ΔW). The base is never mutated: overrides go
  through ``torch.func.functional_call``, so a cached base can serve many sessions and merges;
* task heads (:class:`TaskHead`) turn features into per-task logits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

__all__ = ["Backbone", "TaskHead", "delta_weights"]


class Backbone(Protocol):
    model: torch.nn.Module

    def adapted_modules(self) -> dict[str, torch.nn.Module]: ...

    def preprocess(self, inputs: list) -> dict[str, torch.Tensor]: ...

    def token_count(self, batch: dict[str, torch.Tensor]) -> int: ...

    def features(self, batch: dict[str, torch.Tensor], weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor: ...


@dataclass
class TaskHead:
    """Cosine classifier: logits = logit_scale · normalize(f) · normalize(W_c) (zero-shot style, frozen).

    ``W`` (C × d) holds one embedding per class (e.g. of a class prompt); ``logit_scale`` is explicit
    because it sets the entropy scale the TARA objective sees (TARA.md §6.5).
    """

    weight: torch.Tensor
    logit_scale: float = 1.0

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * F.normalize(features, dim=-1) @ F.normalize(self.weight, dim=-1).T

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]


def delta_weights(model: torch.nn.Module, deltas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Parameter overrides {"<module>.weight": W_0 + ΔW} for ``functional_call`` (ΔW in weight layout)."""
    out = {}
    for module, delta in deltas.items():
        w0 = model.get_submodule(module).weight
        out[f"{module}.weight"] = w0 + delta.reshape(w0.shape).to(w0.dtype)
    return out
