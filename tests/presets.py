"""Tiny random stand-ins for the paper's real setups, saved in the real layouts (no downloads).

* an HF CLIP folder (``CLIPModel`` weights, a CLIP BPE tokenizer, no preprocessor config) whose text and
  vision towers have the same width — so a vision adapter's ``encoder.layers.N…`` names fit both towers —
  and KnOTS-style adapters: PEFT on the vision transformer alone, saved as ``adapter_model.bin`` with
  ``base_model.model.encoder…`` keys;
* an open_clip hub folder (``open_clip_config.json`` + ``open_clip_model.safetensors``) with adapters on the
  image tower's ``attn`` (MHA in_proj + out_proj) and MLP;
* a LLaMA sequence classifier folder with a word-level tokenizer and PEFT ``SEQ_CLS`` adapters (their own
  3-row ``score`` heads in ``modules_to_save``);
* task data in an ImageFolder tree, torchvision's MNIST raw files, and NLI JSON-lines tables.
"""
from __future__ import annotations

import copy
import json
import string
from pathlib import Path

import numpy as np
import torch

from conftest import _randomize_lora


def _peft_save(module: torch.nn.Module, out: Path, seed: int, **lora_kwargs) -> Path:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(copy.deepcopy(module), LoraConfig(**lora_kwargs))
    _randomize_lora(model, seed)
    model.save_pretrained(out)
    return out


# ---- HF CLIP -------------------------------------------------------------------------------------------
def hf_clip_folder(root: Path):
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    root.mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits + ".,'":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt")).save_pretrained(root)
    tower = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4)
    cfg = CLIPConfig(text_config=dict(tower, vocab_size=len(vocab), max_position_embeddings=32, bos_token_id=0,
                                      eos_token_id=1, pad_token_id=1),
                     vision_config=dict(tower, image_size=32, patch_size=8), projection_dim=16)
    torch.manual_seed(5)
    model = CLIPModel(cfg).eval()
    model.save_pretrained(root)
    return model


def knots_adapter(clip, out: Path, seed: int, r: int = 4) -> Path:
    """PEFT LoRA on the vision transformer alone, then the KnOTS upload format: a ``.bin`` state dict."""
    _peft_save(clip.vision_model, out, seed, r=r, lora_alpha=r, target_modules=["q_proj", "k_proj", "v_proj", "out_proj"])
    from safetensors.torch import load_file

    state = load_file(out / "adapter_model.safetensors")
    assert all(k.startswith("base_model.model.encoder.") for k in state)
    torch.save(state, out / "adapter_model.bin")
    (out / "adapter_model.safetensors").unlink()
    return out


# ---- open_clip ------------------------------------------------------------------------------------------
OPEN_CLIP_CFG = {"embed_dim": 16,
                 "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 8,
                                "mlp_ratio": 1.5},
                 "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2}}


def open_clip_folder(root: Path):
    import open_clip
    from safetensors.torch import save_file

    root.mkdir(parents=True)
    (root / "open_clip_config.json").write_text(json.dumps({"model_cfg": OPEN_CLIP_CFG, "preprocess_cfg": {}}))
    torch.manual_seed(6)
    model = open_clip.CLIP(**OPEN_CLIP_CFG).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "open_clip_model.safetensors"))
    return model


def open_clip_adapter(model, out: Path, seed: int) -> Path:
    """LoRA on the image tower alone (names ``transformer.resblocks.N.attn`` — the text tower has those too)."""
    return _peft_save(model.visual, out, seed, r=4, lora_alpha=8, target_modules=["attn", "c_fc", "c_proj"])


# ---- LLaMA sequence classification --------------------------------------------------------------------------
NLI_WORDS = ("premise hypothesis the a cat dog sits runs is on mat park sleeps sofa yes no not").split()


def llama_folder(root: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast

    root.mkdir(parents=True)
    words = ["[UNK]", "</s>", ":"] + list(NLI_WORDS)
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", eos_token="</s>").save_pretrained(root)
    torch.manual_seed(7)
    cfg = LlamaConfig(vocab_size=32, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, num_labels=3, pad_token_id=1)
    model = LlamaForSequenceClassification(cfg).eval()
    model.save_pretrained(root)
    return model


def seqcls_adapter(model, out: Path, seed: int) -> Path:
    return _peft_save(model, out, seed, r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      task_type="SEQ_CLS")


def nli_table(path: Path, n: int, seed: int, classes: int) -> Path:
    rng = np.random.default_rng(seed)
    rows = [{"premise": " ".join(rng.choice(NLI_WORDS, 6)), "hypothesis": " ".join(rng.choice(NLI_WORDS, 4)),
             "label": int(rng.integers(classes))} for _ in range(n)]
    rows.append({"premise": "the cat", "hypothesis": "a dog", "label": -1})  # no gold label: left out
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


# ---- image data -----------------------------------------------------------------------------------------
def image_folder(root: Path, classes: list[str], per_split: dict[str, int], seed: int) -> Path:
    """``<root>/<split>/<class>/<i>.png``: colored noise images, a class-dependent mean color."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in per_split.items():
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.normal(40 + 60 * c, 30, size=(24, 24, 3)).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def mnist_raw(root: Path, n_train: int, n_test: int, seed: int) -> Path:
    """torchvision's MNIST layout: ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            np.array([2051, n, 28, 28], dtype=">i4").tobytes() + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([2049, n], dtype=">i4").tobytes() + labels.tobytes())
    return root
