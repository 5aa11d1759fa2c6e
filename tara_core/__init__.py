"""TARA Studio's library: load LoRA adapters, merge them (data-free baselines, AdaMerging, TARA),
diagnose the merge (effective rank, anisotropy) and export the result as a PEFT adapter."""
from .adapters import AdapterError, AdapterSet, load_adapter, load_adapter_set
from .lowrank import Factors
from .methods import METHODS, MergeError, MergeResult, merge

__all__ = ["AdapterError", "AdapterSet", "Factors", "METHODS", "MergeError", "MergeResult", "load_adapter",
           "load_adapter_set", "merge"]
__version__ = "0.1.0"
