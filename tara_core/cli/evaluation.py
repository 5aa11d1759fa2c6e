"""``eval``, ``steer``, ``pareto``, ``sensitivity``: how merges score, and how they follow the preference ρ."""
from __future__ import annotations

import time

from .common import (UsageError, add_command, console, method_list, method_params, out, parse_rho, positive_int,
                     print_frame, progress_bar, run_learned, task_indices, write_frame_to, write_json)


def cmd_eval(args) -> int:
    from rich.table import Table

    from ..evaluate import eval_rows, evaluate, individual_accuracies
    from ..methods import get_method, merge
    from ..zoo import open_zoo

    zoo = open_zoo(args.zoo, device=args.device)
    methods = method_list(args.methods)
    per = method_params(args.param, methods)
    for m in methods:
        get_method(m).resolve(per[m])
    rho = parse_rho(args.rho)
    if rho is not None and not any(get_method(m).data_driven for m in methods):
        raise UsageError("--rho only applies to data-driven methods (tara-*, adamerging-*)")
    individual = individual_accuracies(zoo, limit=args.limit, bf16=args.bf16)
    rows = []
    for m in methods:
        start = time.perf_counter()
        if get_method(m).data_driven:
            result, _ = run_learned(zoo, m, per[m], rho)
        else:
            with progress_bar(f"{m}: merging", "modules") as progress:
                result = merge(zoo.adapters, m, progress=progress, **per[m])
        merge_s = time.perf_counter() - start
        with progress_bar(f"{m}: evaluating", "tasks") as progress:
            acc = evaluate(zoo, result, limit=args.limit, bf16=args.bf16, progress=progress)
        total_s = time.perf_counter() - start
        method_rows = eval_rows(m, acc, individual)
        for r in method_rows:
            r.update(merge_seconds=round(merge_s, 3), seconds=round(total_s, 2))
        rows += method_rows
        console.print(f"{m}: average normalized accuracy {method_rows[-1]['normalized_accuracy']:.1f}% ({total_s:.1f} s)")
    subset = "" if args.limit is None else f", first {args.limit} test examples per task"
    table = Table(title=f"{zoo.name}: normalized accuracy (%) = 100 · merged / individual{subset}")
    table.add_column("method")
    for t in [*zoo.task_names, "average"]:
        table.add_column(t, justify="right")
    table.add_column("s", justify="right")
    for m in methods:
        mr = {r["task"]: r for r in rows if r["method"] == m}
        table.add_row(m, *[f"{mr[t]['normalized_accuracy']:.1f}" for t in [*zoo.task_names, "average"]],
                      f"{mr['average']['seconds']:.1f}")
    out.print(table)
    write_json(args.json, rows)
    return 0


def cmd_steer(args) -> int:
    from ..pareto import steering, steering_summary
    from ..zoo import open_zoo

    zoo = open_zoo(args.zoo, device=args.device)
    methods = method_list(args.methods)
    per = method_params(args.param, methods)
    if not 0 <= args.emphasis < 1:
        raise UsageError(f"--emphasis must be in [0, 1), got {args.emphasis}")
    import pandas as pd

    frames = []
    with console.status("measuring steering") as status:
        for m in methods:
            frames.append(steering(zoo, m, per[m], emphasis=args.emphasis, limit=args.limit, bf16=args.bf16,
                                   progress=status.update))
    rows = pd.concat(frames, ignore_index=True)
    subset = "" if args.limit is None else f", first {args.limit} test examples per task"
    print_frame(steering_summary(rows), f"{zoo.name}: gain of each task when emphasized (ρ_k = {args.emphasis}){subset}")
    if args.out:
        write_frame_to(rows, args.out)
    return 0


