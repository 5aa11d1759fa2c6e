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

__all__ = ["RECIPES", "build_zoo", "canonicalize_adapter_configs", "finalize_manifest", "measure_tasks", "hash_files",
           "precompute_zoo", "PREFERENCE_VARIANTS"]

PREFERENCE_VARIANTS = ("tara-b",)  # the Merge page's default; tara-a-pareto is fitted on first use


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
    """{path relative to ``folder``: SHA-256} of every file under it but ``zoo.json`` and hidden ones (as
    :meth:`tara_core.zoo.Zoo.verify_hashes` ignores them)."""
    from ..adapters import file_sha256

    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "zoo.json"
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


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
    from ..zoo import write_manifest

    start = time.perf_counter()
    with atomic_dir(target, overwrite=overwrite) as tmp:
        manifest = finalize_manifest(tmp, RECIPES[name](tmp, log, **overrides), log)
        manifest["build"]["total_seconds"] = round(time.perf_counter() - start, 1)
        manifest = write_manifest(tmp, manifest)
    return target


def _adopt_cached_fit(cached: Path, shipped: Path, fingerprint: str) -> bool:
    """Copy a cached fit of a zoo's full task set at the default settings into the zoo (a fit the dashboard or the
    CLI already paid for), after verifying it; False when there is none or it does not verify."""
    from ..export import atomic_file_write
    from ..methods.learned import PreferenceConfig
    from ..preference import PreferenceError, load_model

    if not cached.with_suffix(".json").is_file():
        return False
    try:
        load_model(cached, {"fingerprint": fingerprint, "settings": PreferenceConfig().fit_fields()})
    except PreferenceError:
        return False
    for suffix in (".safetensors", ".json"):  # the record last, as save_model writes them
        atomic_file_write(shipped.with_suffix(suffix), cached.with_suffix(suffix).read_bytes())
    return True


def precompute_zoo(folder: Path, log=print, variants=PREFERENCE_VARIANTS, refit: bool = False) -> list[str]:
    """The last step of a zoo build: fit the preference models of its full task set (``preference/``, default
    settings; kept when already fitted on these exact files unless ``refit``), compute every dashboard page's
    first view (``results/``, :func:`tara_core.firstview.precompute`) and re-hash the files into zoo.json
    (written atomically). A zoo ``X`` with an ``X-osrm`` twin beside it also gets the OSRM page's report.
    One run per zoo at a time: a second one is refused at once (:func:`tara_core.safe_io.exclusive`)."""
    from ..safe_io import exclusive

    with exclusive(Path(folder), "zoo"):
        return _precompute_zoo(Path(folder), log, variants, refit)


def _precompute_zoo(folder: Path, log, variants, refit: bool) -> list[str]:
    import shutil

    from ..firstview import precompute
    from ..methods.learned import PreferenceConfig
    from ..optimize import MergeData
    from ..preference import (PreferenceError, cache_path, fit_preference_model, load_model, save_model, shipped_path,
                              zoo_fingerprint)
    from ..zoo import ZooError, open_zoo, write_manifest

    folder = Path(folder)
    zoo = open_zoo(folder, check_hashes=False, require_digest=False)  # (re)sealed below
    bad = [f for f in zoo.verify_hashes() if not f.startswith(("preference/", "results/"))]
    if bad:  # the inputs must be intact before anything is derived from them (derived files are redone)
        raise ZooError(f"zoo {zoo.name}: files changed or missing since it was built: {', '.join(bad[:5])}")
    fingerprint = zoo_fingerprint(zoo)
    for variant in variants:
        path = shipped_path(zoo, variant)
        if not refit and path.with_suffix(".json").is_file():
            try:
                load_model(path, {"fingerprint": fingerprint, "settings": PreferenceConfig().fit_fields()})
                log(f"{zoo.name}: the {variant} preference model is up to date")
                continue
            except PreferenceError as exc:
                log(f"{zoo.name}: refitting the {variant} preference model ({exc})")
        cached = cache_path(zoo, variant, zoo.task_names, PreferenceConfig(), fingerprint)
        if not refit and _adopt_cached_fit(cached, path, fingerprint):
            log(f"{zoo.name}: the {variant} preference model is the cached fit {cached.name} (same files and settings)")
            continue
        start = time.perf_counter()
        model = fit_preference_model(
            MergeData.from_zoo(zoo), zoo.adapters, variant, PreferenceConfig(),
            progress=lambda s, t, r: log(f"{zoo.name} {variant} preference model: step {s}/{t}, loss {r['loss']:.4f}")
            if s % 50 == 0 or s == t else None)
        save_model(model, path, fingerprint=fingerprint, zoo=zoo.name)
        log(f"{zoo.name}: fitted the {variant} preference model in {time.perf_counter() - start:.0f} s")
    # the first views are computed beside the shipped ones (a hidden folder, which hash checks ignore) and
    # swapped in at the end, so a server reading this zoo sees the old set or the new one, never a half-written
    # mix; a shipped result still listed in zoo.json was computed from these same input files, and one whose key
    # is unchanged (a refit changes the keys of everything that reads the model) is kept instead of recomputed
    staging, retired = folder / ".results-new", folder / ".results-old"
    for stale in (staging, retired):
        shutil.rmtree(stale, ignore_errors=True)
    staging.mkdir()
    sealed = json.loads((folder / "zoo.json").read_text()).get("files", {})
    for path in sorted((folder / "results").glob("*.json")):
        if f"results/{path.name}" in sealed:
            shutil.copy2(path, staging / path.name)
    twin_dir = folder.parent / f"{zoo.name}-osrm"
    twin = open_zoo(twin_dir) if (twin_dir / "zoo.json").is_file() else None
    kept = {p.name for p in staging.glob("*.json")}
    written = precompute(zoo, log, osrm_pair=zoo.name.endswith("-osrm") or twin is not None, osrm_twin=twin,
                         folder=staging)
    used = {Path(w).name for w in written}
    for name in kept - used:
        (staging / name).unlink()  # a result no first view asks for any more (e.g. the previous model's)
    log(f"{zoo.name}: {len(used)} first-view results ({len(kept & used)} kept, {len(used - kept)} computed, "
        f"{len(kept - used)} dropped)")
    if (folder / "results").exists():
        (folder / "results").rename(retired)
    staging.rename(folder / "results")
    shutil.rmtree(retired, ignore_errors=True)
    manifest = json.loads((folder / "zoo.json").read_text())
    manifest["files"] = hash_files(folder)
    write_manifest(folder, manifest)
    return written

