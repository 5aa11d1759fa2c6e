"""Build the OSRM variant of a demo zoo: the same tasks, heads, data, ranks, steps and seeds, but every LoRA A
initialized by OSRM (:mod:`tara_core.osrm`) from the other tasks' input second moments before fine-tuning.
With ``freeze_A``, fine-tuning trains B alone, so each A stays in the subspace OSRM chose (``<name>-osrm-frozen``).

The result is a complete zoo (``<name>-osrm``) so every command, merge method and dashboard page works on it
unchanged, and standard vs OSRM adapters can be compared with no training. Second moments are collected on
the unlabeled val split (``samples`` per task), which is what a merging user has.

:func:`retrain_zoo` is the twin builder both use; :func:`build_shared_init_zoo` is its other client: every task
fine-tuned from one shared random A, the setting under which real zoos' atoms overlap (issue 19's coverage study).
"""
from __future__ import annotations

import importlib
import json
import shutil
import time
from pathlib import Path

from ..export import atomic_dir
from ..osrm import collect_second_moments, osrm_init, pooled_moment

__all__ = ["build_osrm_zoo", "build_shared_init_zoo", "osrm_zoo_name", "retrain_zoo", "peft_initial_A",
           "osrm_initial_A"]


def _task_lora_config(zoo, t: int, cfg: dict) -> dict:
    """The recipe's config with task t's own LoRA rank, alpha and targets (as its standard adapter has them)."""
    adapter = zoo.adapters.adapters[t]
    ranks = set(adapter.ranks.values())
    if len(ranks) != 1:
        raise ValueError(f"{adapter.name}: OSRM rebuild needs one rank for every module, got {sorted(ranks)}")
    targets = adapter.config.get("target_modules") or cfg["target_modules"]
    return {**cfg, "r": ranks.pop(), "alpha": adapter.config.get("lora_alpha", cfg.get("alpha")),
            "target_modules": sorted(targets) if isinstance(targets, (list, set)) else targets}


# what a zoo computed from its adapters: a twin with new adapters must not inherit them (its first views
# would show the original adapters' numbers under the same keys); `zoo precompute` computes the twin's own
ADAPTER_RESULTS = ("results", "preference")


def osrm_zoo_name(zoo_name: str, freeze_A: bool = False) -> str:
    """The OSRM twin's name: ``<zoo>-osrm``, or ``<zoo>-osrm-frozen`` when A is kept at OSRM's initialization."""
    return f"{zoo_name}-osrm{'-frozen' if freeze_A else ''}"


def build_osrm_zoo(zoo_name: str, out_root: Path, samples: int = 48, overwrite: bool = False, log=print,
                   freeze_A: bool = False) -> Path:
    from ..zoo import open_zoo

    zoo = open_zoo(zoo_name)
    modules = zoo.adapters.module_names
    start = time.perf_counter()
    moments = [collect_second_moments(zoo.backbone, data.val[:samples], modules) for data in zoo.data]
    collect_s = time.perf_counter() - start
    log(f"second moments of {len(modules)} modules × {len(moments)} tasks in {collect_s:.1f} s")
    cfg = dict(zoo.manifest.build["config"])

    def osrm_A(t: int) -> dict:
        others = [k for k in range(len(moments)) if k != t]
        r = _task_lora_config(zoo, t, cfg)["r"]
        return {m: osrm_init(pooled_moment([moments[k][m] for k in others]), r).float() for m in modules}

    return retrain_zoo(zoo, osrm_zoo_name(zoo.name, freeze_A), out_root, osrm_A, freeze_A,
                       "OSRM-initialized adapters (same tasks, ranks, seeds)",
                       {"osrm": {"from": zoo.name, "samples_per_task": samples, "split": "val (unlabeled)",
                                 "collect_seconds": round(collect_s, 1), "freeze_A": freeze_A}},
                       overwrite=overwrite, log=log, start=start)


