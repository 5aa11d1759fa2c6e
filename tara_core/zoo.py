"""Zoos: a base model, N tasks (classes, heads, unlabeled merge data, test data) and one LoRA adapter each.

A zoo is a folder with ``zoo.json`` (validated by :class:`ZooManifest`) and the files it lists::

    zoo.json                 manifest: base source, backbone, tasks, recipe, seeds, accuracies, hashes
    adapters/<task>/         PEFT LoRA adapter folders
    heads.safetensors        one frozen head per task ("<task>" → C × d class embeddings)
    data/<task>.json.gz      {"val": [inputs...], "test": {"inputs": [...], "labels": [...]}}
    data/<task>.extra.json.gz  optional: {"pool": [inputs...], "dev": {"inputs": [...], "labels": [...]}}

``val`` is the unlabeled split merging methods may look at (TARA, AdaMerging); ``test`` is for evaluation
only. The optional extra file holds a larger **unlabeled pool** (a merge set of more than ``val``:
``merge_set``) and a **labeled dev split** for choosing hyperparameters without touching test; both are
disjoint from val and test, are read only when asked for (:meth:`Zoo.extra`), and their sizes are recorded.
The split sizes and seed are recorded per task; ``zoo verify`` re-hashes every file and checks that
the shipped adapters reproduce the recorded individual accuracies.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import threading
from functools import wraps
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from safetensors.torch import load_file

from .adapters import AdapterError, AdapterSet, file_sha256, load_adapter_set
from .backbones import TaskHead
from .safe_io import atomic_file_write, inside, safe_name

def _shipped_zoos() -> Path:
    """The demo zoos: ``zoos/`` of a checkout (or an editable install), else the copy inside the wheel."""
    checkout = Path(__file__).resolve().parents[1] / "zoos"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "_zoos"


REPO_ZOOS = _shipped_zoos()

__all__ = ["ZooError", "ZooManifest", "Zoo", "TaskData", "TaskExtra", "zoo_paths", "list_zoos", "open_zoo", "file_sha256"]


def _loaded_once(load):
    """A read-only property computed once per zoo, under the zoo's load lock: two threads that ask for it first
    (concurrent sessions, a thread pool) get one load, not two (functools.cached_property has no lock from
    Python 3.12). A load that raises is retried by the next caller."""
    name = load.__name__

    @wraps(load)
    def get(self):
        loaded = self._loaded
        if name not in loaded:
            with self._load_lock:
                if name not in loaded:
                    loaded[name] = load(self)
        return loaded[name]

    return property(get)


class ZooError(ValueError):
    """A zoo that is missing, malformed or tampered with."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaseSource(_Strict):
    """Where the base model comes from: a folder inside an installed package, in the zoo, or a local path."""

    source: Literal["package", "zoo", "path"]
    package: str | None = None
    path: str
    hub_id: str | None = None  # the same model's Hugging Face id, what exported adapters name as their base

    def resolve(self, zoo_dir: Path) -> Path:
        if self.source == "package":
            import importlib.util

            spec = importlib.util.find_spec(self.package or "")
            if spec is None or spec.origin is None:
                raise ZooError(f"the base model package {self.package!r} is not installed (see requirements.txt)")
            return Path(spec.origin).parent / self.path
        if self.source == "zoo":
            return zoo_dir / self.path
        return Path(self.path).expanduser()


class SplitInfo(_Strict):
    seed: int
    train: int
    val: int
    test: int
    rule: str = ""
    pool: int = 0  # extra unlabeled inputs in the task's extra file (merge sets beyond val)
    dev: int = 0  # labeled dev examples in the task's extra file
    extra_rule: str = ""  # where the pool and dev split come from


class TaskInfo(_Strict):
    name: str
    title: str
    classes: list[str]
    class_prompts: list[str] = Field(default_factory=list)
    source: dict
    licence: str
    splits: SplitInfo
    adapter: str
    data: str
    extra: str | None = None  # data/<task>.extra.json.gz: unlabeled pool and labeled dev split (Zoo.extra)
    individual_accuracy: float | None = None  # %, test split, adapter alone
    base_accuracy: float | None = None  # %, test split, base + head alone
    anchor_entropy: float | None = None  # z_i: mean val entropy with adapter i alone


