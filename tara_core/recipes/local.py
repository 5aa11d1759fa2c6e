"""Zoos from files a user already has: a base model folder, N PEFT adapters and each task's data on disk.

``python -m tara_core zoo import SPEC.yaml --out DIR`` turns a spec (:class:`ImportSpec`, YAML or JSON) into a
zoo every command and page can use. Nothing is copied but the small things: heads, the row indices of each
split, the manifest. The three kinds are the paper's real setups (TARA.md §6.3, §6.5, §9):

* ``hf-clip`` — an HF CLIP folder (``openai/clip-vit-base-patch32``) with vision adapters (the KnOTS ViT-B/32
  ones: ``adapter_model.bin`` with keys for the vision transformer alone — read with ``weights_only=True``
  and renamed onto ``vision_model.`` on load, the files are never edited); zero-shot heads from the text
  tower with class names and prompt templates;
* ``open-clip`` — an open_clip hub folder (``open_clip_config.json`` + weights), LoRA on ``attn``/MLP;
* ``hf-seqcls`` — a LLaMA folder with PEFT ``SEQ_CLS`` adapters; each task is scored by its adapter's own
  ``score`` head (``modules_to_save``), predictions restricted to the task's classes.

Merge data is unlabeled and never the test split: a dataset's own validation split when the spec names one
(``val_split``), otherwise a seeded ``val_fraction`` (default 20 %, at most ``val_max`` = 5,000 rows) of
the train split — the reference code's protocol (TARA.md §6.3). Anchors z_i and the individual accuracies
(the normalization denominators) are measured with each adapter alone unless the spec gives them.
"""
from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..export import atomic_dir
from ..sources import (SourceError, dataset_classes, dataset_labels, has_splits, open_image_dataset, read_table,
                       split_indices)

__all__ = ["ImportSpec", "import_zoo", "load_spec"]

DEFAULT_PREFIX = {"hf-clip": "vision_model.", "open-clip": "visual.", "hf-seqcls": ""}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSpec(_Strict):
    """Where one task's data is and how to split it."""

    layout: Literal["imagefolder", "torchvision", "table"]
    root: str | None = None  # image layouts: the dataset folder
    dataset: str | None = None  # torchvision: the dataset class (MNIST, SVHN, GTSRB, DTD, StanfordCars, …)
    files: dict[str, str] = Field(default_factory=dict)  # table: split name → CSV / TSV / JSON-lines file
    template: str = "{text}"  # table: how a row becomes the input text
    label_column: str = "label"  # table
    train_split: str = "train"
    test_split: str = "test"
    val_split: str | None = None  # a labeled split used unlabeled for merging (else a fraction of train)
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    val_max: int = Field(5000, ge=1)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)  # datasets with no splits (EuroSAT, SUN397)


class TaskSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    title: str = ""
    adapter: str
    classes: list[str] | None = None  # default: the dataset's own class names
    templates: list[str] = Field(default_factory=lambda: ["a photo of a {}."])  # CLIP heads
    individual_accuracy: float | None = Field(None, gt=0.0, le=100.0)  # known denominator: not re-measured
    data: DataSpec


class ImportSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    kind: Literal["hf-clip", "open-clip", "hf-seqcls"]
    base: str
    module_prefix: str | None = None  # the tower adapters live in (default: by kind)
    logit_scale: float | Literal["clip"] = 1.0  # CLIP heads: 1 (reference anchors) or the model's own (×100)
    max_length: int = Field(256, ge=8)  # hf-seqcls
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # hf-seqcls (auto: bf16 on CUDA)
    seed: int = 0
    anchor_samples: int = Field(512, ge=1)  # val rows per task for the anchors z_i
    measure_base: bool = False  # also measure base + head accuracy (one more pass over every test split)
    tasks: list[TaskSpec] = Field(min_length=1)

    @field_validator("tasks")
    @classmethod
    def _unique(cls, tasks):
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        return tasks


