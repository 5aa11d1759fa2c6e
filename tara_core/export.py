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
from .lowrank import Factors
from .methods import MergeResult
from .provenance import adapter_inputs
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
        if adapter_set.adapters[0].config.get("task_type") == "SEQ_CLS":
            # PEFT's sequence classifier always loads a head from the adapter: ship the first adapter's, say so
            first = owners[0]
            report["result"] += f"; the adapter itself carries {first.name}'s copy (PEFT loads one head)"
            report["warning"] = (f"the adapters' classifier heads differ: the merged adapter loads with "
                                 f"{first.name}'s head, and every adapter's own head is in "
                                 "modules_to_save/<adapter>.safetensors; pick one with --modules-to-save "
                                 "from:<adapter>, or average | drop")
            return {f"{PEFT_PREFIX}{k}": v for k, v in first.extra_tensors.items()}, side, report
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


def _adapter_config(adapter_set: AdapterSet, ranks: dict[str, int], modules_to_save: list[str] | None,
                    base_id: str | None):
    """PEFT's own :class:`~peft.LoraConfig` for the merged adapter: the first adapter's task type and revision,
    the merged ranks (per module via ``rank_pattern``; ``lora_alpha`` = rank so every scale is 1), no rsLoRA,
    DoRA or dropout, and ``base_model_name_or_path`` = the base's portable Hub id (never a local path)."""
    from peft import LoraConfig

    first = adapter_set.adapters[0].config
    r = max(ranks.values())
    pattern = {re.escape(m): k for m, k in ranks.items() if k != r}
    return LoraConfig(
        task_type=first.get("task_type"),
        revision=first.get("revision"),
        base_model_name_or_path=base_id,
        r=r,
        lora_alpha=r,
        rank_pattern=pattern,
        alpha_pattern=dict(pattern),
        target_modules=_target_modules(adapter_set, list(ranks)),
        lora_dropout=0.0,
        fan_in_fan_out=any(adapter_set.fan_in_fan_out.values()),
        bias="none",
        use_rslora=False,
        use_dora=False,
        modules_to_save=modules_to_save or None,
        inference_mode=True,
        init_lora_weights=True,
    )


CARD = """---
{card_data}
---

# {title}

A LoRA adapter merged by [TARA Studio](https://arxiv.org/abs/2603.26299) with **{method}** from {n} adapters
({names}). Load it with PEFT: `PeftModel.from_pretrained(base, "<this folder>")`{auto}.

| | |
|---|---|
| method | {method} — {method_title} |
| parameters | {params} |
| preference ρ | {rho} |
| seed | {seed} |
| rank | {rank} |
| truncation | {truncation} |
| base | {base} |

## Inputs

{inputs}

`merge.json` next to this card records every input's SHA-256, the exact recipe and the library versions;
`tara-studio merge --from merge.json --out DIR` re-runs it.
"""


def _model_card(manifest: dict, config, result: MergeResult) -> str:
    """README.md through huggingface_hub's ModelCard (its metadata header is what the Hub indexes)."""
    from huggingface_hub import ModelCard, ModelCardData

    from .methods import get_method

    exp = manifest.get("export", {})
    err = exp.get("truncation_relative_error", {})
    truncation = ("exact (factored, no truncation)" if exp.get("exact", True)
                  else f"SVD to rank ≤ {exp.get('max_rank')}: relative Frobenius error max {err.get('max', 0):.3g}, "
                       f"mean {err.get('mean', 0):.3g}")
    data = ModelCardData(library_name="peft", base_model=config.base_model_name_or_path,
                         tags=["lora", "model-merging", "tara-studio", result.method])
    params = {k: v for k, v in result.params.items() if k != "rho" and v is not None}
    text = CARD.format(
        card_data=data.to_yaml(), title=f"{result.method} merge of {len(result.adapter_names)} LoRA adapters",
        method=result.method, method_title=get_method(result.method).title, n=len(result.adapter_names),
        names=", ".join(result.adapter_names),
        auto=(" or `AutoPeftModel.from_pretrained(\"<this folder>\")`" if config.base_model_name_or_path else ""),
        params=", ".join(f"{k}={v}" for k, v in params.items()) or "defaults",
        rho=", ".join(f"{r:.3g}" for r in manifest["rho"]) if manifest.get("rho") else "— (not used by this method)",
        seed=manifest.get("seed"), rank=exp.get("max_rank", "—"), truncation=truncation,
        base=config.base_model_name_or_path or "(a local model: no portable id; see merge.json)",
        inputs="\n".join(f"- `{a['name']}`: {a.get('hub_id') or a['path']} (weights {a['sha256'][:12]}…)"
                         for a in manifest["adapters"]))
    return str(ModelCard(text))


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
    base_id: str | None = None,
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
        base_id: the base's portable Hub id for ``base_model_name_or_path`` (:func:`~tara_core.provenance.portable_base_id`).
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
        "adapters": adapter_inputs(adapter_set),
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
            config = _adapter_config(adapter_set, ranks, kept, base_id)
            save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
            config.save_pretrained(str(tmp))  # PEFT's own writer (it records peft_version)
            manifest["export"] = {
                "exact": not errors,
                "max_rank": max(ranks.values()),
                "base_model_name_or_path": base_id,
                "truncation_relative_error": {
                    "max": max(errors.values()) if errors else 0.0,
                    "mean": sum(errors.values()) / len(errors) if errors else 0.0,
                    "per_module": errors,
                },
            }
            (tmp / "README.md").write_text(_model_card(manifest, config, result))
        else:
            weights = {}
            for module in result.deltas:
                key = base.key_for(module)
                w0 = base.weight(module).float()
                delta = result.dense(module).reshape(result.weight_shapes[module])
                if result.fan_in_fan_out.get(module):
                    delta = delta.T
                weights[key] = (w0 + delta.reshape(w0.shape)).contiguous()
            save_file(weights, str(tmp / "merged_weights.safetensors"), metadata={"format": "pt"})
            manifest["export"] = {"exact": True, "keys": len(weights)}
        if side_files:
            (tmp / "modules_to_save").mkdir()
            for name, tensors in side_files.items():
                safe_name(name, "adapter name")
                save_file({k: v.contiguous() for k, v in tensors.items()},
                          str(tmp / "modules_to_save" / f"{name}.safetensors"), metadata={"format": "pt"})
        if result.coefficients:
            save_file({k: v.detach().float().contiguous() for k, v in result.coefficients.items()},
                      str(tmp / "phi.safetensors"), metadata={"format": "pt", "method": result.method})
        (tmp / "merge.json").write_text(json.dumps(manifest, indent=2, default=_json_default))
    return manifest


def _json_default(obj):
    if torch.is_tensor(obj):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