class ZooManifest(_Strict):
    name: str
    description: str
    kind: Literal["text-encoder", "vision-vit", "hf-clip", "open-clip", "hf-seqcls"]
    base: BaseSource
    backbone: dict
    lora: dict
    heads: str = "heads.safetensors"
    head_kind: Literal["cosine", "linear"] = "cosine"
    logit_scale: float
    tasks: list[TaskInfo]
    build: dict = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)
    digest: str | None = None  # SHA-256 of the canonical JSON without it (manifest_digest); open_zoo requires it

    @field_validator("tasks")
    @classmethod
    def _task_names_are_file_names(cls, tasks):
        for t in tasks:
            safe_name(t.name, "task name")
        if len({t.name for t in tasks}) != len(tasks):
            raise ValueError("task names must be unique")
        return tasks


class TaskData:
    """One task's evaluation-time data: unlabeled val inputs, test inputs and labels."""

    def __init__(self, info: TaskInfo, val: list, test_inputs: list, test_labels: torch.Tensor):
        self.info, self.val, self.test_inputs, self.test_labels = info, val, test_inputs, test_labels

    @property
    def name(self) -> str:
        return self.info.name


def _check_labels(path: Path, labels: torch.Tensor, task: TaskInfo, what: str) -> None:
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(task.classes)):
        raise ZooError(f"{path}: {what} outside the task's {len(task.classes)} classes")


class TaskExtra:
    """One task's optional study data: an unlabeled pool beyond val, and a labeled dev split."""

    def __init__(self, pool: list, dev_inputs: list, dev_labels: torch.Tensor):
        self.pool, self.dev_inputs, self.dev_labels = pool, dev_inputs, dev_labels


def manifest_digest(manifest: dict) -> str:
    """SHA-256 of the manifest's canonical JSON (sorted keys, no whitespace) without its ``digest`` field: any
    edit of zoo.json — an accuracy, an anchor, a file hash, a deleted entry — changes it."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def write_manifest(folder: Path, manifest: dict) -> dict:
    """Seal ``manifest`` (its digest) and write ``folder/zoo.json`` atomically; every zoo writer uses this."""
    manifest = {k: v for k, v in manifest.items() if k != "digest"}
    manifest["digest"] = manifest_digest(manifest)
    atomic_file_write(Path(folder) / "zoo.json", json.dumps(manifest, indent=2, ensure_ascii=False))
    return manifest


def zoo_paths() -> list[Path]:
    """Folders searched for zoos by name: $TARA_ZOO_PATH (colon-separated) then the repo's ``zoos/``."""
    extra = [Path(p) for p in os.environ.get("TARA_ZOO_PATH", "").split(":") if p]
    return [*extra, REPO_ZOOS]


def list_zoos() -> list[Path]:
    found = []
    for root in zoo_paths():
        if root.is_dir():
            found += sorted(p for p in root.iterdir() if (p / "zoo.json").is_file() and not p.name.startswith("."))
    return found


