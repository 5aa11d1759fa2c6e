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

import contextlib
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch
import torch.nn.functional as F

__all__ = ["Backbone", "TaskHead", "delta_weights", "module_inputs"]


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


@torch.no_grad()
def module_inputs(backbone, inputs: list, modules: list[str], batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """Per batch of ``inputs``: {module: X (tokens × d_in)}, what reaches each module of the frozen base
    (forward pre-hooks; padding positions left out). The backbone's forward lock is held while iterating,
    since the hooks sit on a model other threads may share."""
    with getattr(backbone, "_forward_lock", contextlib.nullcontext()):
        # a backbone may run one batch as several forwards (length buckets): keep each forward's inputs
        # together with that forward's own attention mask
        store: dict[str, list[torch.Tensor]] = {}
        masks: list[torch.Tensor | None] = []

        def top_hook(mod, args, kwargs):
            mask = kwargs.get("attention_mask")
            masks.append(None if mask is None else mask.reshape(-1).bool())

        handles = [backbone.model.register_forward_pre_hook(top_hook, with_kwargs=True)]
        for m in modules:
            def hook(mod, args, _m=m):
                store.setdefault(_m, []).append(args[0].detach().reshape(-1, args[0].shape[-1]))

            handles.append(backbone.model.get_submodule(m).register_forward_pre_hook(hook))
        try:
            for start in range(0, len(inputs), batch_size):
                batch = backbone.preprocess(inputs[start:start + batch_size])
                store.clear()
                masks.clear()
                backbone.features(batch)
                yield {m: torch.cat([x[keep] if keep is not None and x.shape[0] == keep.numel() else x
                                     for x, keep in zip(xs, masks)]) for m, xs in store.items()}
        finally:
            for h in handles:
                h.remove()