def build_shared_init_zoo(zoo_name: str, out_root: Path, overwrite: bool = False, log=print) -> Path:
    """The zoo's adapters re-trained from one shared A initialization, as practitioners who reuse a seed get
    them: PEFT's random A of the highest-rank task (its seed), each task taking its first r_t rows; data order
    and everything else as the recipe. ``<zoo>-shared-init``."""
    from ..zoo import open_zoo

    zoo = open_zoo(zoo_name)
    cfg = dict(zoo.manifest.build["config"])
    ranks = [_task_lora_config(zoo, t, cfg)["r"] for t in range(len(zoo.task_names))]
    source = max(range(len(ranks)), key=ranks.__getitem__)
    shared = {m: A.float() for m, A in peft_initial_A(zoo, source, cfg).items()}
    return retrain_zoo(zoo, f"{zoo.name}-shared-init", out_root, lambda t: {m: A[:ranks[t]] for m, A in shared.items()},
                       False, "Adapters re-trained from one shared A initialization (same tasks, ranks, data order)",
                       {"shared_init": {"from": zoo.name, "seed": cfg["seed"] + 100 + source}},
                       overwrite=overwrite, log=log)


def build_rank_zoo(zoo_name: str, out_root: Path, rank: int, overwrite: bool = False, log=print) -> Path:
    """The zoo's adapters re-trained at LoRA rank ``rank`` from PEFT's own initialization (the recipe's seeds,
    data order and steps; α scaled with the rank, so α / r and the update's scale stay the recipe's):
    ``<zoo>-r<rank>``, the adapter-rank factor of the fidelity study."""
    from ..zoo import open_zoo

    zoo = open_zoo(zoo_name)
    return retrain_zoo(zoo, f"{zoo.name}-r{rank}", out_root, lambda t: {}, False,
                       f"Adapters re-trained at rank {rank} (α / r kept)", {"rank": {"from": zoo.name, "r": rank}},
                       overwrite=overwrite, log=log, rank=rank)


def retrain_zoo(zoo, name: str, out_root: Path, initial_A, freeze_A: bool, note: str, build_info: dict,
                overwrite: bool = False, log=print, start: float | None = None, rank: int | None = None) -> Path:
    """A twin of ``zoo`` whose adapters are fine-tuned again by its recipe (same tasks, heads, data, ranks, steps
    and seeds) from ``initial_A(t)`` ({module: r × d_in}; empty: PEFT's initialization) for task t; B starts at 0.
    ``rank``: every adapter at this rank instead, α scaled by rank / r. A complete, sealed zoo."""
    from . import finalize_manifest
    from ..zoo import write_manifest

    start = time.perf_counter() if start is None else start
    build = zoo.manifest.build
    recipe = importlib.import_module(build["recipe"])
    cfg = dict(build["config"])
    target = Path(out_root) / name
    with atomic_dir(target, overwrite=overwrite) as tmp:
        for item in zoo.folder.iterdir():  # heads, data and an in-zoo base are shared as they are
            if item.name in ("adapters", "zoo.json") + ADAPTER_RESULTS:
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        (tmp / "adapters").mkdir()
        manifest = json.loads(zoo.manifest.model_dump_json())
        for t, task in enumerate(zoo.manifest.tasks):
            t0 = time.perf_counter()
            task_cfg = _task_lora_config(zoo, t, cfg)
            if rank is not None:
                alpha = task_cfg["alpha"] * rank / task_cfg["r"]
                task_cfg = {**task_cfg, "r": rank, "alpha": int(alpha) if alpha == int(alpha) else alpha}
            init_A = initial_A(t)
            inputs, labels, _, (train, _, _) = recipe.task_split(t, cfg)
            train_inputs = inputs[train] if hasattr(inputs, "shape") else [inputs[i] for i in train]
            train_labels = (labels[train].tolist() if hasattr(labels, "shape") else [labels[i] for i in train])
            log(f"[{task.name}] A of {len(init_A)} modules set; fine-tuning {'B alone' if freeze_A else 'A and B'}"
                f" on {len(train)} examples")
            model = recipe.finetune_lora(zoo.backbone, zoo.heads[t].weight, train_inputs, train_labels, task_cfg,
                                         seed=cfg["seed"] + 100 + t, log=log, init_A=init_A, freeze_A=freeze_A)
            model.save_pretrained(tmp / "adapters" / task.name)
            log(f"[{task.name}] done in {time.perf_counter() - t0:.0f} s")
        manifest["name"] = name
        manifest["description"] = f"{zoo.manifest.description} {note}" + (", A frozen during fine-tuning." if freeze_A
                                                                          else ".")
        manifest["build"] = {"recipe": build["recipe"], "config": cfg, **build_info}
        if rank is not None:  # the recipe-level record, scaled as each task's was
            lora = manifest["lora"]
            if "lora_alpha" in lora and lora.get("r"):
                lora["lora_alpha"] = lora["lora_alpha"] * rank / lora["r"]
            lora["r"] = rank
        for task in manifest["tasks"]:
            for k in ("individual_accuracy", "anchor_entropy"):
                task[k] = None
        manifest = finalize_manifest(tmp, manifest, log)
        manifest["build"]["total_seconds"] = round(time.perf_counter() - start, 1)
        write_manifest(tmp, manifest)
    return target


