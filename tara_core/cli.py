"""``python -m tara_core``: the command-line front end (thin: parse, call the library, print).

Every error a user can cause (bad adapters, unknown methods or parameters, existing output folders) is
reported as one line on stderr with exit status 2; progress goes to stderr, results to stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .adapters import AdapterError, load_adapter_set
from .base import BaseWeights
from .export import ExportError, export
from .methods import METHODS, MergeError, get_method, merge

console = Console(stderr=True, soft_wrap=True)
out = Console()


class UsageError(ValueError):
    pass


def parse_params(items: list[str] | None) -> dict:
    params = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--param expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        params[key.strip()] = value.strip()
    return params


def _write_json(path: str | None, payload) -> None:
    if path:
        from .export import atomic_file_write

        atomic_file_write(Path(path), json.dumps(payload, indent=2, default=str))


# ---- subcommands --------------------------------------------------------------------------------------
def cmd_methods(args) -> int:
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
    _write_json(args.json, rows)
    return 0


def cmd_merge(args) -> int:
    spec = get_method(args.method)
    params = parse_params(args.param)
    spec.resolve(params)  # fail on bad parameters before loading anything
    if Path(args.out).exists() and not args.overwrite:
        raise ExportError(f"{args.out} already exists; choose another folder or pass --overwrite")
    if args.seed is not None and any(p.name == "seed" for p in spec.params):
        params.setdefault("seed", args.seed)
    base = BaseWeights.from_path(args.base) if args.base else None
    with console.status("loading adapters"):
        adapters = load_adapter_set(args.adapters, names=args.names, base=base)
    with console.status(f"merging {len(adapters)} adapters with {spec.name}"):
        result = merge(adapters, spec.name, **params)
    manifest = export(result, adapters, args.out, format=args.format, rank=args.rank, base=base,
                      modules_to_save=args.modules_to_save, overwrite=args.overwrite)
    exp = manifest["export"]
    if not exp.get("exact", True) or exp.get("truncation_relative_error", {}).get("max", 0) > 0:
        err = exp["truncation_relative_error"]
        console.print(f"[yellow]{spec.name} gives a full-rank ΔW: exported a rank-{exp['max_rank']} LoRA, "
                      f"relative error max {err['max']:.3g}, mean {err['mean']:.3g} "
                      f"(use --rank to change it or --format weights for the exact merged weights)[/]")
    console.print(f"wrote {args.out} ({manifest['format']}, {len(result.deltas)} modules, "
                  f"{result.info['seconds']:.2f} s)")
    _write_json(args.json, manifest)
    return 0


# ---- parser -------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tara_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("methods", help="list merge methods, parameters, defaults and papers")
    p.add_argument("--json", help="also write the list as JSON to this file")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("merge", help="merge adapters and write a PEFT adapter + merge.json")
    p.add_argument("--base", help="base model folder or checkpoint (validates shapes; needed for --format weights)")
    p.add_argument("--adapters", nargs="+", required=True, metavar="DIR", help="PEFT adapter folders")
    p.add_argument("--names", nargs="+", help="task names for the adapters (default: folder names)")
    p.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="method parameter (repeatable)")
    p.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--format", default="adapter", choices=("adapter", "weights"))
    p.add_argument("--rank", type=int, help="truncation rank for full-rank results (default Σ r_i)")
    p.add_argument("--modules-to-save", default="keep-separate",
                   help="keep-separate | average | from:<adapter> | drop")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--seed", type=int, help="seed for randomized methods")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", help="also write merge.json's content to this file")
    p.set_defaults(func=cmd_merge)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (AdapterError, MergeError, ExportError, UsageError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
