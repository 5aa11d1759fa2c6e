"""HF transformer encoders (BERT family, e.g. all-MiniLM-L6-v2) with mean pooling, as sentence encoders."""
from __future__ import annotations

import threading
from pathlib import Path

import torch
from torch.func import functional_call

from . import register_base

__all__ = ["TextEncoder"]


class TextEncoder:
    """A frozen HF encoder; features = mean of the last hidden states over non-padding tokens.

    ``max_length`` truncates inputs (a deliberate speed/accuracy trade-off recorded in the zoo). A padded
    batch is run in length buckets: rows sorted by length, ``bucket_rows`` at a time, each bucket cut to its
    own longest row, so short texts batched with long ones (one task's tweets with another's forum posts)
    do not pay for the long ones' padding. Features are the same as one padded forward (padding is masked).
    """

    def __init__(self, path: str | Path, max_length: int = 32, device: str = "cpu", bucket_rows: int = 48):
        from transformers import AutoModel, AutoTokenizer

        self.path = str(path)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = register_base(AutoModel.from_pretrained(self.path).to(device).eval())
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.max_length = max_length
        self.bucket_rows = bucket_rows
        # functional_call swaps the override tensors into the shared module for the duration of a forward,
        # so forwards from different threads (dashboard sessions, interrupted reruns) must not overlap
        self._forward_lock = threading.RLock()
        self.device = device

    def adapted_modules(self) -> dict[str, torch.nn.Module]:
        return {n: m for n, m in self.model.named_modules() if isinstance(m, torch.nn.Linear)}

    def preprocess(self, inputs: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(inputs), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def buckets(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Row indices of each length bucket (sorted by length, ``bucket_rows`` rows each)."""
        order = torch.argsort(batch["attention_mask"].sum(1), stable=True)
        return list(torch.split(order, max(self.bucket_rows, 1)))

    def token_count(self, batch: dict[str, torch.Tensor]) -> int:
        """Token positions a forward processes after length bucketing (what per-module costs scale with)."""
        lengths = batch["attention_mask"].sum(1)
        return int(sum(len(rows) * int(lengths[rows].max()) for rows in self.buckets(batch)))

    def features(self, batch: dict[str, torch.Tensor], weights: dict[str, torch.Tensor] | None = None,
                 model: torch.nn.Module | None = None) -> torch.Tensor:
        model = model or self.model
        with self._forward_lock:
            return self._features(batch, weights, model)

    def _features(self, batch, weights, model) -> torch.Tensor:
        buckets = self.buckets(batch)
        if len(buckets) == 1:  # already padded to its own longest row: run it as is (same numerics, same order)
            return self._pooled(batch, weights, model)
        lengths = batch["attention_mask"].sum(1)
        left = self.tokenizer.padding_side == "left"
        parts = []
        for rows in buckets:
            width = max(int(lengths[rows].max()), 1)
            cut = slice(-width, None) if left else slice(0, width)
            parts.append(self._pooled({k: v[rows, cut] for k, v in batch.items()}, weights, model))
        out = torch.cat(parts)
        return out[torch.argsort(torch.cat(buckets))]

    def _pooled(self, batch, weights, model) -> torch.Tensor:
        if weights:
            hidden = functional_call(model, weights, args=(), kwargs=batch, strict=False).last_hidden_state
        else:
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