def peft_initial_A(zoo, t: int, cfg: dict) -> dict:
    """Task t's A before fine-tuning as PEFT initializes it, regenerated from the recipe's seed (per module)."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    task_cfg = _task_lora_config(zoo, t, cfg)
    torch.manual_seed(cfg["seed"] + 100 + t)  # as finetune_lora does before creating the PEFT model
    model = get_peft_model(copy.deepcopy(zoo.backbone.model),
                           LoraConfig(r=task_cfg["r"], lora_alpha=task_cfg["alpha"],
                                      target_modules=task_cfg["target_modules"], lora_dropout=0.0))
    return {m: model.base_model.model.get_submodule(m).lora_A["default"].weight.detach().double()
            for m in zoo.adapters.module_names}


def osrm_initial_A(zoo, t: int, cfg: dict, moments) -> dict:
    """Task t's A before fine-tuning as OSRM initializes it: the smallest-eigenvalue eigenvectors of the other
    tasks' pooled input second moments ``moments`` (one per task and module), per module."""
    others = [k for k in range(len(moments)) if k != t]
    r = _task_lora_config(zoo, t, cfg)["r"]
    return {m: osrm_init(pooled_moment([moments[k][m] for k in others]), r) for m in zoo.adapters.module_names}


def interference_report(standard, osrm, samples: int = 48, label: str = "osrm"):
    """Input interference before/after fine-tuning and output interference after, standard vs OSRM adapters
    (one row per adapter task t, data task j ≠ t, module, variant, stage); moments from the val split.
    ``standard``/``osrm``: zoo names, folders or opened zoos; ``label`` names the OSRM zoo's rows."""
    import pandas as pd

    from ..diagnostics import split_module_name
    from ..osrm import input_interference, interference_table
    from ..zoo import open_zoo

    def opened(z):
        return z if hasattr(z, "manifest") else open_zoo(z)

    frames = []
    std_zoo = opened(standard)
    moments = [collect_second_moments(std_zoo.backbone, d.val[:samples], std_zoo.adapters.module_names)
               for d in std_zoo.data]
    for variant, ref in (("standard", std_zoo), (label, osrm)):
        zoo = opened(ref)
        after = interference_table(zoo.adapters, moments, variant).assign(stage="after fine-tuning")
        frames.append(after)
        cfg = zoo.manifest.build["config"]
        rows = []
        for t in range(len(zoo.task_names)):
            init = peft_initial_A(zoo, t, cfg) if variant == "standard" else osrm_initial_A(zoo, t, cfg, moments)
            for j in range(len(zoo.task_names)):
                if j == t:
                    continue
                for m, A in init.items():
                    layer, mtype = split_module_name(m)
                    rows.append({"adapters": variant, "module_path": m, "layer": layer, "module": mtype,
                                 "adapter_task": zoo.task_names[t], "data_task": zoo.task_names[j],
                                 "input_interference": input_interference(A, moments[j][m].S),
                                 "output_interference": float("nan"), "stage": "initialization"})
        frames.append(pd.DataFrame(rows))
    return pd.concat(frames, ignore_index=True)


__all__ += ["interference_report"]
