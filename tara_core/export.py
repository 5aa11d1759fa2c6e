"""Write a :class:`~tara_core.methods.MergeResult` as a PEFT LoRA adapter (or as merged weights).

* ``format="adapter"``: a folder ``PeftModel.from_pretrained(base, DIR)`` loads. Factored results are exact
  (per-module rank via ``rank_pattern``; ``lora_alpha`` = rank so PEFT's scale is 1). Dense results (TIES,
  DARE) are truncated by SVD to ``rank`` (default Σ r_i of the module) and the relative Frobenius error
  ‖ΔW − ΔW_k‖/‖ΔW‖ of every module is measured and recorded.
* ``format="weights"``: ``merged_weights.safetensors`` holding W_0 + ΔW for every adapted module under the
  base checkpoint's own keys (load with ``model.load_state_dict(..., strict=False)``); needs the base.

``modules_to_save`` tensors (e.g. classification heads) are never dropped silently: identical across the
adapters → kept in the adapter; different → policy ``keep-separate`` (default) writes each adapter's copy to
``modules_to_save/<adapter>.safetensors``, ``average`` averages them into the adapter, ``from:<adapter>``
takes one adapter's, ``drop`` leaves them out; ``merge.json`` says which.

Writes are atomic: everything goes to a temporary sibling folder that is renamed into place at the end.
"""
from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import save_file

from .adapters import PEFT_PREFIX, AdapterSet
from .base import BaseWeights
from .lowrank import Factors, thin_svd
from .methods import MergeResult
from .safe_io import OutputError, atomic_dir, atomic_file_write, safe_name

__all__ = ["ExportError", "export", "library_versions", "atomic_dir", "atomic_file_write"]


ExportError = OutputError  # the result cannot be written as asked (folder exists, missing base, bad policy, ...)


