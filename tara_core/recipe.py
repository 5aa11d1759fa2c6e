"""Merge recipes: one validated document says what to merge and how (as mergekit's YAML configs do).

A recipe (YAML or JSON) names the inputs — a ``zoo``, or a ``base`` and ``adapters`` (folders or Hugging Face ids
in the local cache) — the ``method`` with its ``parameters``, the preference ``rho``, the ``seed`` and the
``output`` format::

    method: ties
    base: openai/clip-vit-base-patch32        # or a folder
    module_prefix: vision_model.
    adapters: [~/knots/cars, ~/knots/dtd]
    parameters: {density: 0.2, lambda: 1.0}
    output: {format: adapter, modules_to_save: keep-separate}

:func:`run_recipe` merges and exports it; ``merge.json`` embeds the **resolved** recipe (every parameter with
its value, paths absolute), so ``tara-studio merge --from merged/merge.json --out again/`` re-runs it bit for
bit. Relative paths in a recipe file are read relative to its folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["RecipeError", "OutputSpec", "MergeRecipe", "load_recipe", "run_recipe"]


class RecipeError(ValueError):
    """A recipe that is unreadable or asks for something contradictory."""


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["adapter", "weights"] = Field("adapter", description="a PEFT LoRA folder, or W0 + ΔW weights")
    rank: int | None = Field(None, ge=1, description="truncation rank of full-rank results (default Σ r_i)")
    modules_to_save: str = Field("keep-separate", description="keep-separate | average | from:<adapter> | drop")


class MergeRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str = Field(description="a registered method (`tara-studio methods`)")
    zoo: str | None = Field(None, description="a zoo name or folder (its base, adapters and task data)")
    base: str | None = Field(None, description="base model folder or cached Hub id")
    adapters: list[str] = Field(default_factory=list, description="PEFT adapter folders or cached Hub ids")
    names: list[str] | None = Field(None, description="task names for the adapters (default: folder names)")
    module_prefix: str = Field("", description="the sub-model the adapters belong to (e.g. vision_model.)")
    parameters: dict[str, Any] = Field(default_factory=dict, description="method parameters")
    rho: list[float] | None = Field(None, description="task preference of a data-driven method")
    seed: int | None = Field(None, description="seed of randomized methods")
    device: str = Field("cpu", description="cpu or cuda")
    output: OutputSpec = Field(default_factory=OutputSpec)

    @model_validator(mode="after")
    def _consistent(self):
        from .methods import get_method

        spec = get_method(self.method)
        if self.zoo and (self.adapters or self.base or self.names):
            raise ValueError("give either a zoo or base/adapters, not both")
        if not self.zoo and not self.adapters:
            raise ValueError("give a zoo, or adapters (and optionally a base)")
        if spec.data_driven and not self.zoo:
            raise ValueError(f"{spec.name} learns from unlabeled task data: give a zoo")
        if self.rho is not None and not spec.data_driven:
            raise ValueError(f"rho only applies to data-driven methods (tara-*, adamerging-*), not {spec.name}")
        if self.names is not None and len(self.names) != len(self.adapters):
            raise ValueError(f"{len(self.names)} names for {len(self.adapters)} adapters")
        if self.output.format == "weights" and not (self.base or self.zoo):
            raise ValueError("output format 'weights' writes W0 + ΔW and needs the base")
        return self


def _absolute(ref: str, folder: Path) -> str:
    """A path made absolute (relative to ``folder``); Hub ids that are not folders stay as they are."""
    from .hub import looks_like_hub_id

    p = Path(ref).expanduser()
    candidate = p if p.is_absolute() else folder / p
    if not candidate.exists() and looks_like_hub_id(ref):
        return ref
    return str(candidate.resolve())


def load_recipe(path: str | Path) -> MergeRecipe:
    """A recipe file (YAML or JSON), or a merge.json whose embedded recipe is re-run."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RecipeError(f"{path}: not a readable YAML/JSON recipe ({type(exc).__name__})") from None
    if isinstance(data, dict) and "recipe" in data and "method" in data and "export" in data:  # a merge.json
        data = data["recipe"]
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping (method, zoo or base/adapters, parameters, ...)")
    try:
        recipe = MergeRecipe.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "recipe"
        raise RecipeError(f"{path}: {where}: {str(first['msg']).removeprefix('Value error, ')}") from None
    folder = path.resolve().parent
    updates = {"adapters": [_absolute(a, folder) for a in recipe.adapters]}
    if recipe.base:
        updates["base"] = _absolute(recipe.base, folder)
    if recipe.zoo and (folder / recipe.zoo / "zoo.json").is_file():
        updates["zoo"] = str((folder / recipe.zoo).resolve())
    return recipe.model_copy(update=updates)


