"""A tiny text zoo built from scratch in a temporary folder (random 2-layer BERT, word-level tokenizer).

Used by the zoo, evaluation and CLI tests; it has the exact layout ``zoo build`` writes, with a
hand-checked task: its labels are the base model's own predictions for the first half of the test set
and a different class for the second half, so the base + head accuracy is exactly 50 %.
"""
from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

WORDS = ("red green blue cat dog bird sun moon star fast slow big small happy sad good bad yes no one two "
         "three four five six seven eight nine ten up down left right").split()


def make_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(folder)
    return tok


def sentences(seed: int, n: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[i] for i in torch.randint(0, len(WORDS), (int(torch.randint(3, 9, (1,), generator=g)),),
                                                      generator=g).tolist()) for _ in range(n)]


# The fixture doubles as a (tiny) recipe module for the OSRM rebuild: task_split + finetune_lora.
TINY_RECIPE = {"seed": 0, "steps": 4, "batch_size": 4, "lr": 5e-3, "r": 2, "alpha": 4, "logit_scale": 5.0,
               "target_modules": ["query", "value"]}


def task_split(t: int, cfg: dict):
    """Synthetic training sentences for task t (labels by sentence length), all used as train."""
    inputs = sentences(300 + t, 16)
    labels = [len(s.split()) % (2 + t) for s in inputs]
    return inputs, labels, [f"c{k}" for k in range(2 + t)], (list(range(16)), [], [])


# ... and for `zoo extend`: a pool and a dev split per task, disjoint from val and test (other seeds)
DEFAULTS = {**TINY_RECIPE, "dev_size": 6, "merge_set_size": 40}
STUDY_RULE = "synthetic sentences from other seeds than val and test"


def task_study_splits(t: int, cfg: dict):
    pool = sentences(400 + t, cfg["merge_set_size"] - 8)  # the tiny zoo's val has 8 inputs
    dev = sentences(500 + t, cfg["dev_size"])
    return pool, dev, [len(s.split()) % (2 + t) for s in dev]


def finetune_lora(*args, **kwargs):
    from tara_core.recipes.demo_text import finetune_lora as real

    return real(*args, **kwargs)


def build_tiny_zoo(root: Path, n_tasks: int = 3, n_val: int = 8, n_test: int = 20, lora_scale: float = 0.3,
                   logit_scale: float = 5.0) -> Path:
    """``lora_scale``: std of the random LoRA factors (larger: adapters that change predictions more)."""
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertModel

    from tara_core.recipes import finalize_manifest
    from tara_core.zoo import Zoo, ZooManifest, write_manifest

    folder = root / "tiny-text"
    (folder / "base").mkdir(parents=True)
    torch.manual_seed(0)
    vocab_size = len(WORDS) + 5
    model = BertModel(BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=48, max_position_embeddings=32)).eval()
    model.save_pretrained(folder / "base")
    make_tokenizer(folder / "base")
    heads, tasks = {}, []
    (folder / "data").mkdir()
    for t in range(n_tasks):
        name = f"task{t}"
        n_classes = 2 + t
        g = torch.Generator().manual_seed(10 + t)
        heads[name] = torch.randn(n_classes, 32, generator=g)
        peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=2 + 2 * t, lora_alpha=4, target_modules=["query", "value"]))
        with torch.no_grad():
            for pname, p in peft_model.named_parameters():
                if "lora_" in pname:
                    p.copy_(torch.randn(p.shape, generator=g) * lora_scale)
        peft_model.save_pretrained(folder / "adapters" / name)
        val, test = sentences(100 + t, n_val), sentences(200 + t, n_test)
        payload = {"val": val, "test": {"inputs": test, "labels": [0] * n_test}}
        (folder / "data" / f"{name}.json.gz").write_bytes(gzip.compress(json.dumps(payload).encode(), mtime=0))
        tasks.append({"name": name, "title": f"Task {t}", "classes": [f"c{k}" for k in range(n_classes)],
                      "source": {"synthetic": True}, "licence": "test data",
                      "splits": {"seed": t, "train": 0, "val": n_val, "test": n_test},
                      "adapter": f"adapters/{name}", "data": f"data/{name}.json.gz"})
    save_file(heads, str(folder / "heads.safetensors"))
    manifest = {"name": "tiny-text", "description": "test zoo", "kind": "text-encoder",
                "base": {"source": "zoo", "path": "base"}, "backbone": {"type": "hf-encoder", "max_length": 16},
                "lora": {"r": 2}, "logit_scale": logit_scale, "tasks": tasks,
                "build": {"recipe": "zoo_fixture", "config": TINY_RECIPE}}
    # hand-checked labels for task 0: base predictions on the first half, a wrong class on the second half;
    # other tasks: their own adapter's predictions on the first 3/4 (so merging has something to lose)
    from tara_core.evaluate import merged_overrides, predict_logits
    from tara_core.methods import merge

    zoo = Zoo(folder, ZooManifest.model_validate(manifest))
    for t in range(n_tasks):
        overrides = None if t == 0 else merged_overrides(zoo, merge(zoo.adapters.subset([t]), "cat"))
        pred = predict_logits(zoo, t, zoo.data[t].test_inputs, overrides).argmax(-1).tolist()
        cut = n_test // 2 if t == 0 else 3 * n_test // 4
        labels = pred[:cut] + [(p + 1) % (2 + t) for p in pred[cut:]]
        path = folder / "data" / f"task{t}.json.gz"
        payload = json.loads(gzip.decompress(path.read_bytes()))
        payload["test"]["labels"] = labels
        path.write_bytes(gzip.compress(json.dumps(payload).encode(), mtime=0))
    manifest = finalize_manifest(folder, manifest, log=lambda *a: None)
    write_manifest(folder, manifest)
    return folder