def cmd_pareto(args) -> int:
    from ..pareto import hypervolume, pareto_front
    from ..zoo import open_zoo

    zoo = open_zoo(args.zoo, device=args.device)
    tasks = task_indices(zoo, args.tasks) or []
    if len(tasks) != 2:
        raise UsageError("--tasks takes exactly two task names, e.g. --tasks tweet_sentiment,movie_review")
    methods = method_list(args.methods)
    per = method_params(args.param, methods)
    context = (None if args.context == "all" else tasks if args.context == "pair"
               else task_indices(zoo, args.context))
    if context is not None and not set(tasks) <= set(context):
        raise UsageError(f"--context {args.context} must include both --tasks")
    label = args.backend + (f" ({args.workers} workers)" if args.workers else "")
    with progress_bar(f"{len(methods)} fronts × {args.points} points on {label}", "points") as progress:
        df = pareto_front(zoo, tuple(tasks), methods, points=args.points, params=per, steps=args.steps,
                          warm_steps=args.warm_steps, limit=args.limit, backend=args.backend, workers=args.workers,
                          bf16=args.bf16, context=context, progress=progress)
    print_frame(df[["method", "t", "acc_a", "acc_b", "on_front", "seconds"]], f"{zoo.name}: {args.tasks} front")
    curves = df[~df.method.str.startswith("individual")]
    hv = curves.groupby("method", sort=False).apply(lambda g: hypervolume(g.acc_a, g.acc_b), include_groups=False)
    print_frame(hv.rename("hypervolume").reset_index(), "hypervolume of each front above (0, 0), accuracy² (larger: better)")
    write_frame_to(df, args.out)
    return 0


def cmd_sensitivity(args) -> int:
    from ..methods import get_method
    from ..pareto import preference_sensitivity, sensitivity_summary
    from ..zoo import open_zoo

    zoo = open_zoo(args.zoo, device=args.device)
    methods = method_list(args.methods)
    for m in methods:
        if not get_method(m).data_driven:
            raise UsageError(f"{m} is data-free: ρ does not change it")
    with console.status(f"{len(methods)} methods × {args.draws} ρ draws") as status:
        rows = preference_sensitivity(zoo, methods, draws=args.draws, steps=args.steps, seed=args.seed,
                                      limit=args.limit, progress=status.update, bf16=args.bf16)
    print_frame(sensitivity_summary(rows), f"{zoo.name}: per-task accuracy over {args.draws} Dirichlet ρ draws")
    write_frame_to(rows, args.out)
    return 0