def run_recipe(recipe: MergeRecipe, out: str | Path, overwrite: bool = False,
               progress: Callable[[int, int, dict], None] | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Merge as the recipe says and export to ``out``; returns the manifest written as ``out/merge.json``."""
    from .adapters import load_adapter_set
    from .base import BaseWeights
    from .export import export
    from .hub import HubError, resolve
    from .methods import get_method, merge
    from .provenance import adapter_inputs, base_input, portable_base_id, run_context, zoo_input
    from .safe_io import atomic_dir
    from .zoo import open_zoo

    spec = get_method(recipe.method)
    params = dict(recipe.parameters)
    if recipe.seed is not None and any(p.name == "seed" for p in spec.params):
        params.setdefault("seed", recipe.seed)
    resolved_params = spec.resolve(params)  # bad parameters fail before anything is loaded
    atomic_dir(out, overwrite).check()
    zoo, sources, extra = None, {}, {}
    if recipe.zoo:
        zoo = open_zoo(recipe.zoo, device=recipe.device)
        base, adapters = BaseWeights.from_path(zoo.base_path), zoo.adapters
    else:
        try:
            base = BaseWeights.from_path(recipe.base) if recipe.base else None
            found = [resolve(a, "adapter") for a in recipe.adapters]
        except HubError as exc:
            raise RecipeError(str(exc)) from None
        names = recipe.names or [(s.hub_id.split("/")[-1] if s.hub_id else None) for s in found]
        names = names if any(n is not None for n in names) else None
        if names is not None:
            from .safe_io import sanitize_name

            names = [n or sanitize_name(s.path.name) for n, s in zip(names, found)]
        adapters = load_adapter_set([s.path for s in found], names=names, base=base, module_prefix=recipe.module_prefix)
        sources = dict(zip(adapters.names, found))
    if spec.data_driven:
        from .run import run_method

        result, record = run_method(zoo, spec.name, params, recipe.rho, progress=progress)
        flat = [v.flatten() for v in record.phi.values()]
        import torch

        phi = torch.cat(flat)
        extra = {"rho": record.rho, "zoo": zoo_input(zoo),
                 "coefficients": {"count": int(phi.numel()), "mean": float(phi.mean()), "min": float(phi.min()),
                                  "max": float(phi.max()), "steps_run": record.steps_run, "file": "phi.safetensors"}}
        if "preference_model" in result.info:
            extra["preference_model"] = result.info["preference_model"]
    else:
        if log:
            log(f"merging {len(adapters)} adapters with {spec.name}")
        result = merge(adapters, spec.name, progress=progress, **params)
    resolved = recipe.model_copy(update={"parameters": resolved_params}).model_dump(mode="json")
    manifest = export(result, adapters, out, format=recipe.output.format, rank=recipe.output.rank, base=base,
                      modules_to_save=recipe.output.modules_to_save, overwrite=overwrite,
                      base_id=portable_base_id(adapters, base, zoo),
                      extra_manifest={**extra, "recipe": resolved, "adapters": adapter_inputs(adapters, sources),
                                      "base": base_input(base), "run": run_context()})
    return manifest
