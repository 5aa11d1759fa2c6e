"""A small HF ViT (``ViTModel``) as an image encoder over 28 × 28 grayscale images (demo-vision)."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call

from . import register_base

__all__ = ["ImageEncoder", "images_to_tensor"]


def images_to_tensor(images) -> torch.Tensor:
    """uint8 images (N × H × W arrays or nested lists of flattened pixels) → N × 1 × H × W in [-1, 1]."""
    arr = np.asarray(images, dtype=np.uint8)
    if arr.ndim == 2:  # flattened square images, as stored in zoo data files
        side = int(round(arr.shape[1] ** 0.5))
        arr = arr.reshape(len(arr), side, side)
    return torch.from_numpy(arr.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)


class ImageEncoder:
    """A frozen ``ViTModel``; features = mean of the final (layer-normed) token states."""

    def __init__(self, path: str | Path | None = None, model: torch.nn.Module | None = None, device: str = "cpu"):
        from transformers import ViTModel

        self.model = (model if model is not None else ViTModel.from_pretrained(str(path), add_pooling_layer=False))
        self.model = register_base(self.model.to(device).eval())
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = device
        # functional_call swaps the override tensors into the shared module for the duration of a forward,
        # so forwards from different threads (dashboard sessions, interrupted reruns) must not overlap
        self._forward_lock = threading.RLock()

    def adapted_modules(self) -> dict[str, torch.nn.Module]:
        return {n: m for n, m in self.model.named_modules() if isinstance(m, torch.nn.Linear)}

    def preprocess(self, inputs) -> dict[str, torch.Tensor]:
        return {"pixel_values": images_to_tensor(inputs).to(self.device)}

    def token_count(self, batch: dict[str, torch.Tensor]) -> int:
        """Token positions a forward processes: images × (patches + the CLS token)."""
        cfg = self.model.config
        return int(batch["pixel_values"].shape[0]) * ((cfg.image_size // cfg.patch_size) ** 2 + 1)

    def features(self, batch: dict[str, torch.Tensor], weights: dict[str, torch.Tensor] | None = None,
                 model: torch.nn.Module | None = None) -> torch.Tensor:
        model = model or self.model
        with self._forward_lock:
            return self._features(batch, weights, model)

    def _features(self, batch, weights, model) -> torch.Tensor:
        if weights:
            hidden = functional_call(model, weights, args=(), kwargs=batch, strict=False).last_hidden_state
        else:
            hidden = model(**batch).last_hidden_state
        return hidden.mean(1)
