"""Read-only access to a base model's weights, matched to adapter module names.

Adapters name modules relative to the model PEFT wrapped (``bert.encoder.layer.0.attention.self.query``,
``attn`` for an ``nn.MultiheadAttention`` whose LoRA acts on ``in_proj_weight``, ``attn.base_layer.out_proj``
for its output projection). A base checkpoint may carry a different prefix (``BertModel`` vs
``BertForSequenceClassification``). :class:`BaseWeights` resolves each adapter module to the checkpoint key
of its weight by dotted-suffix matching, reading only tensor shapes until a weight is really needed.
"""
from __future__ import annotations

import json
import pickle
import zipfile
from collections import defaultdict
from pathlib import Path

import torch
from safetensors import safe_open

from .adapters import AdapterError, declared_shapes
from .keymap import wrapped_module

__all__ = ["BaseWeights"]

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


class BaseWeights:
    """Shapes and (on request) values of a base model's weights, addressed by adapter module names."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], loader):
        self._shapes = shapes
        self._loader = loader
        self.source = None  # tara_core.hub.Source of a model read from disk (provenance)
        self.files: list = []  # its weight files
        self._suffix_index: dict[str, list[str]] = defaultdict(list)
        for key in shapes:
            parts = key.split(".")
            for k in range(len(parts)):
                self._suffix_index[".".join(parts[k:])].append(key)

    # ---- construction -------------------------------------------------------------------------------
    @classmethod
    def from_module(cls, model: torch.nn.Module) -> "BaseWeights":
        state = {k: v for k, v in model.state_dict().items() if torch.is_tensor(v)}
        return cls({k: tuple(v.shape) for k, v in state.items()}, lambda key: state[key])

    @classmethod
    def from_path(cls, path: str | Path) -> "BaseWeights":
        """A HF model folder (single or sharded safetensors/bin), one checkpoint file (e.g. open_clip), or a
        Hugging Face id in the local cache (:func:`tara_core.hub.resolve`)."""
        from .hub import HubError, resolve

        try:
            source = resolve(path, "base model")
        except HubError as exc:
            raise AdapterError(str(exc)) from None
        path = source.path
        files: list[Path]
        if path.is_file():
            files = [path]
        elif path.is_dir():
            index = next((path / n for n in _INDEX_FILES if (path / n).is_file()), None)
            if index is not None:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
                files = [path / s for s in shards]
            else:
                files = [path / n for n in _WEIGHT_FILES if (path / n).is_file()][:1]
            if not files:
                raise AdapterError(f"{path}: no model weights found (looked for {', '.join(_WEIGHT_FILES)})")
        else:
            raise AdapterError(f"{path}: base model path does not exist")
        shapes: dict[str, tuple[int, ...]] = {}
        where: dict[str, Path] = {}
        for f in files:
            for key, shape in _file_shapes(f).items():
                shapes[key], where[key] = shape, f
        cache: dict[Path, dict] = {}

        def load(key: str) -> torch.Tensor:
            f = where[key]
            if f.suffix == ".safetensors":
                with safe_open(str(f), framework="pt") as fh:
                    return fh.get_tensor(key)
            if f not in cache:
                cache[f] = _load_bin(f)
            return cache[f][key]

        weights = cls(shapes, load)
        weights.source, weights.files = source, files
        return weights

    # ---- lookup -------------------------------------------------------------------------------------
    def key_for(self, module: str) -> str | None:
        """The checkpoint key of the weight an adapter module adapts, or None."""
        name = wrapped_module(module)
        parts = name.split(".")
        for start in range(len(parts)):
            stem = ".".join(parts[start:])
            for suffix in (".weight", ".in_proj_weight"):
                hits = self._suffix_index.get(stem + suffix, [])
                if len(hits) == 1:
                    return hits[0]
                if len(hits) > 1:  # e.g. a vision adapter's "encoder.layers.0…" in a CLIP with two towers
                    raise AdapterError(
                        f"module {module} matches several base weights ({', '.join(sorted(hits)[:3])}); "
                        "load the adapters with the base (load_adapter_set(base=…), --base) or a module prefix "
                        "so their names are resolved by shape first")
        return None

    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every checkpoint key with its shape (what :mod:`tara_core.keymap` matches adapters against)."""
        return dict(self._shapes)

    def shapes_for(self, modules: list[str]) -> dict[str, tuple[int, ...]]:
        """Weight shapes of the modules that exist in the base (missing ones are left out)."""
        out = {}
        for m in modules:
            key = self.key_for(m)
            if key is not None:
                out[m] = self._shapes[key]
        return out

    def weight(self, module: str) -> torch.Tensor:
        key = self.key_for(module)
        if key is None:
            raise AdapterError(f"module {module} not found in the base model")
        return self._loader(key)


def _load_bin(f: Path) -> dict:
    try:
        state = torch.load(f, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise AdapterError(f"{f}: cannot be read safely with weights_only=True: {str(exc).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise AdapterError(f"{f}: expected a state dict")
    return {k: v for k, v in state.items() if torch.is_tensor(v)}


def _file_shapes(f: Path) -> dict[str, tuple[int, ...]]:
    if f.suffix == ".safetensors":
        return declared_shapes(f)
    return {k: tuple(v.shape) for k, v in _load_bin(f).items()}
