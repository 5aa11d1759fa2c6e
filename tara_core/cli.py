"""``python -m tara_core``: the command-line front end (thin: parse, call the library, print).

Every error a user can cause (bad adapters, unknown methods or parameters, existing output folders) is
reported as one line on stderr with exit status 2; progress goes to stderr, results to stdout.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .adapters import AdapterError, load_adapter_set
from .base import BaseWeights
from .export import ExportError, export
from .methods import METHODS, MergeError, get_method, merge
from .objective import ObjectiveError
from .zoo import ZooError, list_zoos, open_zoo

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
    if args.seed is not None and any(p.name == "seed" for p in spec.params):
        params.setdefault("seed", args.seed)
    spec.resolve(params)  # fail on bad parameters before loading anything
    if Path(args.out).exists() and not args.overwrite:
        raise ExportError(f"{args.out} already exists; choose another folder or pass --overwrite")
    rho = parse_rho(args.rho)
    extra = {}
    if spec.data_driven:
        if not args.zoo:
            raise UsageError(f"{spec.name} learns from unlabeled task data: give --zoo NAME")
        zoo = open_zoo(args.zoo, device=args.device)
        base = BaseWeights.from_path(zoo.base_path)
        adapters = zoo.adapters
        result, record = _run_learned(zoo, spec.name, params, rho)
        extra = {"rho": record.rho, "coefficients": _phi_summary(record)}
    else:
        if rho is not None:
            raise UsageError(f"--rho only applies to data-driven methods (tara-a, tara-b, adamerging-*), not {spec.name}")
        base, adapters = _inputs(args)
        with console.status(f"merging {len(adapters)} adapters with {spec.name}"):
            result = merge(adapters, spec.name, **params)
    manifest = export(result, adapters, args.out, format=args.format, rank=args.rank, base=base,
                      modules_to_save=args.modules_to_save, overwrite=args.overwrite, extra_manifest=extra)
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


def parse_rho(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--rho expects comma-separated numbers, got {text!r}") from None


def _phi_summary(record) -> dict:
    import torch

    flat = torch.cat([v.flatten() for v in record.phi.values()])
    return {"count": int(flat.numel()), "mean": float(flat.mean()), "std": float(flat.std()) if flat.numel() > 1 else 0.0,
            "min": float(flat.min()), "max": float(flat.max()), "steps_run": record.steps_run,
            "final_losses": record.final_losses(), "file": "phi.safetensors"}


def _run_learned(zoo, method: str, params: dict, rho, tasks=None):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from .run import run_method

    with Progress(TextColumn(f"{method}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                  TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), console=console) as bar:
        job = bar.add_task(method, total=get_method(method).resolve(params)["steps"], loss=float("nan"))
        result, record = run_method(zoo, method, params, rho, tasks,
                                    progress=lambda s, t, losses: bar.update(job, completed=s, loss=losses["loss"]))
    return result, record


def _inputs(args):
    """(base weights or None, adapter set) from --zoo or --base/--adapters."""
    if args.zoo:
        if args.adapters:
            raise UsageError("give either --zoo or --adapters, not both")
        zoo = open_zoo(args.zoo)
        return BaseWeights.from_path(zoo.base_path), zoo.adapters
    if not args.adapters:
        raise UsageError("give --zoo NAME or --adapters DIR [DIR ...]")
    base = BaseWeights.from_path(args.base) if args.base else None
    with console.status("loading adapters"):
        return base, load_adapter_set(args.adapters, names=args.names, base=base, module_prefix=args.module_prefix)


def method_params(items: list[str] | None, methods: list[str]) -> dict[str, dict]:
    """--param METHOD.key=value (or key=value for every method that has it) → {method: params}."""
    per: dict[str, dict] = {m: {} for m in methods}
    for key, value in parse_params(items).items():
        if "." in key:
            method, name = key.split(".", 1)
            if method not in per:
                raise UsageError(f"--param {key}: {method!r} is not one of the evaluated methods")
            per[method][name] = value
        else:
            hits = [m for m in methods if any(p.name == key for p in get_method(m).params)]
            if not hits:
                raise UsageError(f"--param {key}: none of the methods takes it")
            for m in hits:
                per[m][key] = value
    return per


def cmd_eval(args) -> int:
    from .evaluate import evaluate, eval_rows

    zoo = open_zoo(args.zoo, device=args.device)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        get_method(m)
    per = method_params(args.param, methods)
    for m in methods:
        get_method(m).resolve(per[m])
    individual = {t.name: t.individual_accuracy for t in zoo.manifest.tasks}
    rows = []
    rho = parse_rho(args.rho)
    for m in methods:
        import time

        start = time.perf_counter()
        if get_method(m).data_driven:
            result, record = _run_learned(zoo, m, per[m], rho)
        else:
            result = merge(zoo.adapters, m, **per[m])
        merge_s = time.perf_counter() - start
        with console.status(f"{m}: evaluating on {len(zoo.task_names)} tasks"):
            acc = evaluate(zoo, result, limit=args.limit, bf16=args.bf16)
        total_s = time.perf_counter() - start
        method_rows = eval_rows(m, acc, individual)
        for r in method_rows:
            r.update(merge_seconds=round(merge_s, 3), seconds=round(total_s, 2))
        rows += method_rows
        avg = method_rows[-1]["normalized_accuracy"]
        console.print(f"{m}: average normalized accuracy {avg:.1f}% ({total_s:.1f} s)")
    table = Table(title=f"{zoo.name}: normalized accuracy (%) = 100 · merged / individual")
    table.add_column("method")
    for t in [*zoo.task_names, "average"]:
        table.add_column(t, justify="right")
    table.add_column("s", justify="right")
    for m in methods:
        mr = {r["task"]: r for r in rows if r["method"] == m}
        table.add_row(m, *[f"{mr[t]['normalized_accuracy']:.1f}" for t in [*zoo.task_names, "average"]],
                      f"{mr['average']['seconds']:.1f}")
    out.print(table)
    _write_json(args.json, rows)
    return 0


def cmd_zoo(args) -> int:
    if args.action == "list":
        table = Table(title="Zoos")
        for col in ("name", "kind", "tasks", "path"):
            table.add_column(col)
        for folder in list_zoos():
            try:
                z = open_zoo(folder, check_hashes=False)
                table.add_row(z.name, z.manifest.kind, ", ".join(z.task_names), str(folder))
            except ZooError as exc:
                table.add_row(folder.name, "?", f"unreadable: {exc}", str(folder))
        out.print(table)
        return 0
    if not args.name:
        raise UsageError(f"zoo {args.action} needs a zoo NAME")
    if args.action == "import":
        from .recipes.local import import_zoo, load_spec
        from .zoo import REPO_ZOOS

        spec = load_spec(args.name)
        target = Path(args.out or REPO_ZOOS) / spec.name
        import_zoo(spec, target, spec_dir=Path(args.name).resolve().parent, overwrite=args.overwrite,
                   log=console.print, device=args.device)
        console.print(f"imported {target}")
        return 0
    if args.action == "build":
        from .recipes import build_zoo
        from .zoo import REPO_ZOOS

        target = build_zoo(args.name, Path(args.out or REPO_ZOOS), overwrite=args.overwrite, log=console.print)
        console.print(f"built {target}")
        if args.osrm:
            from .recipes.osrm import build_osrm_zoo

            osrm_target = build_osrm_zoo(str(target), Path(args.out or REPO_ZOOS), overwrite=args.overwrite,
                                         log=console.print)
            console.print(f"built {osrm_target}")
        return 0
    from .evaluate import evaluate

    zoo = open_zoo(args.name, device=args.device)  # checks every file hash
    console.print(f"{zoo.name}: {len(zoo.manifest.files)} files match their SHA-256")
    bad = []
    for i, task in enumerate(zoo.manifest.tasks):
        with console.status(f"re-evaluating {task.name} with its adapter alone"):
            acc = evaluate(zoo, merge(zoo.adapters.subset([i]), "cat"), tasks=[i])[task.name]
        ok = abs(acc - (task.individual_accuracy or 0)) <= args.tolerance
        console.print(f"  {task.name}: {acc:.2f}% (recorded {task.individual_accuracy:.2f}%) {'ok' if ok else 'MISMATCH'}")
        bad += [] if ok else [task.name]
    if bad:
        raise ZooError(f"zoo {zoo.name}: adapters do not reproduce the recorded accuracy for {', '.join(bad)}")
    return 0


def _write_table(df, json_path: str | None, csv_path: str | None) -> None:
    from .export import atomic_file_write

    if json_path:
        atomic_file_write(Path(json_path), df.to_json(orient="records", indent=2))
    if csv_path:
        atomic_file_write(Path(csv_path), df.to_csv(index=False))


def _print_frame(df, title: str) -> None:
    table = Table(title=title)
    for col in df.columns:
        table.add_column(str(col), justify="right" if df[col].dtype.kind in "fi" else "left")
    for row in df.itertuples(index=False):
        table.add_row(*[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row])
    out.print(table)


def _task_indices(zoo, text: str | None) -> list[int] | None:
    if not text:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    missing = [n for n in names if n not in zoo.task_names]
    if missing:
        raise UsageError(f"unknown task(s) {', '.join(missing)}; {zoo.name} has {', '.join(zoo.task_names)}")
    return [zoo.task_names.index(n) for n in names]


def cmd_diagnose(args) -> int:
    from .diagnostics import WHAT, diagnose, summarize

    zoo = open_zoo(args.zoo, device=args.device)
    what = [w.strip() for w in args.what.split(",") if w.strip()]
    if set(what) - set(WHAT):
        raise UsageError(f"--what takes {', '.join(WHAT)}, got {args.what!r}")
    tasks = _task_indices(zoo, args.tasks)
    with console.status(f"diagnosing {zoo.name} ({', '.join(what)})"):
        df = diagnose(zoo, what, tasks=tasks, batch_size=args.batch_size, rho=parse_rho(args.rho),
                      normalize=args.normalize)
    _print_frame(summarize(df), f"{zoo.name}: diagnostics per module type (over layers)")
    _write_table(df, args.json, args.csv)
    return 0


def cmd_pareto(args) -> int:
    from .pareto import pareto_front

    zoo = open_zoo(args.zoo, device=args.device)
    tasks = _task_indices(zoo, args.tasks) or []
    if len(tasks) != 2:
        raise UsageError("--tasks takes exactly two task names, e.g. --tasks tweet_sentiment,movie_review")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        get_method(m)
    with console.status(f"{len(methods)} fronts × {args.points} points on {backend_label(args)}"):
        df = pareto_front(zoo, tuple(tasks), methods, points=args.points, steps=args.steps,
                          warm_steps=args.warm_steps, limit=args.limit, backend=args.backend, workers=args.workers,
                          bf16=args.bf16)
    _print_frame(df[["method", "t", "acc_a", "acc_b", "on_front", "seconds"]], f"{zoo.name}: {args.tasks} front")
    out_path = Path(args.out)
    if out_path.suffix == ".csv":
        _write_table(df, None, str(out_path))
    else:
        _write_table(df, str(out_path), None)
    console.print(f"wrote {out_path}")
    return 0


def cmd_sensitivity(args) -> int:
    from .pareto import preference_sensitivity, sensitivity_summary

    zoo = open_zoo(args.zoo, device=args.device)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if not get_method(m).data_driven:
            raise UsageError(f"{m} is data-free: ρ does not change it")
    with console.status(f"{len(methods)} methods × {args.draws} ρ draws") as status:
        rows = preference_sensitivity(zoo, methods, draws=args.draws, steps=args.steps, seed=args.seed,
                                      limit=args.limit, progress=status.update, bf16=args.bf16)
    _print_frame(sensitivity_summary(rows), f"{zoo.name}: per-task accuracy over {args.draws} Dirichlet ρ draws")
    out_path = Path(args.out)
    _write_table(rows, None if out_path.suffix == ".csv" else str(out_path),
                 str(out_path) if out_path.suffix == ".csv" else None)
    console.print(f"wrote {out_path}")
    return 0


def cmd_osrm(args) -> int:
    from .recipes.osrm import build_osrm_zoo, interference_report

    target = build_osrm_zoo(args.zoo, Path(args.out), samples=args.samples, overwrite=args.overwrite,
                            log=console.print)
    console.print(f"built {target}")
    with console.status("measuring interference (standard vs OSRM)"):
        report = interference_report(args.zoo, str(target), samples=args.samples)
    summary = (report.groupby(["adapters", "stage"])[["input_interference", "output_interference"]]
               .mean().reset_index())
    _print_frame(summary, "mean interference over modules and ordered task pairs")
    _write_table(report, args.json, None)
    return 0


def backend_label(args) -> str:
    return args.backend + (f" ({args.workers} workers)" if args.workers else "")


# ---- parser -------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tara_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    p.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="method parameter (repeatable)")
    p.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--format", default="adapter", choices=("adapter", "weights"))
    p.add_argument("--rank", type=int, help="truncation rank for full-rank results (default Σ r_i)")
    p.add_argument("--modules-to-save", default="keep-separate",
                   help="keep-separate | average | from:<adapter> | drop")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--seed", type=int, help="seed for randomized methods")
    p.add_argument("--rho", help="task preference for tara-a/tara-b/adamerging-*, e.g. 0.2,0.8 (normalized)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", help="also write merge.json's content to this file")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("eval", help="merge a zoo's adapters with each method and report test accuracy")
    p.add_argument("--zoo", required=True, help="zoo name or folder")
    p.add_argument("--methods", default="ta,ties,knots-ties,tsv,iso-c",
                   help="comma-separated method names (data-free and tara-a, tara-b, adamerging-task/-layer)")
    p.add_argument("--param", action="append", metavar="[METHOD.]KEY=VALUE",
                   help="method parameter; KEY=VALUE applies to every method that takes KEY")
    p.add_argument("--limit", type=int, help="evaluate on the first N test examples per task")
    p.add_argument("--rho", help="task preference for data-driven methods, e.g. 0.2,0.8 (normalized)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true",
                   help="evaluate under bf16 autocast (CUDA or a CPU with native bf16; default fp32); "
                        "for learned methods also pass --param bf16=true")
    p.add_argument("--json", help="write tidy rows {method, task, accuracy, individual_accuracy, normalized_accuracy}")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("diagnose", help="effective-rank stacks, κ (RAW/ORTH) and ξ per layer and module")
    p.add_argument("--zoo", required=True)
    p.add_argument("--what", default="erank,kappa,xi", help="comma-separated: erank, kappa, xi")
    p.add_argument("--tasks", help="comma-separated task subset (default: all)")
    p.add_argument("--rho", help="also report κ(ρ) = κ(diag(ρ) J) for this preference")
    p.add_argument("--batch-size", type=int, default=16, help="unlabeled inputs per task for ΔX and J")
    p.add_argument("--normalize", action="store_true", help="unit-norm atoms before stacking (erank)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="write tidy rows {quantity, layer, module, value, ...}")
    p.add_argument("--csv", help="write the same rows as CSV")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("pareto", help="two-task Pareto fronts of several methods")
    p.add_argument("--zoo", required=True)
    p.add_argument("--tasks", required=True, help="two task names, e.g. tweet_sentiment,movie_review")
    p.add_argument("--points", type=int, default=11, help="grid points per method (t from 1 to 0)")
    p.add_argument("--methods", default="ta,ties,knots-ties,adamerging-layer,tara-a,tara-b")
    p.add_argument("--steps", type=int, default=100, help="AdamW steps at the first (cold) point")
    p.add_argument("--warm-steps", type=int, default=30, help="steps at every later, warm-started point")
    p.add_argument("--limit", type=int, help="evaluate on the first N test examples per task")
    p.add_argument("--backend", default="process", choices=("process", "local", "ray"))
    p.add_argument("--workers", type=int, help="parallel chains (default: one per method, at most the CPUs)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="optimize and evaluate under bf16 autocast (default fp32)")
    p.add_argument("--out", required=True, help="output file (.json or .csv)")
    p.set_defaults(func=cmd_pareto)

    p = sub.add_parser("sensitivity", help="per-task accuracy over random ρ draws (the paper's Fig. 4)")
    p.add_argument("--zoo", required=True)
    p.add_argument("--methods", default="adamerging-layer,tara-b")
    p.add_argument("--draws", type=int, default=5, help="ρ ~ Dirichlet(1) draws (seeded)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="evaluate on the first N test examples per task")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the optimization (evaluation stays fp32)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, help="output file (.json or .csv): rows method, draw, task, rho_task, accuracy")
    p.set_defaults(func=cmd_sensitivity)

    p = sub.add_parser("osrm", help="build the OSRM-initialized variant of a zoo's adapters (a new zoo)")
    p.add_argument("--zoo", required=True, help="the standard zoo (its recipe's data packages must be installed)")
    p.add_argument("--out", required=True, help="parent folder for the new zoo <name>-osrm")
    p.add_argument("--samples", type=int, default=48, help="unlabeled val inputs per task for the second moments")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json", help="write the interference rows (per module, task pair, variant, stage)")
    p.set_defaults(func=cmd_osrm)

    p = sub.add_parser("zoo", help="list, build, import or verify zoos")
    p.add_argument("action", choices=("list", "build", "import", "verify"))
    p.add_argument("name", nargs="?", help="zoo name (or folder, for verify; the spec file, for import)")
    p.add_argument("--out", help="build/import: parent folder (default: the repo's zoos/)")
    p.add_argument("--overwrite", action="store_true", help="build/import: replace an existing zoo")
    p.add_argument("--device", default="cpu", help="import/verify: where to run the measurements (cpu or cuda)")
    p.add_argument("--osrm", action="store_true", help="build: also build the OSRM variant (<name>-osrm)")
    p.add_argument("--tolerance", type=float, default=0.5, help="verify: allowed accuracy difference (points)")
    p.set_defaults(func=cmd_zoo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (AdapterError, MergeError, ExportError, UsageError, ZooError, ObjectiveError, FileNotFoundError,
            ValueError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
