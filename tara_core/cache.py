"""The user's cache folder for what tara-studio computes once and reuses: ``$TARA_CACHE`` or
``~/.cache/tara-studio`` (fitted preference models, dashboard results, adapter configs as PEFT reads them)."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """``$TARA_CACHE`` if set, else ``~/.cache/tara-studio``."""
    return Path(os.environ.get("TARA_CACHE") or Path.home() / ".cache" / "tara-studio")
