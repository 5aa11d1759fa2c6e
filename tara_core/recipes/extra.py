"""A zoo's optional study data per task: a larger unlabeled pool (merge sets beyond val) and a labeled dev split.

Recipes write them at build time (:func:`write_task_extra`); :func:`extend_zoo` adds them to a zoo built before
they existed, from the same recipe code and the config its manifest records, so the files equal what a fresh
build writes. The zoo reads them only when asked (:meth:`tara_core.zoo.Zoo.extra`, ``merge_set``).
"""
from __future__ import annotations

import gzip
import importlib
import json
from pathlib import Path

from ..safe_io import atomic_file_write

__all__ = ["write_task_extra", "extend_zoo"]


def write_task_extra(folder: Path, task: dict, pool: list, dev_inputs: list, dev_labels: list, rule: str) -> None:
    """Write ``data/<task>.extra.json.gz`` (gzip with mtime 0: the same inputs give the same bytes) and record it,
    with the pool and dev sizes and ``rule``, in the manifest entry ``task`` (in place)."""
    if len(dev_inputs) != len(dev_labels):
        raise ValueError(f"task {task['name']}: {len(dev_inputs)} dev inputs but {len(dev_labels)} labels")
    rel = f"data/{task['name']}.extra.json.gz"
    payload = {"pool": pool, "dev": {"inputs": dev_inputs, "labels": [int(y) for y in dev_labels]}}
    atomic_file_write(Path(folder) / rel, gzip.compress(json.dumps(payload).encode(), mtime=0))
    task["extra"] = rel
    task["splits"].update(pool=len(pool), dev=len(dev_inputs), extra_rule=rule)


def extend_zoo(folder: Path, log=print, **overrides) -> Path:
    """Add (or rewrite) every task's pool and dev split of a zoo built by a demo recipe, then refit and recompute
    what depends on the zoo's files (:func:`tara_core.recipes.precompute_zoo`). ``overrides`` (``dev_size``,
    ``merge_set_size``) change the recorded config. Needs the recipe's data packages (``setup.sh --build``).
    Atomic: the extended zoo is written into a copy that replaces the folder in one rename at the end."""
    import shutil

    from ..safe_io import atomic_dir, exclusive
    from ..zoo import ZooError, open_zoo, write_manifest
    from . import hash_files, precompute_zoo

    folder = Path(folder)
    zoo = open_zoo(folder)  # the inputs must be intact (digest and every hash) before anything is added
    manifest = json.loads((folder / "zoo.json").read_text())
    recipe = manifest.get("build", {}).get("recipe")
    try:
        module = importlib.import_module(recipe) if recipe else None
    except ImportError:
        module = None
    if not all(hasattr(module, a) for a in ("DEFAULTS", "STUDY_RULE", "task_study_splits")):
        raise ZooError(f"zoo {zoo.name}: built by {recipe or 'no recipe'}, which does not define a pool and a dev "
                       "split (task_study_splits); the demo recipes do")
    cfg = {**module.DEFAULTS, **manifest["build"].get("config", {}), **overrides}
    with exclusive(folder, "zoo"), atomic_dir(folder, overwrite=True) as tmp:
        shutil.copytree(folder, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
        for t_idx, task in enumerate(manifest["tasks"]):
            pool, dev_x, dev_y = module.task_study_splits(t_idx, cfg)
            write_task_extra(tmp, task, pool, dev_x, dev_y, module.STUDY_RULE)
            log(f"[{task['name']}] pool {len(pool)} unlabeled, dev {len(dev_x)} labeled")
        manifest["build"]["config"] = {**manifest["build"].get("config", {}),
                                       **{k: cfg[k] for k in ("dev_size", "merge_set_size")}}
        manifest["files"] = hash_files(tmp)
        write_manifest(tmp, manifest)
        precompute_zoo(tmp, log=log)
    return folder