def find_zoo(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if (p / "zoo.json").is_file():
        return p
    for root in zoo_paths():
        if (root / str(name_or_path) / "zoo.json").is_file():
            return root / str(name_or_path)
    known = ", ".join(z.name for z in list_zoos()) or "none"
    raise ZooError(f"no zoo named {name_or_path!r} (known zoos: {known}; or pass a folder with zoo.json)")


class Zoo:
    """An opened zoo: manifest, adapter set, heads, task data and the backbone (built lazily)."""

    def __init__(self, folder: Path, manifest: ZooManifest, device: str = "cpu"):
        self.folder, self.manifest, self.device = folder, manifest, device
        self.memo: dict = {}  # results derived from this zoo's fixed inputs (e.g. accuracies on test subsets)
        self._loaded: dict = {}  # adapters, heads, data, backbone once loaded (see _loaded_once)
        self._load_lock = threading.RLock()  # re-entrant: a part's load may read another part

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.manifest.tasks]

    @_loaded_once
    def adapters(self) -> AdapterSet:
        """The tasks' adapters, named as the base names its modules (``backbone.module_prefix`` picks the
        tower: KnOTS' ``encoder.layers.N…`` become ``vision_model.encoder.layers.N…``)."""
        paths = [self.folder / t.adapter for t in self.manifest.tasks]
        if self.manifest.kind in ("text-encoder", "vision-vit"):  # built by this project: already base names
            return load_adapter_set(paths, names=self.task_names)
        from .base import BaseWeights

        base = BaseWeights.from_path(self.base_path)
        return load_adapter_set(paths, names=self.task_names, base=base,
                                module_prefix=self.manifest.backbone.get("module_prefix", ""))

    @_loaded_once
    def heads(self) -> list[TaskHead]:
        path = self.folder / self.manifest.heads
        try:
            tensors = load_file(path)
        except Exception as exc:  # safetensors raises several types for corrupt files
            raise ZooError(f"{path}: cannot read heads ({exc})") from None
        heads = []
        for t in self.manifest.tasks:
            if t.name not in tensors:
                raise ZooError(f"{path}: no head for task {t.name!r}")
            w = tensors[t.name].float()
            if not torch.isfinite(w).all():
                raise ZooError(f"{path}: head {t.name!r} has NaN or Inf values")
            # a linear head may score more classes than the task has (a shared 3-way NLI head on a 2-class task)
            if w.shape[0] != len(t.classes) and not (self.manifest.head_kind == "linear" and w.shape[0] > len(t.classes)):
                raise ZooError(f"{path}: head {t.name!r} has {w.shape[0]} classes, manifest says {len(t.classes)}")
            bias = tensors.get(f"{t.name}.bias")
            heads.append(TaskHead(w.to(self.device), self.manifest.logit_scale, self.manifest.head_kind,
                                  None if bias is None else bias.float().to(self.device), len(t.classes)))
        return heads

    @_loaded_once
    def data(self) -> list[TaskData]:
        out = []
        opened: dict = {}  # image datasets by (task, split): a one-pool dataset serves val and test
        for t in self.manifest.tasks:
            path = self.folder / t.data
            try:
                payload = json.loads(gzip.decompress(path.read_bytes()))
                labels = torch.tensor(payload["test"]["labels"], dtype=torch.long)
                if isinstance(payload["val"], dict):  # row indices into the user's image folders
                    val, inputs = (self._image_rows(t, payload[s], opened) for s in ("val", "test"))
                else:
                    inputs, val = payload["test"]["inputs"], payload["val"]
            except (OSError, ValueError, KeyError, EOFError, TypeError) as exc:
                raise ZooError(f"{path}: cannot read task data ({exc})") from None
            if len(inputs) != len(labels) or len(val) != t.splits.val or len(inputs) != t.splits.test:
                raise ZooError(f"{path}: split sizes differ from the manifest")
            _check_labels(path, labels, t, "labels")
            out.append(TaskData(t, val, inputs, labels))
        return out

    def extra(self, task: int) -> TaskExtra:
        """Task ``task``'s unlabeled pool and labeled dev split (its extra file), read on first use; a task
        without one has an empty pool and dev split."""
        key = ("extra", task)
        if key in self.memo:
            return self.memo[key]
        info = self.manifest.tasks[task]
        if info.extra is None:
            extra = TaskExtra([], [], torch.zeros(0, dtype=torch.long))
        else:
            path = inside(self.folder, info.extra, "zoo.json path")
            try:
                payload = json.loads(gzip.decompress(path.read_bytes()))
                pool, dev = list(payload["pool"]), payload["dev"]
                dev_inputs, dev_labels = list(dev["inputs"]), torch.tensor(dev["labels"], dtype=torch.long)
            except (OSError, ValueError, KeyError, EOFError, TypeError) as exc:
                raise ZooError(f"{path}: cannot read the task's pool and dev split ({exc})") from None
            sizes = (len(pool), len(dev_inputs), len(dev_labels))
            if sizes != (info.splits.pool, info.splits.dev, info.splits.dev):
                raise ZooError(f"{path}: pool or dev sizes differ from the manifest")
            _check_labels(path, dev_labels, info, "dev labels")
            extra = TaskExtra(pool, dev_inputs, dev_labels)
        return self.memo.setdefault(key, extra)

    def merge_set(self, task: int, size: int | None = None) -> list:
        """The unlabeled inputs a data-driven merge sees for ``task``: its val split (``size`` None or ≤ val:
        the first ``size`` of val), or val followed by the first inputs of its pool."""
        val = self.data[task].val
        if size is None:
            return val
        if size <= len(val):
            return list(val[:size])
        pool = self.extra(task).pool
        if size > len(val) + len(pool):
            raise ZooError(f"task {self.manifest.tasks[task].name!r}: merge_set {size} > its {len(val)} val + "
                           f"{len(pool)} pool inputs")
        return list(val) + pool[:size - len(val)]

    @staticmethod
    def _image_rows(task: TaskInfo, part: dict, opened: dict):
        from .sources import ImageSplit, open_image_dataset

        key = (task.name, part.get("split"))
        if key not in opened:
            opened[key] = open_image_dataset(task.source, part.get("split"))
        return ImageSplit(opened[key], part["indices"])

    @property
    def base_path(self) -> Path:
        return self.manifest.base.resolve(self.folder)

    @_loaded_once
    def backbone(self):
        base_path = self.base_path
        kind, cfg = self.manifest.kind, self.manifest.backbone
        if kind == "hf-clip":
            from .backbones.clip import HFClipImageEncoder

            return HFClipImageEncoder(base_path, device=self.device)
        if kind == "open-clip":
            from .backbones.clip import OpenClipImageEncoder

            return OpenClipImageEncoder(base_path, device=self.device)
        if kind == "hf-seqcls":
            from .backbones.seqcls import LastTokenEncoder

            return LastTokenEncoder(base_path, device=self.device, max_length=cfg.get("max_length", 256),
                                    dtype=cfg.get("dtype", "auto"))
        if kind == "text-encoder":
            from .backbones.text import TextEncoder

            return TextEncoder(base_path, max_length=self.manifest.backbone.get("max_length", 32), device=self.device)
        from .backbones.vision import ImageEncoder

        return ImageEncoder(base_path, device=self.device)

    def verify_hashes(self) -> list[str]:
        """Problems with the zoo's files: a listed file whose SHA-256 differs or that is missing ("changed" /
        "missing"), and a file in the folder that zoo.json does not list ("unlisted"). Hidden files are ignored."""
        bad = []
        for rel, digest in self.manifest.files.items():
            path = self.folder / rel
            if not path.is_file():
                bad.append(f"{rel} (missing)")
            elif file_sha256(path) != digest:
                bad.append(f"{rel} (changed)")
        listed = set(self.manifest.files)
        for path in sorted(self.folder.rglob("*")):
            rel = path.relative_to(self.folder)
            if path.is_file() and rel.name != "zoo.json" and not any(part.startswith(".") for part in rel.parts) \
                    and "__pycache__" not in rel.parts and str(rel) not in listed:
                bad.append(f"{rel} (unlisted)")
        return bad

    def referenced_paths(self) -> list[Path]:
        """Every file or folder zoo.json points into. Relative paths must stay inside the zoo folder (no
        ``..`` escape); absolute ones are the user's own files an imported zoo reads in place (their weight
        and config files are listed, and so hash-checked, like the zoo's own)."""
        refs = [self.manifest.heads] + [p for t in self.manifest.tasks for p in (t.adapter, t.data, t.extra) if p]
        if self.manifest.base.source == "zoo":
            refs.append(self.manifest.base.path)
        return [Path(rel) if Path(rel).is_absolute() and rel in (t.adapter for t in self.manifest.tasks)
                else inside(self.folder, rel, "zoo.json path") for rel in refs]


