"""Tiny real models and PEFT adapters built in temporary folders (nothing is downloaded).

Families: a 2-layer BERT, a tiny CLIP vision tower, a tiny LLaMA for sequence classification, a tiny GPT-2
(Conv1D, ``fan_in_fan_out``) and a tiny open_clip ViT (LoRA on ``attn`` MHA + MLP). Adapters get different
ranks, alphas, rsLoRA, rank/alpha patterns and target sets, and random (nonzero) A and B.
"""
from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# fitted preference models and first-view results go to a throwaway cache, never the user's
os.environ["TARA_CACHE"] = tempfile.mkdtemp(prefix="tara-test-cache-")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass
class Family:
    name: str
    base_dir: Path
    model: torch.nn.Module
    adapters: list[Path]
    lora_kwargs: list[dict]


def _randomize_lora(model, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            elif "modules_to_save" in name:  # a task's own head, different per adapter
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)


def make_adapter(base: torch.nn.Module, out: Path, seed: int, **lora_kwargs) -> Path:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(copy.deepcopy(base), LoraConfig(**lora_kwargs))
    _randomize_lora(model, seed)
    model.save_pretrained(out)
    return out


def _tiny_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=32)
    return BertModel(cfg).eval()


def _tiny_clip_vision():
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(1)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                           image_size=16, patch_size=8, projection_dim=16)
    return CLIPVisionModel(cfg).eval()


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(2)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, num_labels=3, pad_token_id=0)
    return LlamaForSequenceClassification(cfg).eval()


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(3)
    return GPT2Model(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=32)).eval()



def _tiny_open_clip():
    from open_clip.transformer import VisionTransformer

    torch.manual_seed(4)
    return VisionTransformer(image_size=16, patch_size=8, width=32, layers=2, heads=4, mlp_ratio=1.5,
                             output_dim=16).eval()


FAMILIES = {
    "bert": (_tiny_bert, [
        dict(r=4, lora_alpha=8, target_modules=["query", "key", "value", "attention.output.dense"]),
        dict(r=8, lora_alpha=8, use_rslora=True, target_modules=["query", "value"]),
        dict(r=2, lora_alpha=4, target_modules=["query", "key", "value"], rank_pattern={"value": 6},
             alpha_pattern={"key": 10}),
    ]),
    "clip": (_tiny_clip_vision, [
        dict(r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]),
        dict(r=6, lora_alpha=12, target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]),
        dict(r=2, lora_alpha=2, target_modules=["q_proj", "v_proj"]),
    ]),
    "llama": (_tiny_llama, [
        dict(r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="SEQ_CLS"),
        dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="SEQ_CLS"),
    ]),
    "gpt2": (_tiny_gpt2, [
        dict(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True),
        dict(r=2, lora_alpha=2, target_modules=["c_attn"], fan_in_fan_out=True),
    ]),
    "open_clip": (_tiny_open_clip, [
        dict(r=4, lora_alpha=4, target_modules=["attn", "c_fc", "c_proj"]),
        dict(r=4, lora_alpha=8, target_modules=["attn", "c_fc"]),
    ]),
}


def build_family(name: str, root: Path) -> Family:
    factory, specs = FAMILIES[name]
    model = factory()
    base_dir = root / name / "base"
    base_dir.mkdir(parents=True)
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(base_dir)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(base_dir / "open_clip_model.safetensors"))
    adapters = [make_adapter(model, root / name / f"task{i}", seed=100 + i, **spec) for i, spec in enumerate(specs)]
    return Family(name, base_dir, model, adapters, specs)


@pytest.fixture(scope="session")
def families(tmp_path_factory) -> dict[str, Family]:
    root = tmp_path_factory.mktemp("families")
    return {name: build_family(name, root) for name in FAMILIES}


@pytest.fixture(scope="session")
def bert(families) -> Family:
    return families["bert"]
