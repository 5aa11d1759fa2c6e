"""``methods`` and ``merge``: list the registered methods; merge adapters and write a PEFT adapter."""
from __future__ import annotations

from .common import (UsageError, console, out, parse_params, parse_rho, phi_summary, positive_int, run_learned,
                     write_json)


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


def _inputs(args):
    """(base weights or None, adapter set) from --zoo or --base/--adapters."""
    from ..adapters import load_adapter_set
    from ..base import BaseWeights
    from ..zoo import open_zoo

    if args.zoo:
        if args.adapters or args.names:
            raise UsageError("give either --zoo or --adapters (with --names), not both")
        zoo = open_zoo(args.zoo)
        return BaseWeights.from_path(zoo.base_path), zoo.adapters
    if not args.adapters:
        raise UsageError("give --zoo NAME or --adapters DIR [DIR ...]")
    base = BaseWeights.from_path(args.base) if args.base else None
    with console.status("loading adapters"):
        return base, load_adapter_set(args.adapters, names=args.names, base=base, module_prefix=args.module_prefix)


def cmd_merge(args) -> int:
    from ..base import BaseWeights
    from ..export import export
    from ..safe_io import atomic_dir, check_output_file
    from ..methods import get_method, merge
    from ..zoo import open_zoo

    spec = get_method(args.method)
    params = parse_params(args.param)
    if args.seed is not None and any(p.name == "seed" for p in spec.params):
        params.setdefault("seed", args.seed)
    spec.resolve(params)  # fail on bad parameters and unwritable outputs before loading anything
    atomic_dir(args.out, args.overwrite).check()
    if args.json:
        check_output_file(args.json)
    rho = parse_rho(args.rho)
    extra = {}
    if spec.data_driven:
        if not args.zoo:
            raise UsageError(f"{spec.name} learns from unlabeled task data: give --zoo NAME")
        zoo = open_zoo(args.zoo, device=args.device)
        base = BaseWeights.from_path(zoo.base_path)
        adapters = zoo.adapters
        result, record = run_learned(zoo, spec.name, params, rho)
        extra = {"rho": record.rho, "coefficients": phi_summary(record)}
        if "preference_model" in result.info:
            extra["preference_model"] = result.info["preference_model"]
    else:
        if rho is not None:
            raise UsageError(f"--rho only applies to data-driven methods (tara-*, adamerging-*), not {spec.name}")
        base, adapters = _inputs(args)
        with console.status(f"merging {len(adapters)} adapters with {spec.name}"):
            result = merge(adapters, spec.name, **params)
    manifest = export(result, adapters, args.out, format=args.format, rank=args.rank, base=base,
                      modules_to_save=args.modules_to_save, overwrite=args.overwrite, extra_manifest=extra)
    if manifest["modules_to_save"].get("warning"):
        console.print(manifest["modules_to_save"]["warning"], style="yellow")
    exp = manifest["export"]
    if not exp.get("exact", True) or exp.get("truncation_relative_error", {}).get("max", 0) > 0:
        err = exp["truncation_relative_error"]
        console.print(f"{spec.name} gives a full-rank ΔW: exported a rank-{exp['max_rank']} LoRA, "
                      f"relative error max {err['max']:.3g}, mean {err['mean']:.3g} "
                      f"(use --rank to change it or --format weights for the exact merged weights)", style="yellow")
    console.print(f"wrote {args.out} ({manifest['format']}, {len(result.deltas)} modules, "
                  f"{result.info.get('seconds', 0.0):.2f} s)")
    write_json(args.json, manifest)
    return 0


def register(sub) -> None:
    p = sub.add_parser("methods", help="list merge methods, parameters, defaults and papers")
    p.add_argument("--json", help="also write the list as JSON to this file")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("merge", help="merge adapters and write a PEFT adapter + merge.json")
    p.add_argument("--zoo", help="a zoo name or folder (its base and adapters)")
    p.add_argument("--base", help="base model folder or checkpoint (validates shapes; needed for --format weights)")
    p.add_argument("--adapters", nargs="+", metavar="DIR", help="PEFT adapter folders")
    p.add_argument("--names", nargs="+", help="task names for the adapters (default: folder names)")
    p.add_argument("--module-prefix", default="",
                   help="with --base: the sub-model the adapters belong to when names fit several (e.g. vision_model.)")
    p.add_argument("--method", required=True, help="a method name (see `methods`)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="method parameter (repeatable)")
    p.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--format", default="adapter", choices=("adapter", "weights"))
    p.add_argument("--rank", type=positive_int, help="truncation rank for full-rank results (default Σ r_i)")
    p.add_argument("--modules-to-save", default="keep-separate",
                   help="keep-separate | average | from:<adapter> | drop")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--seed", type=int, help="seed for randomized methods")
    p.add_argument("--rho", help="task preference for tara-*/adamerging-*, e.g. 0.2,0.8 (normalized)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", help="also write merge.json's content to this file")
    p.set_defaults(func=cmd_merge)
