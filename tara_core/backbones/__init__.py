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
import weakref
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch
import torch.nn.functional as F

from ..keymap import wrapped_module

__all__ = ["Backbone", "TaskHead", "register_base", "base_parameters", "delta_weights", "module_inputs", "weight_name", "supports_side_path"]


class Backbone(Protocol):
    model: torch.nn.Module

    def adapted_modules(self) -> dict[str, torch.nn.Module]: ...

    def preprocess(self, inputs: list) -> dict[str, torch.Tensor]: ...

    def token_count(self, batch: dict[str, torch.Tensor]) -> int: ...

    def features(self, batch: dict[str, torch.Tensor], weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor: ...


@dataclass
class TaskHead:
    """A frozen task head: logits for one task from pooled features.

    * ``cosine`` (zero-shot style): logits = logit_scale · normalize(f) · normalize(W_c)ᵀ, with ``W`` (C × d)
      one embedding per class (e.g. of class prompts). ``logit_scale`` is explicit because it sets the
      entropy scale the TARA objective sees (TARA.md §6.5: the reference anchors imply 1, KnOTS uses 100).
    * ``linear``: logits = f Wᵀ (+ b), e.g. a sequence classifier's ``score`` layer.

    ``classes`` (default: every row of ``W``) is how many classes the task really has: a shared 3-way NLI head
    on a 2-class task keeps all rows for the entropy (as the reference code does, TARA.md §10.7) while
    predictions only choose among the first ``classes`` (:meth:`predict`).
    """

    weight: torch.Tensor
    logit_scale: float = 1.0
    kind: str = "cosine"
    bias: torch.Tensor | None = None
    classes: int | None = None

    def __post_init__(self):
        if self.kind not in ("cosine", "linear"):
            raise ValueError(f"head kind must be 'cosine' or 'linear', got {self.kind!r}")
        if self.classes is not None and not 1 <= self.classes <= self.weight.shape[0]:
            raise ValueError(f"head has {self.weight.shape[0]} rows, cannot predict {self.classes} classes")

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return F.linear(features, self.weight.to(features.dtype),
                            None if self.bias is None else self.bias.to(features.dtype))
        return self.logit_scale * F.normalize(features, dim=-1) @ F.normalize(self.weight, dim=-1).T

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """Predicted class per row, among the task's own ``classes`` (the others are masked)."""
        return logits[:, : self.num_classes].argmax(-1)

    @property
    def num_classes(self) -> int:
        return self.classes or self.weight.shape[0]


def weight_name(model: torch.nn.Module, module: str) -> str:
    """The parameter an adapter module's ΔW adds to: ``<module>.weight``, or ``<module>.in_proj_weight`` for
    an ``nn.MultiheadAttention`` (PEFT's MHA LoRA acts on the packed q/k/v projection). PEFT's
    ``.base_layer`` wrapping in names (an MHA's out_proj) is dropped."""
    name = wrapped_module(module)
    if isinstance(model.get_submodule(name), torch.nn.MultiheadAttention):
        return f"{name}.in_proj_weight"
    return f"{name}.weight"


def supports_side_path(model: torch.nn.Module, module: str) -> bool:
    """Whether y = W x + ΔW x can be added by a forward hook (plain linear layers; not an MHA's in_proj)."""
    return isinstance(model.get_submodule(wrapped_module(module)), torch.nn.Linear)


_BASE: "weakref.WeakKeyDictionary[torch.nn.Module, dict[str, torch.Tensor]]" = weakref.WeakKeyDictionary()


def register_base(model: torch.nn.Module) -> torch.nn.Module:
    """Snapshot a freshly loaded model's parameters (W_0). ``functional_call`` swaps override tensors into the
    shared module while another session's forward runs, so W_0 is always read from this snapshot, never from
    the live module (which may hold someone else's merge at that moment)."""
    _BASE[model] = dict(model.named_parameters())
    return model


def base_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The registered W_0 of ``model`` (registered now if it was not: a model no forward has touched yet)."""
    if model not in _BASE:
        register_base(model)
    return _BASE[model]


def delta_weights(model: torch.nn.Module, deltas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Parameter overrides {weight name: W_0 + ΔW} for ``functional_call`` (ΔW in weight layout)."""
    out = {}
    base = base_parameters(model)
    for module, delta in deltas.items():
        name = weight_name(model, module)
        w0 = base[name]
        out[name] = w0 + delta.reshape(w0.shape).to(w0.dtype)
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

            handles.append(backbone.model.get_submodule(wrapped_module(m)).register_forward_pre_hook(hook))
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
