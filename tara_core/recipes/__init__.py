"""Build recipes for the embedded demo zoos (``python -m tara_core zoo build NAME``).

Recipes read data and models that PyPI packages ship (installed with ``scripts/setup.sh --build``) and
write a zoo folder; the app, CLI and tests only read the result. :func:`build_zoo` runs a recipe into a
temporary folder, measures what the manifest records (base and individual accuracies, anchors z_i), hashes
every file, and renames the folder into place (atomic: a failed build leaves nothing behind).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..export import atomic_dir

__all__ = ["RECIPES", "build_zoo", "canonicalize_adapter_configs", "finalize_manifest", "measure_tasks", "hash_files"]


def _demo_text(out, log, **kw):
    from .demo_text import build

    return build(out, log=log, **kw)


def _demo_vision(out, log, **kw):
    from .demo_vision import build

    return build(out, log=log, **kw)


RECIPES = {"demo-text": _demo_text, "demo-vision": _demo_vision}


def canonicalize_adapter_configs(folder: Path) -> list[Path]:
    """Sort ``target_modules`` in every ``adapters/*/adapter_config.json`` under ``folder``.

    PEFT stores target_modules as a set, so its saved order follows Python's per-process string hashing and
    the same build would otherwise hash differently from run to run. Returns the files rewritten."""
    changed = []
    for path in sorted(folder.glob("adapters/*/adapter_config.json")):
        config = json.loads(path.read_text())
        if isinstance(config.get("target_modules"), list) and config["target_modules"] != sorted(config["target_modules"]):
            config["target_modules"] = sorted(config["target_modules"])
            path.write_text(json.dumps(config, indent=2, sort_keys=True))
            changed.append(path)
    return changed


def measure_tasks(zoo, tasks: list[dict], *, base: bool = True, keep_given: bool = False,
                  anchor_limit: int | None = None, log=print) -> None:
    """Fill each manifest task's accuracies and anchor from the zoo's own files (in place).

    Per task, with its adapter alone: ``individual_accuracy`` on the test split (kept when ``keep_given`` and
    already set) and the anchor z_i = mean entropy on the first ``anchor_limit`` val rows; with ``base`` also
    the base + head accuracy."""
    from ..evaluate import evaluate, mean_entropy, merged_overrides
    from ..methods import merge

    base_acc = evaluate(zoo, None) if base else {}
    for i, task in enumerate(tasks):
        alone = merge(zoo.adapters.subset([i]), "cat")
        overrides = merged_overrides(zoo, alone)
        if base:
            task["base_accuracy"] = round(base_acc[task["name"]], 2)
        if not (keep_given and task.get("individual_accuracy") is not None):
            task["individual_accuracy"] = round(evaluate(zoo, alone, tasks=[i])[task["name"]], 2)
        task["anchor_entropy"] = round(mean_entropy(zoo, i, overrides, limit=anchor_limit), 6)
        measured_base = f"base+head {task['base_accuracy']:.1f}%  " if base else ""
        log(f"[{task['name']}] {measured_base}adapter {task['individual_accuracy']:.1f}%  "
            f"z = {task['anchor_entropy']:.4f}")


def hash_files(folder: Path) -> dict[str, str]:
    """{path relative to ``folder``: SHA-256} of every file under it but ``zoo.json``."""
    from ..adapters import file_sha256

    return {str(p.relative_to(folder)): file_sha256(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "zoo.json"}


def finalize_manifest(folder: Path, manifest: dict, log=print) -> dict:
    """Measure base/individual accuracy and anchors with the shipped files and hash every file."""
    from ..zoo import Zoo, ZooManifest

    canonicalize_adapter_configs(folder)
    measure_tasks(Zoo(folder, ZooManifest.model_validate(manifest)), manifest["tasks"], log=log)
    manifest["files"] = hash_files(folder)
    return manifest


def build_zoo(name: str, out_root: Path, overwrite: bool = False, log=print, **overrides) -> Path:
    if name not in RECIPES:
        from ..zoo import ZooError

        raise ZooError(f"no build recipe for {name!r}; recipes: {', '.join(RECIPES)}")
    target = Path(out_root) / name
    start = time.perf_counter()
    with atomic_dir(target, overwrite=overwrite) as tmp:
        manifest = finalize_manifest(tmp, RECIPES[name](tmp, log, **overrides), log)
        manifest["build"]["total_seconds"] = round(time.perf_counter() - start, 1)
        (tmp / "zoo.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return target