def library_versions() -> dict[str, str]:
    out = {}
    for pkg in ("tara-studio", "torch", "peft", "transformers", "safetensors", "open_clip_torch"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    from . import __version__

    out["tara_core"] = __version__
    return out


def _truncate(dense: torch.Tensor, rank: int) -> tuple[Factors, float]:
    U, S, Vh = torch.linalg.svd(dense, full_matrices=False)
    k = min(rank, S.shape[0])
    total = float(S.square().sum())
    err = float(S[k:].square().sum()) / total if total > 0 else 0.0
    return Factors(U[:, :k] * S[:k], Vh[:k]), err ** 0.5


def _group_key(module: str) -> str:
    """PEFT gives an MHA's out_proj LoRA the rank of its parent ``attn`` LoRA: they form one group."""
    return module.split(".base_layer.")[0]


def _pad(f: Factors, rank: int) -> Factors:
    extra = rank - f.rank
    if extra <= 0:
        return f
    return Factors(torch.cat([f.B, f.B.new_zeros(f.B.shape[0], extra)], 1),
                   torch.cat([f.A, f.A.new_zeros(extra, f.A.shape[1])], 0))


def _finite(delta) -> bool:
    """ΔW has no NaN/Inf (factored: both factors, and no float32 overflow in B A)."""
    if isinstance(delta, Factors):
        if not (torch.isfinite(delta.B).all() and torch.isfinite(delta.A).all()):
            return False
        bound = float(delta.B.abs().max()) * float(delta.A.abs().max()) * delta.rank if delta.rank else 0.0
        return bound < torch.finfo(torch.float32).max
    return bool(torch.isfinite(delta).all())


def check_finite(result: MergeResult) -> None:
    """Refuse a merge with non-finite values before anything is written (PEFT's ``safe_merge`` idea)."""
    bad = [m for m, d in result.deltas.items() if not _finite(d)]
    bad += [f"coefficients {k}" for k, v in result.coefficients.items() if not torch.isfinite(v).all()]
    if bad:
        raise ExportError(f"the {result.method} merge has NaN/Inf values in {len(bad)} module(s) (first: "
                          f"{bad[0]}); nothing was written — check the parameters and inputs")


def _adapter_tensors(result: MergeResult, adapter_set: AdapterSet, rank: int | None) -> tuple[dict, dict, dict]:
    factors: dict[str, Factors] = {}
    errors: dict[str, float] = {}
    for module, delta in result.deltas.items():
        if isinstance(delta, Factors):
            factors[module] = delta
        else:
            k = rank or adapter_set.total_rank(module)
            factors[module], errors[module] = _truncate(delta, k)
    group_rank: dict[str, int] = {}
    for module, f in factors.items():
        g = _group_key(module)
        group_rank[g] = max(group_rank.get(g, 0), f.rank)
    tensors, ranks = {}, {}
    for module, f in factors.items():
        f = _pad(f, group_rank[_group_key(module)])
        wshape = result.weight_shapes[module]
        A, B = f.A.contiguous(), f.B.contiguous()
        if len(wshape) == 4:  # conv: A (k, in, kh, kw), B (out, k, 1, 1)
            A, B = A.reshape(f.rank, *wshape[1:]), B.reshape(wshape[0], f.rank, 1, 1)
        tensors[f"{PEFT_PREFIX}{module}.lora_A.weight"] = A.float().contiguous()
        tensors[f"{PEFT_PREFIX}{module}.lora_B.weight"] = B.float().contiguous()
        ranks[module] = f.rank
    return tensors, ranks, errors


def _modules_to_save(adapter_set: AdapterSet, policy: str) -> tuple[dict, dict[str, dict], dict]:
    """(tensors for the adapter, per-adapter side files, report) under the chosen policy."""
    owners = [a for a in adapter_set.adapters if a.extra_tensors]
    if not owners:
        return {}, {}, {"policy": policy, "modules_to_save": []}
    keys = sorted(set().union(*(a.extra_tensors for a in owners)))
    names = sorted(set().union(*(a.modules_to_save for a in owners)))
    report = {"policy": policy, "modules_to_save": names, "adapters_with_them": [a.name for a in owners]}
    identical = len(owners) == len(adapter_set.adapters) and all(
        set(a.extra_tensors) == set(keys)
        and all(torch.equal(a.extra_tensors[k], owners[0].extra_tensors[k]) for k in keys)
        for a in owners
    )
    if identical and policy != "drop":
        report["result"] = "identical in every adapter: kept"
        return {f"{PEFT_PREFIX}{k}": owners[0].extra_tensors[k] for k in keys}, {}, report
    if policy == "drop":
        report["result"] = "dropped on request"
        return {}, {}, report
    if policy == "keep-separate":
        report["result"] = "differ between adapters: each adapter's copy written to modules_to_save/<adapter>.safetensors"
        side = {a.name: {f"{PEFT_PREFIX}{k}": v for k, v in a.extra_tensors.items()} for a in owners}
        return {}, side, report
    if policy == "average":
        missing = [a.name for a in adapter_set.adapters if set(a.extra_tensors) != set(keys)]
        if missing:
            raise ExportError(f"cannot average modules_to_save: adapters {missing} lack some of {keys}")
        report["result"] = "averaged over the adapters"
        return {f"{PEFT_PREFIX}{k}": torch.stack([a.extra_tensors[k].float() for a in owners]).mean(0) for k in keys}, {}, report
    if policy.startswith("from:"):
        name = policy[5:]
        chosen = next((a for a in owners if a.name == name), None)
        if chosen is None:
            raise ExportError(f"modules_to_save policy {policy!r}: no adapter named {name!r} with such tensors")
        report["result"] = f"taken from adapter {name}"
        return {f"{PEFT_PREFIX}{k}": v for k, v in chosen.extra_tensors.items()}, {}, report
    raise ExportError(f"unknown modules_to_save policy {policy!r}; use keep-separate, average, from:<adapter> or drop")


def _target_modules(adapter_set: AdapterSet, modules: list[str]):
    targets = [a.config.get("target_modules") for a in adapter_set.adapters]
    if all(isinstance(t, (list, tuple)) for t in targets):
        return sorted(set().union(*map(set, targets)))
    return "(" + "|".join(re.escape(m) for m in modules) + ")"


def _adapter_config(adapter_set: AdapterSet, ranks: dict[str, int], modules_to_save: list[str] | None) -> dict:
    first = adapter_set.adapters[0].config
    r = max(ranks.values())
    pattern = {re.escape(m): k for m, k in ranks.items() if k != r}
    return {
        "peft_type": "LORA",
        "task_type": first.get("task_type"),
        "base_model_name_or_path": first.get("base_model_name_or_path"),
        "r": r,
        "lora_alpha": r,
        "rank_pattern": pattern,
        "alpha_pattern": dict(pattern),
        "target_modules": _target_modules(adapter_set, list(ranks)),
        "lora_dropout": 0.0,
        "fan_in_fan_out": any(adapter_set.fan_in_fan_out.values()),
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": modules_to_save or None,
        "inference_mode": True,
        "init_lora_weights": True,
    }


def export(
    result: MergeResult,
    adapter_set: AdapterSet,
    out_dir: str | Path,
    *,
    format: str = "adapter",
    rank: int | None = None,
    base: BaseWeights | None = None,
    modules_to_save: str = "keep-separate",
    overwrite: bool = False,
    extra_manifest: dict | None = None,
) -> dict:
    """Write ``result`` to ``out_dir`` atomically and return the manifest written as ``merge.json``.

    Args:
        result: the merge to write.
        adapter_set: the adapters it came from (configs, ranks, modules_to_save).
        out_dir: the folder to create (must not exist unless ``overwrite``).
        format: ``"adapter"`` (PEFT LoRA folder) or ``"weights"`` (merged weights; needs ``base``).
        rank: truncation rank for dense results in ``adapter`` format (default Σ r_i per module).
        base: the base weights (needed for ``weights``).
        modules_to_save: policy for non-LoRA tensors (module docstring).
        overwrite: replace an existing ``out_dir``.
        extra_manifest: more provenance for ``merge.json`` (ρ, learned-coefficient summaries...).
    """
    if format not in ("adapter", "weights"):
        raise ExportError(f"unknown export format {format!r}; use 'adapter' or 'weights'")
    if format == "weights" and base is None:
        raise ExportError("format 'weights' writes W0 + ΔW and needs the base model (--base)")
    if rank is not None and rank < 1:
        raise ExportError(f"rank must be ≥ 1, got {rank}")
    manifest = {
        "method": result.method,
        "params": result.params,
        "seed": result.params.get("seed"),
        "adapters": [
            {"name": a.name, "path": str(a.path), "sha256": a.sha256} for a in adapter_set.adapters
        ],
        "library_versions": library_versions(),
        "format": format,
    }
    manifest.update(extra_manifest or {})
    for key, value in result.info.items():
        manifest.setdefault("info", {})[key] = value
    check_finite(result)
    mts_tensors, side_files, mts_report = _modules_to_save(adapter_set, modules_to_save)
    manifest["modules_to_save"] = mts_report
    with atomic_dir(out_dir, overwrite) as tmp:
        if format == "adapter":
            tensors, ranks, errors = _adapter_tensors(result, adapter_set, rank)
            tensors.update(mts_tensors)
            kept = mts_report["modules_to_save"] if mts_tensors else None
            config = _adapter_config(adapter_set, ranks, kept)
            save_file(tensors, str(tmp / "adapter_model.safetensors"))
            (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2))
            manifest["export"] = {
                "exact": not errors,
                "max_rank": max(ranks.values()),
                "truncation_relative_error": {
                    "max": max(errors.values()) if errors else 0.0,
                    "mean": sum(errors.values()) / len(errors) if errors else 0.0,
                    "per_module": errors,
                },
            }
        else:
            weights = {}
            for module in result.deltas:
                key = base.key_for(module)
                w0 = base.weight(module).float()
                delta = result.dense(module).reshape(result.weight_shapes[module])
                if result.fan_in_fan_out.get(module):
                    delta = delta.T
                weights[key] = (w0 + delta.reshape(w0.shape)).contiguous()
            save_file(weights, str(tmp / "merged_weights.safetensors"))
            manifest["export"] = {"exact": True, "keys": len(weights)}
        if side_files:
            (tmp / "modules_to_save").mkdir()
            for name, tensors in side_files.items():
                safe_name(name, "adapter name")
                save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "modules_to_save" / f"{name}.safetensors"))
        if result.coefficients:
            save_file({k: v.detach().float().contiguous() for k, v in result.coefficients.items()},
                      str(tmp / "phi.safetensors"))
        (tmp / "merge.json").write_text(json.dumps(manifest, indent=2, default=_json_default))
    return manifest


def _json_default(obj):
    if torch.is_tensor(obj):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