def load_spec(path: str | Path) -> ImportSpec:
    import yaml

    from ..zoo import ZooError

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
        return ImportSpec.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise ZooError(f"{path}: cannot read the zoo spec ({exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ZooError(f"{path}: invalid zoo spec at {where}: {first['msg']}") from None


def _resolve(path: str, relative_to: Path) -> Path:
    """A spec path (relative to the spec's folder), or a Hugging Face id found in the local cache."""
    from ..hub import looks_like_hub_id, resolve

    p = Path(path).expanduser()
    candidate = p if p.is_absolute() else (relative_to / p).resolve()
    if not candidate.exists() and looks_like_hub_id(str(path)):
        return resolve(str(path)).path
    return candidate


# ---- data -------------------------------------------------------------------------------------------
def _image_task(task: TaskSpec, seed: int, spec_dir: Path) -> tuple[dict, dict, list[str]]:
    """(source, {"val": …, "test": …} index payload, class names) of an image task."""
    d = task.data
    if not d.root:
        raise SourceError(f"task {task.name}: data.root (the dataset folder) is required for {d.layout}")
    source = {"layout": d.layout, "root": str(_resolve(d.root, spec_dir))}
    if d.dataset:
        source["dataset"] = d.dataset
    if has_splits(source):
        test_ds = open_image_dataset(source, d.test_split)
        test = {"split": d.test_split, "indices": list(range(len(test_ds))), "labels": dataset_labels(test_ds)}
        if d.val_split:
            val_ds = open_image_dataset(source, d.val_split)
            val = {"split": d.val_split, "indices": list(range(len(val_ds)))[: d.val_max]}
            rule = f"val = the {d.val_split!r} split (≤ {d.val_max}); test = the {d.test_split!r} split"
        else:
            train_ds = open_image_dataset(source, d.train_split)
            picked, _ = split_indices(len(train_ds), d.val_fraction, seed, d.val_max)
            val = {"split": d.train_split, "indices": picked}
            rule = (f"val = seeded {d.val_fraction:.0%} of {d.train_split!r} (≤ {d.val_max}); "
                    f"test = the {d.test_split!r} split")
        classes = dataset_classes(test_ds)
    else:  # one pool: test = a seeded fraction, val = a fraction of the rest
        pool = open_image_dataset(source, None)
        labels = dataset_labels(pool)
        test_idx, rest = split_indices(len(pool), d.test_fraction, seed)
        picked, _ = split_indices(len(rest), d.val_fraction, seed + 1, d.val_max)
        val = {"split": None, "indices": sorted(rest[i] for i in picked)}
        test = {"split": None, "indices": test_idx, "labels": [labels[i] for i in test_idx]}
        rule = (f"one pool: test = seeded {d.test_fraction:.0%}; val = seeded {d.val_fraction:.0%} of the rest "
                f"(≤ {d.val_max}); train = the remainder, unused")
        classes = dataset_classes(pool)
    return source, {"val": val, "test": test, "rule": rule}, classes or []


def _table_task(task: TaskSpec, classes: list[str], seed: int, spec_dir: Path) -> tuple[dict, dict]:
    d = task.data
    files = {k: str(_resolve(v, spec_dir)) for k, v in d.files.items()}
    if d.test_split not in files:
        raise SourceError(f"task {task.name}: data.files has no {d.test_split!r} file")
    test_texts, test_labels = read_table(files[d.test_split], d.template, d.label_column, classes)
    if d.val_split:
        if d.val_split not in files:
            raise SourceError(f"task {task.name}: data.files has no {d.val_split!r} file")
        val = read_table(files[d.val_split], d.template, d.label_column, classes)[0][: d.val_max]
        rule = f"val = the {d.val_split!r} file (≤ {d.val_max}); test = the {d.test_split!r} file"
    else:
        if d.train_split not in files:
            raise SourceError(f"task {task.name}: data.files needs a {d.train_split!r} or a val_split file")
        train = read_table(files[d.train_split], d.template, d.label_column, classes)[0]
        picked, _ = split_indices(len(train), d.val_fraction, seed, d.val_max)
        val = [train[i] for i in picked]
        rule = f"val = seeded {d.val_fraction:.0%} of {d.train_split!r} (≤ {d.val_max}); test = {d.test_split!r}"
    source = {"layout": "table", "files": files, "template": d.template, "label_column": d.label_column}
    return source, {"val": val, "test": {"inputs": test_texts, "labels": test_labels}, "rule": rule}


# ---- heads ------------------------------------------------------------------------------------------
def _clip_heads(spec: ImportSpec, base: Path, tasks: list[tuple[TaskSpec, list[str]]]) -> tuple[dict, float]:
    if spec.kind == "hf-clip":
        from transformers import CLIPModel, CLIPTokenizer

        from ..backbones.clip import hf_clip_class_embeddings

        clip = CLIPModel.from_pretrained(str(base)).eval()
        tokenizer = CLIPTokenizer.from_pretrained(str(base))
        heads = {t.name: hf_clip_class_embeddings(clip, tokenizer, classes, t.templates) for t, classes in tasks}
    else:
        import open_clip

        from ..backbones.clip import _open_clip_model, open_clip_class_embeddings

        clip, _ = _open_clip_model(base)
        tokenizer = open_clip.get_tokenizer(f"local-dir:{base}")
        heads = {t.name: open_clip_class_embeddings(clip, tokenizer, classes, t.templates) for t, classes in tasks}
    scale = float(clip.logit_scale.detach().exp()) if spec.logit_scale == "clip" else float(spec.logit_scale)
    return heads, scale


def _score_heads(adapters) -> dict:
    """Each adapter's own sequence-classification head (``score`` in ``modules_to_save``)."""
    heads = {}
    for a in adapters.adapters:
        weights = {k: v for k, v in a.extra_tensors.items() if k.split(".")[0] == "score" and k.endswith("weight")}
        if len(weights) != 1:
            raise SourceError(f"adapter {a.path}: expected one 'score' head in modules_to_save (SEQ_CLS adapters "
                              f"save it), found {sorted(a.extra_tensors) or 'none'}")
        key = next(iter(weights))
        heads[a.name] = weights[key].float()
        bias = a.extra_tensors.get(key[: -len("weight")] + "bias")
        if bias is not None:
            heads[f"{a.name}.bias"] = bias.float()
    return heads


# ---- the import ---------------------------------------------------------------------------------------
def import_zoo(spec: ImportSpec, out: Path, spec_dir: Path = Path("."), overwrite: bool = False, log=print,
               device: str = "cpu") -> Path:
    """Write the zoo described by ``spec`` to the folder ``out`` (atomically) and return it.

    Relative paths in the spec are read relative to ``spec_dir``; ``device`` runs the measurements."""
    from safetensors.torch import save_file

    from ..adapters import file_sha256, load_adapter_set, weight_file
    from ..base import BaseWeights
    from ..zoo import Zoo, ZooError, ZooManifest, open_zoo
    from . import hash_files, measure_tasks

    start = time.perf_counter()
    base = _resolve(spec.base, spec_dir)
    if not base.is_dir():
        raise ZooError(f"base model folder {base} does not exist")
    prefix = DEFAULT_PREFIX[spec.kind] if spec.module_prefix is None else spec.module_prefix
    adapter_paths = [_resolve(t.adapter, spec_dir) for t in spec.tasks]
    adapters = load_adapter_set(adapter_paths, names=[t.name for t in spec.tasks],
                                base=BaseWeights.from_path(base), module_prefix=prefix)
    log(f"{len(adapters)} adapters, {len(adapters.module_names)} modules resolved under {prefix or 'the base'!r}")

    heads_in = _score_heads(adapters) if spec.kind == "hf-seqcls" else None
    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "data").mkdir()
        infos, clip_tasks = [], []
        for t, adapter_path in zip(spec.tasks, adapter_paths):
            if spec.kind == "hf-seqcls":
                if t.data.layout != "table":
                    raise ZooError(f"task {t.name}: hf-seqcls zoos read text tables (layout: table)")
                if not t.classes:
                    raise ZooError(f"task {t.name}: give the class names (in the label order of its head)")
                classes = t.classes
                source, payload = _table_task(t, classes, spec.seed, spec_dir)
                rows = heads_in[t.name].shape[0]
                if rows < len(classes):
                    raise ZooError(f"task {t.name}: its head scores {rows} classes, the spec lists {len(classes)}")
            else:
                if t.data.layout == "table":
                    raise ZooError(f"task {t.name}: {spec.kind} zoos read images (imagefolder or torchvision)")
                source, payload, found = _image_task(t, spec.seed, spec_dir)
                classes = t.classes or found
                if not classes:
                    raise ZooError(f"task {t.name}: the dataset has no class names; list them in the spec")
                labels = payload["test"]["labels"]
                if labels and max(labels) >= len(classes):
                    raise ZooError(f"task {t.name}: labels reach {max(labels)} but {len(classes)} classes are named")
                clip_tasks.append((t, classes))
            rule = payload.pop("rule")
            data_rel = f"data/{t.name}.json.gz"
            (tmp / data_rel).write_bytes(gzip.compress(json.dumps(payload).encode(), mtime=0))
            val_n = len(payload["val"]["indices"]) if isinstance(payload["val"], dict) else len(payload["val"])
            test_n = len(payload["test"]["labels"])
            infos.append({
                "name": t.name, "title": t.title or t.name, "classes": classes,
                "class_prompts": [] if spec.kind == "hf-seqcls" else [t.templates[0].format(c) for c in classes],
                "source": source, "licence": "the user's own copy (see the dataset's licence)",
                "splits": {"seed": spec.seed, "train": 0, "val": val_n, "test": test_n, "rule": rule},
                "adapter": str(adapter_path), "data": data_rel,
                "individual_accuracy": t.individual_accuracy,
            })
            log(f"[{t.name}] {len(classes)} classes, {val_n} unlabeled val rows, {test_n} test rows ({rule})")
        if spec.kind == "hf-seqcls":
            heads, scale = heads_in, 1.0
        else:
            heads, scale = _clip_heads(spec, base, clip_tasks)
        save_file({k: v.contiguous() for k, v in heads.items()}, str(tmp / "heads.safetensors"))
        manifest = {
            "name": spec.name,
            "description": spec.description or f"{spec.kind} zoo imported from {base}",
            "kind": spec.kind,
            "base": {"source": "path", "path": str(base)},
            "backbone": {"type": spec.kind, "module_prefix": prefix, "max_length": spec.max_length,
                         "dtype": spec.dtype},
            "lora": {"ranks": sorted({r for a in adapters.adapters for r in a.ranks.values()})},
            "head_kind": "linear" if spec.kind == "hf-seqcls" else "cosine",
            "logit_scale": scale,
            "tasks": infos,
            "build": {"recipe": "import", "spec": spec.model_dump(mode="json")},
        }
        measure_tasks(Zoo(tmp, ZooManifest.model_validate(manifest), device), manifest["tasks"],
                      base=spec.measure_base, keep_given=True, anchor_limit=spec.anchor_samples, log=log)
        manifest["files"] = hash_files(tmp)
        for a in adapters.adapters:  # the user's adapter files, by absolute path
            for f in (weight_file(a.path), a.path / "adapter_config.json"):
                manifest["files"][str(f)] = file_sha256(f)
        manifest["build"]["total_seconds"] = round(time.perf_counter() - start, 1)
        from ..zoo import write_manifest

        write_manifest(tmp, manifest)
    open_zoo(out)  # re-read: manifest valid, every hash matches
    return out
