"""``methods`` and ``merge``: list the registered methods; merge adapters and write a PEFT adapter."""
from __future__ import annotations

from .common import (UsageError, add_command, console, fit_progress, out, parse_params, parse_rho, positive_int,
                     progress_bar, write_json)


def cmd_methods(args) -> int:
    from rich.table import Table

    from ..methods import METHODS

    table = Table(title="Merge methods")
    for col in ("method", "what it does", "parameters (defaults)", "paper"):
        table.add_column(col, overflow="fold")
    rows = []
    for m in METHODS.values():
        params = ", ".join(f"{p.name}={p.default}" for p in m.params) or "—"
        table.add_row(m.name, m.description, params, m.paper)
        rows.append({"method": m.name, "title": m.title, "description": m.description, "paper": m.paper,
                     "data_driven": m.data_driven,
                     "params": [{"name": p.name, "default": p.default, "help": p.help} for p in m.params]})
    out.print(table)
    write_json(args.json, rows)
    return 0


def _recipe(args):
    """The recipe to run: a recipe file, a merge.json (--from), or one built from the flags."""
    from pydantic import ValidationError

    from ..recipe import MergeRecipe, RecipeError, load_recipe

    if args.recipe or args.source:
        if args.zoo or args.adapters or args.base or args.method:
            raise UsageError("a recipe file or --from gives the inputs and the method; drop --zoo/--base/"
                             "--adapters/--method")
        return load_recipe(args.recipe or args.source)
    if not args.method:
        raise UsageError("give --method NAME (or a recipe file, or --from merged/merge.json)")
    try:
        return MergeRecipe(method=args.method, zoo=args.zoo, base=args.base, adapters=args.adapters or [],
                           names=args.names, module_prefix=args.module_prefix, parameters=parse_params(args.param),
                           rho=parse_rho(args.rho), seed=args.seed, device=args.device,
                           output={"format": args.format, "rank": args.rank, "modules_to_save": args.modules_to_save})
    except ValidationError as exc:
        raise RecipeError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None


def cmd_merge(args) -> int:
    from ..methods import get_method
    from ..recipe import run_recipe
    from ..safe_io import atomic_dir, check_output_file

    recipe = _recipe(args)
    spec = get_method(recipe.method)
    spec.resolve(recipe.parameters)  # fail on bad parameters and unwritable outputs before loading anything
    atomic_dir(args.out, args.overwrite).check()
    if args.json:
        check_output_file(args.json)
    if spec.data_driven:
        with fit_progress(recipe.method, recipe.parameters) as progress:
            manifest = run_recipe(recipe, args.out, args.overwrite, progress=progress)
    else:
        with progress_bar(f"merging with {spec.name}", "modules") as progress:
            manifest = run_recipe(recipe, args.out, args.overwrite, progress=progress)
    if manifest["modules_to_save"].get("warning"):
        console.print(manifest["modules_to_save"]["warning"], style="yellow")
    exp = manifest["export"]
    if not exp.get("exact", True):
        err = exp["truncation_relative_error"]
        console.print(f"{spec.name} gives a full-rank ΔW: exported a rank-{exp['max_rank']} LoRA, "
                      f"relative error max {err['max']:.3g}, mean {err['mean']:.3g} "
                      f"(use --rank to change it or --format weights for the exact merged weights)", style="yellow")
    if manifest["format"] == "adapter" and not exp.get("base_model_name_or_path"):
        console.print("the base has no portable Hub id (a local model): adapter_config.json leaves "
                      "base_model_name_or_path empty; load with PeftModel.from_pretrained(base, DIR)", style="yellow")
    console.print(f"wrote {args.out} ({manifest['format']}, {spec.name})")
    write_json(args.json, manifest)
    return 0


def register(sub) -> None:
    p = add_command(sub, "methods", "list merge methods, parameters, defaults and papers",
                    "Every registered merge method with its parameters, their defaults and the paper it follows.",
                    ["methods", "methods --json methods.json"])
    p.add_argument("--json", help="also write the list as JSON to this file")
    p.set_defaults(func=cmd_methods)

    p = add_command(sub, "merge", "merge adapters and write a PEFT adapter + merge.json",
                    "Merge LoRA adapters (folders or cached Hugging Face ids, or a zoo) and write a PEFT adapter folder "
                    "with merge.json (recipe, input hashes, versions) and a model card. The inputs and the method come "
                    "from the flags, from a YAML recipe, or from a previous merge.json (--from).",
                    ["merge --zoo demo-text --method ta --out merged/",
                     "merge --zoo demo-text --method tara-b-pareto --rho 0.5,0.1,0.1,0.1,0.1,0.1 --out merged/",
                     "merge --base BASE --adapters A B --method ties --param density=0.2 --out merged/",
                     "merge recipe.yaml --out merged/",
                     "merge --from merged/merge.json --out again/"])
    p.add_argument("recipe", nargs="?", help="a YAML/JSON merge recipe (instead of the flags below)")
    p.add_argument("--from", dest="source", metavar="MERGE_JSON",
                   help="re-run the recipe a previous merge recorded in its merge.json")
    p.add_argument("--zoo", help="a zoo name or folder (its base and adapters)")
    p.add_argument("--base", help="base model folder or checkpoint (validates shapes; needed for --format weights)")
    p.add_argument("--adapters", nargs="+", metavar="DIR", help="PEFT adapter folders")
    p.add_argument("--names", nargs="+", help="task names for the adapters (default: folder names)")
    p.add_argument("--module-prefix", default="",
                   help="with --base: the sub-model the adapters belong to when names fit several (e.g. vision_model.)")
    p.add_argument("--method", help="a method name (see `methods`)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="method parameter (repeatable)")
    p.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--format", default="adapter", choices=("adapter", "weights"),
                   help="a PEFT LoRA folder, or the merged weights W0 + ΔW (needs the base)")
    p.add_argument("--rank", type=positive_int, help="truncation rank for full-rank results (default Σ r_i)")
    p.add_argument("--modules-to-save", default="keep-separate",
                   help="keep-separate | average | from:<adapter> | drop")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output folder (the old one stays until the new one is complete)")
    p.add_argument("--seed", type=int, help="seed for randomized methods")
    p.add_argument("--rho", help="task preference for tara-*/adamerging-*, e.g. 0.2,0.8 (normalized)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", help="also write merge.json's content to this file")
    p.set_defaults(func=cmd_merge)
