"""What a merge records about its inputs, so that a changed input is caught and the merge can be re-run.

* :func:`adapter_inputs` — per adapter its weight *and* config hashes (a changed ``lora_alpha`` changes the
  merge, so it must change the record), and its Hub id/revision when it came from the Hub cache;
* :func:`base_input` — the base: Hub id and revision, else the SHA-256 of its weight files;
* :func:`zoo_input` — for data-driven merges: the zoo, its fingerprint and the hashes of the exact unlabeled
  data and heads the merge saw;
* :func:`run_context` — the command line, the time, the tara-studio version and, from a checkout, its git
  commit (and whether the work tree had changes);
* :func:`portable_base_id` — the base's name that means the same on another machine (never a local path).
"""
from __future__ import annotations

import datetime as _dt
import subprocess
import sys
from pathlib import Path

from .adapters import AdapterSet, file_sha256, weight_file

__all__ = ["adapter_inputs", "base_input", "zoo_input", "run_context", "portable_base_id"]


def adapter_inputs(adapters: AdapterSet, sources: dict[str, object] | None = None) -> list[dict]:
    out = []
    for a in adapters.adapters:
        entry = {"name": a.name, "path": str(a.path), "sha256": a.sha256,
                 "files": {p.name: file_sha256(p) for p in (weight_file(a.path), a.path / "adapter_config.json")
                           if p.is_file()}}
        src = (sources or {}).get(a.name)
        if src is not None and getattr(src, "hub_id", None):
            entry.update(hub_id=src.hub_id, revision=src.revision)
        out.append(entry)
    return out


def base_input(base) -> dict | None:
    """Id and revision of a Hub-cached base, else its weight files' hashes (None without a base)."""
    if base is None:
        return None
    src = getattr(base, "source", None)
    entry = {"path": str(src.path) if src is not None else None}
    if src is not None and src.hub_id:
        entry.update(hub_id=src.hub_id, revision=src.revision)
    entry["files"] = {Path(f).name: file_sha256(Path(f)) for f in getattr(base, "files", [])}
    return entry


def zoo_input(zoo, tasks: list[int] | None = None) -> dict:
    from .preference import zoo_fingerprint

    tasks = list(range(len(zoo.task_names))) if tasks is None else list(tasks)
    used = [zoo.manifest.heads] + [rel for i in tasks for rel in (zoo.manifest.tasks[i].data,
                                                                     zoo.manifest.tasks[i].extra) if rel]
    return {"name": zoo.name, "folder": str(zoo.folder), "fingerprint": zoo_fingerprint(zoo),
            "tasks": [zoo.task_names[i] for i in tasks],
            "data": {rel: zoo.manifest.files.get(rel) for rel in used},
            "anchors": [zoo.manifest.tasks[i].anchor_entropy for i in tasks]}


def _git_commit() -> dict | None:
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "modified": bool(dirty)} if commit else None


def run_context() -> dict:
    from . import __version__

    return {"command": sys.argv, "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "tara_studio": __version__, "git": _git_commit()}


def _is_portable(name) -> bool:
    from .hub import looks_like_hub_id

    return isinstance(name, str) and bool(name) and not Path(name).is_absolute() and looks_like_hub_id(name) \
        and not Path(name).exists()


def portable_base_id(adapters: AdapterSet, base=None, zoo=None) -> str | None:
    """The base's Hub id: from ``--base`` given as an id, the zoo's ``base.hub_id``, the adapters' own
    ``base_model_name_or_path`` or the base's ``config.json`` — whichever first is an id, not a local path."""
    src = getattr(base, "source", None)
    if src is not None and src.hub_id:
        return src.hub_id
    if zoo is not None and zoo.manifest.base.hub_id:
        return zoo.manifest.base.hub_id
    named = adapters.adapters[0].config.get("base_model_name_or_path")
    if _is_portable(named):
        return named
    if src is not None and (src.path / "config.json").is_file():
        import json

        try:
            name = json.loads((src.path / "config.json").read_text()).get("_name_or_path")
        except (OSError, ValueError):
            name = None
        if _is_portable(name):
            return name
    return None
