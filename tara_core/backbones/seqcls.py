"""Decoder LMs used as sequence classifiers (LLaMA-style, as PEFT ``SEQ_CLS`` adapters train them).

``LlamaForSequenceClassification`` scores the hidden state of each row's last real token with a ``score``
layer. The encoder reproduces that feature (the base's decoder stack under the checkpoint's own names,
``model.layers.N…``, so a ``LlamaForCausalLM`` folder serves as base) and leaves the ``score`` layer to the
task heads: every adapter brings its own in ``modules_to_save`` (TARA.md §9, KnOTS NLI adapters), so each
task is scored by its own head over the merged backbone (:class:`~tara_core.backbones.TaskHead` ``linear``).
"""
from __future__ import annotations

import threading
from pathlib import Path

import torch
from torch.func import functional_call

from . import register_base

__all__ = ["LastTokenEncoder", "resolve_dtype"]


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """'auto' → bf16 on CUDA (how the reference code runs LLaMA-3-8B), fp32 elsewhere."""
    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}") from None


class _Decoder(torch.nn.Module):
    """The decoder stack under the name the causal-LM and sequence-classification checkpoints give it."""

    def __init__(self, decoder):
        super().__init__()
        self.model = decoder

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class LastTokenEncoder:
    """A frozen decoder LM; features = hidden state of each row's last non-padding token."""

    def __init__(self, path: str | Path, device: str = "cpu", max_length: int = 256, dtype: str = "auto"):
        from transformers import AutoModel, AutoTokenizer

        self.path = str(path)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        if self.tokenizer.pad_token is None:  # LLaMA-3 has none: pad with EOS (masked out anyway)
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"
        decoder = AutoModel.from_pretrained(self.path, dtype=resolve_dtype(dtype, device))
        self.model = register_base(_Decoder(decoder).to(device).eval())
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.max_length, self.device = max_length, device
        self._forward_lock = threading.RLock()

    def adapted_modules(self) -> dict[str, torch.nn.Module]:
        return {n: m for n, m in self.model.named_modules() if isinstance(m, torch.nn.Linear)}

    def preprocess(self, inputs: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(inputs), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(self.device), "attention_mask": enc["attention_mask"].to(self.device)}

    def token_count(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["input_ids"].numel())

    def features(self, batch: dict[str, torch.Tensor], weights: dict[str, torch.Tensor] | None = None,
                 model: torch.nn.Module | None = None) -> torch.Tensor:
        model = model or self.model
        with self._forward_lock:
            kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            hidden = functional_call(model, weights, args=(), kwargs=kwargs, strict=False) if weights else model(**kwargs)
        last = batch["attention_mask"].sum(1).clamp(min=1) - 1  # right padding: the last real token
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
