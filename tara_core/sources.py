"""Task data a user keeps on disk, in the layouts it usually comes in, read lazily.

Image tasks (``hf-clip``, ``open-clip`` zoos):

* ``imagefolder`` — ``<root>/<split>/<class>/<image>`` (torchvision ``ImageFolder`` per split; the
  task_vectors/KnOTS preparation scripts leave most datasets like this);
* ``torchvision`` — a ``torchvision.datasets`` class read from ``root`` with ``download=False`` (MNIST, SVHN,
  GTSRB, DTD, StanfordCars, EuroSAT, SUN397, …), in exactly the folder layout torchvision itself expects.
  Classes without a split argument (EuroSAT, SUN397) are one pool that :func:`split_indices` divides.

Text tasks (``hf-seqcls`` zoos): ``table`` — one CSV/TSV/JSON-lines file per split, a ``template`` that
formats a row into the input text (``"Premise: {premise}\\nHypothesis: {hypothesis}"``) and a label column
(class index or class name; rows without a gold label, SNLI's ``-1``/``"-"``, are left out).

Zoo data files keep only split names and row indices (images are never copied); :class:`ImageSplit`
opens images when a batch asks for them.
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["SourceError", "open_image_dataset", "dataset_labels", "dataset_classes", "ImageSplit",
           "split_indices", "read_table"]


class SourceError(ValueError):
    """Task data that is missing or not in the layout the zoo says."""


def _split_kwargs(cls, split: str) -> dict | None:
    params = inspect.signature(cls.__init__).parameters
    if "split" in params:
        return {"split": split}
    if "train" in params:
        if split not in ("train", "test"):
            raise SourceError(f"torchvision {cls.__name__} has only the splits 'train' and 'test', not {split!r}")
        return {"train": split == "train"}
    return None  # one pool (EuroSAT, SUN397)


def open_image_dataset(source: dict, split: str | None):
    """The torchvision dataset of one split (``split=None``: a dataset that has no splits, whole)."""
    layout, root = source.get("layout"), Path(str(source.get("root", ""))).expanduser()
    if not root.is_dir():
        raise SourceError(f"task data folder {root} does not exist")
    try:
        if layout == "imagefolder":
            from torchvision.datasets import ImageFolder

            folder = root / split if split else root
            if not folder.is_dir():
                raise SourceError(f"{folder}: no such split folder (imagefolder layout: <root>/<split>/<class>/<image>)")
            return ImageFolder(str(folder))
        if layout == "torchvision":
            import torchvision.datasets as tvd

            name = str(source.get("dataset", ""))
            cls = getattr(tvd, name, None)
            if not (isinstance(cls, type) and issubclass(cls, tvd.VisionDataset)):
                raise SourceError(f"torchvision has no dataset class {name!r}")
            kwargs = _split_kwargs(cls, split) if split else {}
            if kwargs is None:
                raise SourceError(f"torchvision {name} has no splits: give no split and let the zoo divide it")
            return cls(str(root), download=False, **kwargs)
    except (RuntimeError, FileNotFoundError, OSError) as exc:  # torchvision: "Dataset not found …"
        what = f"torchvision {source.get('dataset')}" if layout == "torchvision" else layout
        raise SourceError(f"{what} data at {root} ({split or 'all'}): {str(exc).splitlines()[0]}") from None
    raise SourceError(f"unknown image data layout {layout!r} (imagefolder or torchvision)")


def has_splits(source: dict) -> bool:
    """Whether the dataset comes in named splits (torchvision EuroSAT and SUN397 do not)."""
    if source.get("layout") != "torchvision":
        return True
    import torchvision.datasets as tvd

    cls = getattr(tvd, str(source.get("dataset", "")), None)
    return cls is None or _split_kwargs(cls, "train") is not None


def dataset_labels(ds) -> list[int]:
    """Every row's label without decoding images where the dataset keeps them in a list."""
    for attr in ("targets", "labels", "_labels"):
        value = getattr(ds, attr, None)
        if value is not None and len(value) == len(ds):
            return [int(v) for v in (value.tolist() if torch.is_tensor(value) else value)]
    samples = getattr(ds, "_samples", None) or getattr(ds, "samples", None)
    if samples is not None and len(samples) == len(ds):
        return [int(s[1]) for s in samples]
    return [int(ds[i][1]) for i in range(len(ds))]


def dataset_classes(ds) -> list[str] | None:
    classes = getattr(ds, "classes", None)
    return [str(c) for c in classes] if classes else None


class ImageSplit(Sequence):
    """Rows ``indices`` of an image dataset as a sequence of RGB PIL images (opened when indexed)."""

    def __init__(self, dataset, indices: list[int]):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(len(self)))]
        image = self.dataset[self.indices[item]][0]
        return image.convert("RGB") if hasattr(image, "convert") else image


def split_indices(n: int, fraction: float, seed: int, limit: int | None = None) -> tuple[list[int], list[int]]:
    """A seeded division of ``range(n)``: (``fraction`` of it capped at ``limit``, the rest), each sorted."""
    if not 0.0 < fraction < 1.0:
        raise SourceError(f"fraction must be in (0, 1), got {fraction}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    k = max(1, int(round(n * fraction)))
    picked = order[:k] if limit is None else order[: min(k, limit)]
    rest = order[k:]
    return sorted(picked), sorted(rest)


def read_table(path: str | Path, template: str, label_column: str, classes: list[str]) -> tuple[list[str], list[int]]:
    """(input texts, class indices) of a CSV / TSV / JSON-lines file; labels may be indices or class names."""
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    try:
        if path.suffix in (".jsonl", ".json"):
            df = pd.read_json(path, lines=path.suffix == ".jsonl")
        else:
            df = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
    except ValueError as exc:
        raise SourceError(f"{path}: cannot read as a table ({exc})") from None
    if label_column not in df.columns:
        raise SourceError(f"{path}: no label column {label_column!r} (columns: {', '.join(map(str, df.columns))})")
    try:
        texts = [template.format(**row) for row in df.to_dict("records")]
    except KeyError as exc:
        raise SourceError(f"{path}: the template uses column {exc} that the file does not have") from None
    kept_texts, labels = [], []
    for text, value in zip(texts, df[label_column].tolist()):
        if isinstance(value, str) and not value.lstrip("-").isdigit():
            if value.strip() in ("-", ""):
                continue  # no gold label (SNLI's "-" rows)
            if value not in classes:
                raise SourceError(f"{path}: label {value!r} is not one of the classes {classes}")
            label = classes.index(value)
        else:
            label = int(value)
            if label < 0:
                continue  # no gold label (SNLI's -1 rows)
        labels.append(label)
        kept_texts.append(text)
    bad = [v for v in labels if not 0 <= v < len(classes)]
    if bad:
        raise SourceError(f"{path}: labels {sorted(set(bad))[:5]} outside the {len(classes)} classes")
    return kept_texts, labels
