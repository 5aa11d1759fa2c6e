"""Results computed once per zoo and kept on disk, so that a page's first view (and a repeated CLI call) does
not redo minutes of work.

:func:`cached_result` looks a result up by (zoo fingerprint, kind, key):

1. ``<zoo>/results/<kind>-<digest>.json`` — shipped with the zoo (``zoo precompute`` writes them; zoo.json
   lists and hashes them like every other file, so :func:`~tara_core.zoo.open_zoo` refuses tampered ones);
2. ``<cache>/results/<zoo>-<fingerprint>/<kind>-<digest>.json`` — computed on this machine before
   (``$TARA_CACHE`` or ``~/.cache/tara-studio``);
3. otherwise it computes the result and writes it (atomically) to the cache, or to the zoo inside
   :func:`writing_to_zoo`.

The digest covers the key, the kind and :data:`RESULTS_VERSION` (bumped whenever what a kind computes
changes); a stored file whose recorded key differs from the one asked for is ignored and recomputed. Values
are JSON-able objects or pandas DataFrames.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import json
from pathlib import Path
from typing import Any, Callable

import pandas as pd

__all__ = ["RESULTS_VERSION", "cached_result", "writing_to_zoo", "results_used", "result_digest"]

RESULTS_VERSION = 1
_TARGET: contextvars.ContextVar[Path | None] = contextvars.ContextVar("tara_results_target", default=None)
_USED: contextvars.ContextVar[set | None] = contextvars.ContextVar("tara_results_used", default=None)


def result_digest(kind: str, key: dict) -> str:
    text = json.dumps({"kind": kind, "key": key, "version": RESULTS_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode(value: Any) -> dict:
    if isinstance(value, pd.DataFrame):
        return {"frame": json.loads(value.to_json(orient="split", index=False, double_precision=15))}
    return {"value": value}


def _decode(payload: dict) -> Any:
    if "frame" in payload:
        return pd.read_json(io.StringIO(json.dumps(payload["frame"])), orient="split")
    return payload["value"]


def _normalized_key(key: dict) -> dict:
    return json.loads(json.dumps(key, sort_keys=True, default=str))


def _read(path: Path, kind: str, key: dict):
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("kind") != kind or payload.get("key") != _normalized_key(key):
        return None
    try:
        return _decode(payload)
    except (ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def writing_to_zoo(zoo, folder: Path | None = None):
    """Inside, results are read from and written to ``folder`` (default ``<zoo>/results/``, to ship them)
    instead of the cache."""
    folder = zoo.folder / "results" if folder is None else Path(folder)
    token, used = _TARGET.set(folder), _USED.set(set())
    try:
        yield folder
    finally:
        _TARGET.reset(token)
        _USED.reset(used)


def results_used() -> set[str]:
    """Inside :func:`writing_to_zoo`: the file names of every result read or written so far."""
    used = _USED.get()
    return set() if used is None else set(used)


def cached_result(zoo, kind: str, key: dict, compute: Callable[[], Any] | None) -> Any:
    """The stored result of ``compute()`` for (zoo, kind, key), computing and storing it when absent
    (``compute`` None: only look it up; None when it is not stored)."""
    from .export import atomic_file_write
    from .cache import cache_root
    from .preference import zoo_fingerprint

    name = f"{kind}-{result_digest(kind, key)}.json"
    target = _TARGET.get()
    if target is not None:
        _USED.get().add(name)
    fingerprint = zoo_fingerprint(zoo)
    cache_dir = cache_root() / "results" / f"{zoo.name}-{fingerprint[:12]}"
    for folder in [target] if target is not None else [zoo.folder / "results", cache_dir]:
        found = _read(folder / name, kind, key)
        if found is not None:
            return found
    if compute is None:
        return None
    value = compute()
    payload = {"kind": kind, "key": _normalized_key(key), "zoo": zoo.name, **_encode(value)}
    out = (target or cache_dir) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_file_write(out, json.dumps(payload, default=str))
    return value