def open_zoo(name_or_path: str | Path, device: str = "cpu", check_hashes: bool = True,
             require_digest: bool = True) -> Zoo:
    """Open a zoo by name (searched in :func:`zoo_paths`) or folder. Checks, with one-line errors: the
    manifest's schema and digest (``require_digest``: a manifest without one is refused), that every path it names stays in the folder, and (``check_hashes``) that
    every file matches its recorded SHA-256 and no unlisted file is present."""
    folder = find_zoo(name_or_path)
    path = folder / "zoo.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ZooError(f"{path}: cannot read ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(raw, dict):
        raise ZooError(f"{path}: expected a JSON object")
    if "digest" not in raw and require_digest:
        raise ZooError(f"{path}: no digest (written by an older version or by hand); re-seal it with "
                       f"`python -m tara_core zoo precompute {folder}` after checking its files")
    if "digest" in raw and raw["digest"] != manifest_digest(raw):
        raise ZooError(f"{path}: changed since it was written (digest mismatch); rebuild or re-import the zoo")
    try:
        manifest = ZooManifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ZooError(f"{path}: invalid manifest at {where}: {first['msg']}") from None
    zoo = Zoo(folder, manifest, device)
    try:
        zoo.referenced_paths()
    except ValueError as exc:
        raise ZooError(f"{path}: {exc}") from None
    if check_hashes:
        if not manifest.files:
            raise ZooError(f"zoo {manifest.name}: zoo.json lists no files to check")
        bad = zoo.verify_hashes()
        if bad:
            raise ZooError(f"zoo {manifest.name}: files changed, missing or unlisted: {', '.join(bad[:5])}"
                           + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""))
    return zoo


__all__ += ["find_zoo", "AdapterError", "manifest_digest", "write_manifest"]