def register(sub) -> None:
    p = add_command(sub, "eval", "merge a zoo's adapters with each method and report test accuracy",
                    "Merge a zoo's adapters with every listed method and print per-task and average normalized "
                    "accuracy (100 · merged / the adapter alone, on the same test examples).",
                    ["eval --zoo demo-vision --methods ta,ties,iso-c,tara-b-pareto",
                     "eval --zoo demo-text --methods tara-b-pareto --rho 0.5,0.1,0.1,0.1,0.1,0.1 --json rows.json",
                     "eval --zoo demo-text --methods tara-b --param steps=100 --limit 200"])
    p.add_argument("--zoo", required=True, help="zoo name or folder")
    p.add_argument("--methods", default="ta,ties,knots-ties,tsv,iso-c",
                   help="comma-separated method names (data-free, tara-*, adamerging-*)")
    p.add_argument("--param", action="append", metavar="[METHOD.]KEY=VALUE",
                   help="method parameter; KEY=VALUE applies to every method that takes KEY")
    p.add_argument("--limit", type=positive_int, help="evaluate on the first N test examples per task")
    p.add_argument("--rho", help="task preference for data-driven methods, e.g. 0.2,0.8 (normalized)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--bf16", action="store_true",
                   help="evaluate under bf16 autocast (CUDA or a CPU with native bf16; default fp32); "
                        "for learned methods also pass --param bf16=true")
    p.add_argument("--json", help="write tidy rows {method, task, accuracy, individual_accuracy, normalized_accuracy}")
    p.set_defaults(func=cmd_eval)

    p = add_command(sub, "steer", "does ρ steer a method? each task's gain when emphasized, vs uniform ρ",
                    "For every task k: normalized accuracy with ρ_k = EMPHASIS (the others share the rest) minus at "
                    "uniform ρ. Data-driven methods get ρ; data-free ones the task weights N·ρ.",
                    ["steer --zoo demo-text --methods ta,tara-b-pareto",
                     "steer --zoo demo-vision --methods tara-b --param steps=250 --out steer.csv",
                     "steer --zoo demo-text --methods tara-b-pareto --emphasis 0"])
    p.add_argument("--zoo", required=True, help="zoo name or folder")
    p.add_argument("--methods", default="ta,tara-b-pareto",
                   help="data-driven methods get ρ, data-free ones the task weights N·ρ")
    p.add_argument("--param", action="append", metavar="[METHOD.]KEY=VALUE", help="method parameter")
    p.add_argument("--emphasis", type=float, default=0.5,
                   help="ρ of the emphasized task (the others share the rest); 0: drop each task in turn, as a "
                        "slider moved to 0")
    p.add_argument("--limit", type=positive_int, help="evaluate on the first N test examples per task")
    p.add_argument("--bf16", action="store_true", help="evaluate under bf16 autocast (default fp32)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", help="write the per-task rows (.json or .csv)")
    p.set_defaults(func=cmd_steer)

    p = add_command(sub, "pareto", "two-task Pareto fronts of several methods",
                    "Sweep each method from one task to the other (task weights for data-free methods, ρ for per-ρ "
                    "TARA/AdaMerging, the simplex edge for preference models) and print the fronts and their "
                    "hypervolumes.",
                    ["pareto --zoo demo-text --tasks tweet_sentiment,movie_review --methods ta,tara-b-pareto --out f.json",
                     "pareto --zoo demo-vision --tasks mnist,digits8 --points 5 --backend local --out f.csv"])
    p.add_argument("--zoo", required=True, help="zoo name or folder")
    p.add_argument("--tasks", required=True, help="two task names, e.g. tweet_sentiment,movie_review")
    p.add_argument("--points", type=positive_int, default=11, help="grid points per method (t from 1 to 0)")
    p.add_argument("--methods", default="ta,ties,knots-ties,adamerging-layer,tara-a,tara-b,tara-b-pareto",
                   help="comma-separated method names")
    p.add_argument("--steps", type=positive_int, default=100, help="AdamW steps at the first (cold) point")
    p.add_argument("--warm-steps", type=positive_int, default=30, help="steps at every later, warm-started point")
    p.add_argument("--limit", type=positive_int, help="evaluate on the first N test examples per task")
    p.add_argument("--backend", default="process", choices=("process", "local", "ray"),
                   help="where the chains run: a local process pool, this process, or Ray")
    p.add_argument("--workers", type=positive_int, help="parallel chains (default: one per method, at most the CPUs)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--bf16", action="store_true", help="optimize and evaluate under bf16 autocast (default fp32)")
    p.add_argument("--param", action="append", metavar="[METHOD.]KEY=VALUE", help="method parameter")
    p.add_argument("--context", default="all",
                   help="the task set whose preference model the *-pareto methods read: all, pair (a model of "
                        "the two tasks alone, fitted once and cached) or task names")
    p.add_argument("--out", required=True, help="output file (.json or .csv)")
    p.set_defaults(func=cmd_pareto)

    p = add_command(sub, "sensitivity", "per-task accuracy over random ρ draws (the paper's Fig. 4)",
                    "Merge at random preferences ρ ~ Dirichlet(1) and report how each task's accuracy follows its ρ.",
                    ["sensitivity --zoo demo-text --methods tara-b-pareto,tara-b --draws 5 --out sens.json"])
    p.add_argument("--zoo", required=True, help="zoo name or folder")
    p.add_argument("--methods", default="adamerging-layer,tara-b", help="comma-separated data-driven methods")
    p.add_argument("--draws", type=positive_int, default=5, help="ρ ~ Dirichlet(1) draws (seeded)")
    p.add_argument("--steps", type=positive_int, default=100, help="optimization steps per draw (per-ρ methods)")
    p.add_argument("--seed", type=int, default=0, help="seed of the ρ draws")
    p.add_argument("--limit", type=positive_int, help="evaluate on the first N test examples per task")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the optimization (evaluation stays fp32)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", required=True, help="output file (.json or .csv): rows method, draw, task, rho_task, accuracy")
    p.set_defaults(func=cmd_sensitivity)
