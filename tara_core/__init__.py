"""TARA Studio's library: load LoRA adapters, merge them (data-free baselines, AdaMerging, TARA and its
preference models), diagnose the merge (effective rank, anisotropy) and export the result as a PEFT adapter.

The names below are imported on first use (PEP 562), so ``import tara_core`` — and ``tara-studio --help`` —
does not load torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.2.0"

_EXPORTS = {
    "AdapterError": "adapters", "AdapterSet": "adapters", "load_adapter": "adapters", "load_adapter_set": "adapters",
    "Factors": "lowrank", "METHODS": "methods", "MergeError": "methods", "MergeResult": "methods", "merge": "methods",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'tara_core' has no attribute {name!r}")
