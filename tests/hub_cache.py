"""A Hugging Face cache built on disk in the Hub's own layout (models--org--name/snapshots/<commit>/ + refs/main),
so that ids resolve with local_files_only=True exactly as they would after `hf download`."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path


def add_to_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """Copy ``folder`` into ``cache`` as the snapshot of ``repo_id`` at a fake commit; returns the snapshot."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(folder, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
