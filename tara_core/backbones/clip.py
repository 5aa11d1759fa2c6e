"""CLIP image towers (HF ``CLIPModel`` folders and open_clip models) as frozen image encoders, plus the
zero-shot class embeddings their text towers give (the task heads of ``hf-clip`` and ``open-clip`` zoos).

The encoder's ``model`` keeps the checkpoint's own module names for the image tower
(``vision_model.encoder.layers.N…`` / ``visual.transformer.resblocks.N…``), so adapters resolved against
the checkpoint (:mod:`tara_core.keymap`) address it directly and a merged adapter exported in those names
loads with PEFT onto the full CLIP model. Features are the projected image embedding (what CLIP compares
with class-prompt embeddings); heads are cosine heads (:class:`~tara_core.backbones.TaskHead`).
"""
from __future__ import annotations

import threading
from pathlib import Path

import torch
from torch.func import functional_call

from . import register_base

__all__ = ["HFClipImageEncoder", "OpenClipImageEncoder", "hf_clip_class_embeddings", "open_clip_class_embeddings",
           "load_image"]


def load_image(item):
    """A PIL image (RGB) from a PIL image or an image file path."""
    from PIL import Image

    if isinstance(item, (str, Path)):
        with Image.open(item) as im:
            return im.convert("RGB")
    return item.convert("RGB") if hasattr(item, "convert") else item


class _HFVisionTower(torch.nn.Module):
    """CLIPModel's image side under CLIPModel's names: vision_model → pooled → visual_projection."""

    def __init__(self, clip):
        super().__init__()
        self.vision_model, self.visual_projection = clip.vision_model, clip.visual_projection

    def forward(self, pixel_values):
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output
        return self.visual_projection(pooled)


class _OpenClipVisionTower(torch.nn.Module):
    """open_clip's image side under open_clip's names (``visual.…``)."""

    def __init__(self, clip):
        super().__init__()
        self.visual = clip.visual

    def forward(self, pixel_values):
        return self.visual(pixel_values)


class _ImageEncoderBase:
    model: torch.nn.Module

    def _setup(self, tower: torch.nn.Module, device: str) -> None:
        self.model = register_base(tower.to(device).eval())
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = device
        # functional_call swaps the override tensors into the shared module for the duration of a forward
        self._forward_lock = threading.RLock()

    def adapted_modules(self) -> dict[str, torch.nn.Module]:
        kinds = (torch.nn.Linear, torch.nn.MultiheadAttention)
        return {n: m for n, m in self.model.named_modules() if isinstance(m, kinds)}

    def features(self, batch: dict[str, torch.Tensor], weights: dict[str, torch.Tensor] | None = None,
                 model: torch.nn.Module | None = None) -> torch.Tensor:
        model = model or self.model
        with self._forward_lock:
            if weights:
                return functional_call(model, weights, args=(batch["pixel_values"],), strict=False)
            return model(batch["pixel_values"])


class HFClipImageEncoder(_ImageEncoderBase):
    """The image tower of an HF CLIP folder (``CLIPModel`` weights + ``preprocessor_config.json``)."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        from transformers import CLIPImageProcessor, CLIPModel

        self.path = Path(path)
        clip = CLIPModel.from_pretrained(str(self.path))
        size = clip.config.vision_config.image_size
        if (self.path / "preprocessor_config.json").is_file():
            self.processor = CLIPImageProcessor.from_pretrained(str(self.path))
        else:  # CLIP's own preprocessing at the model's resolution
            self.processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        self.tokens_per_image = (size // clip.config.vision_config.patch_size) ** 2 + 1
        self._setup(_HFVisionTower(clip), device)

    def preprocess(self, inputs: list) -> dict[str, torch.Tensor]:
        images = [load_image(x) for x in inputs]
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels.to(self.device)}

    def token_count(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["pixel_values"].shape[0]) * self.tokens_per_image


def _open_clip_model(path: Path):
    import open_clip

    if not (path / "open_clip_config.json").is_file():
        raise FileNotFoundError(f"{path}: no open_clip_config.json (an open_clip hub folder has it next to "
                                "open_clip_model.safetensors)")
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{path}")
    return model.eval(), preprocess


class OpenClipImageEncoder(_ImageEncoderBase):
    """The image tower of an open_clip model folder (hub layout: ``open_clip_config.json`` + weights)."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        self.path = Path(path)
        clip, self._transform = _open_clip_model(self.path)
        grid = clip.visual.grid_size
        self.tokens_per_image = grid[0] * grid[1] + 1
        self._setup(_OpenClipVisionTower(clip), device)

    def preprocess(self, inputs: list) -> dict[str, torch.Tensor]:
        pixels = torch.stack([self._transform(load_image(x)) for x in inputs])
        return {"pixel_values": pixels.to(self.device)}

    def token_count(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["pixel_values"].shape[0]) * self.tokens_per_image


def _prompts(classes: list[str], templates: list[str]) -> list[str]:
    if not templates or any("{}" not in t for t in templates):
        raise ValueError("every prompt template needs a '{}' where the class name goes, e.g. 'a photo of a {}.'")
    return [t.format(c) for c in classes for t in templates]


def _average_prompts(emb: torch.Tensor, n_classes: int, n_templates: int) -> torch.Tensor:
    """CLIP's zero-shot recipe: normalize each prompt embedding, average a class's prompts, normalize."""
    emb = torch.nn.functional.normalize(emb.float(), dim=-1).reshape(n_classes, n_templates, -1).mean(1)
    return torch.nn.functional.normalize(emb, dim=-1)


@torch.no_grad()
def hf_clip_class_embeddings(clip, tokenizer, classes: list[str], templates: list[str]) -> torch.Tensor:
    """C × d zero-shot head from an HF ``CLIPModel``'s text tower."""
    enc = tokenizer(_prompts(classes, templates), padding=True, truncation=True, return_tensors="pt")
    out = clip.get_text_features(**enc)
    out = out if torch.is_tensor(out) else out.pooler_output
    return _average_prompts(out, len(classes), len(templates))


@torch.no_grad()
def open_clip_class_embeddings(clip, tokenizer, classes: list[str], templates: list[str]) -> torch.Tensor:
    """C × d zero-shot head from an open_clip model's text tower."""
    return _average_prompts(clip.encode_text(tokenizer(_prompts(classes, templates))), len(classes), len(templates))
