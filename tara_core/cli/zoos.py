"""``zoo list|build|import|verify|precompute|extend`` and ``osrm``: the zoos the other commands run on."""
from __future__ import annotations

from pathlib import Path

from .common import UsageError, add_command, console, out, positive_int, print_frame, progress_bar, write_table


def cmd_zoo(args) -> int:
    from ..zoo import REPO_ZOOS, ZooError, find_zoo, list_zoos, open_zoo

    if args.action == "list":
        from rich.table import Table

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
        from ..recipes.local import import_zoo, load_spec

        spec = load_spec(args.name)
        target = Path(args.out or REPO_ZOOS) / spec.name
        import_zoo(spec, target, spec_dir=Path(args.name).resolve().parent, overwrite=args.overwrite,
                   log=console.print, device=args.device)
        console.print(f"imported {target}")
        return 0
    if args.action == "build":
        from ..recipes import build_zoo, precompute_zoo

        target = build_zoo(args.name, Path(args.out or REPO_ZOOS), overwrite=args.overwrite, log=console.print)
        console.print(f"built {target}")
        if args.osrm:
            from ..recipes.osrm import build_osrm_zoo

            osrm_target = build_osrm_zoo(str(target), Path(args.out or REPO_ZOOS), overwrite=args.overwrite,
                                         log=console.print)
            console.print(f"built {osrm_target}")
            precompute_zoo(osrm_target, log=console.print)
        precompute_zoo(target, log=console.print)
        return 0
    if args.action == "extend":
        from ..recipes.extra import extend_zoo

        extend_zoo(find_zoo(args.name), log=console.print)
        console.print(f"{args.name}: unlabeled pools and dev splits written, preference models and first views "
                      "up to date")
        return 0
    if args.action == "precompute":
        from ..recipes import precompute_zoo

        written = precompute_zoo(find_zoo(args.name), log=console.print, refit=args.overwrite)
        console.print(f"{args.name}: preference models and {len(written)} first-view results up to date")
        return 0
    from ..evaluate import evaluate
    from ..methods import merge

    zoo = open_zoo(args.name, device=args.device)  # checks the manifest digest and every file hash
    kinds = {}
    for rel in zoo.manifest.files:
        kinds[rel.split("/")[0] if "/" in rel else rel] = kinds.get(rel.split("/")[0] if "/" in rel else rel, 0) + 1
    console.print(f"{zoo.name}: zoo.json's digest matches; {len(zoo.manifest.files)} files match their SHA-256 "
                  f"({', '.join(f'{k}: {v}' for k, v in sorted(kinds.items()))}); no unlisted files")
    for i, task in enumerate(zoo.manifest.tasks):
        if task.extra:
            extra = zoo.extra(i)  # reads and checks the sizes against the manifest
            console.print(f"  {task.name}: merge set up to {len(zoo.data[i].val) + len(extra.pool)} unlabeled "
                          f"(val {len(zoo.data[i].val)} + pool {len(extra.pool)}), dev {len(extra.dev_inputs)} labeled")
    bad = []
    for i, task in enumerate(zoo.manifest.tasks):
        with progress_bar(f"{task.name}: its adapter alone on {len(zoo.data[i].test_labels)} test examples", "") as p:
            acc = evaluate(zoo, merge(zoo.adapters.subset([i]), "cat"), tasks=[i], progress=p)[task.name]
        ok = abs(acc - (task.individual_accuracy or 0)) <= args.tolerance
        console.print(f"  {task.name}: {acc:.2f}% (recorded {task.individual_accuracy:.2f}%) {'ok' if ok else 'MISMATCH'}")
        bad += [] if ok else [task.name]
    if bad:
        raise ZooError(f"zoo {zoo.name}: adapters do not reproduce the recorded accuracy for {', '.join(bad)}")
    return 0


def cmd_osrm(args) -> int:
    from ..recipes.osrm import build_osrm_zoo, interference_report

    target = build_osrm_zoo(args.zoo, Path(args.out), samples=args.samples, overwrite=args.overwrite,
                            log=console.print, freeze_A=args.freeze_a)
    console.print(f"built {target}")
    with console.status("measuring interference (standard vs OSRM)"):
        report = interference_report(args.zoo, str(target), samples=args.samples,
                                     label="osrm, A frozen" if args.freeze_a else "osrm")
    summary = (report.groupby(["adapters", "stage"])[["input_interference", "output_interference"]]
               .mean().reset_index())
    print_frame(summary, "mean interference over modules and ordered task pairs")
    write_table(report, args.json, None)
    return 0


def register(sub) -> None:
    p = add_command(sub, "osrm", "build the OSRM-initialized variant of a zoo's adapters (a new zoo)",
                    "Re-train every adapter of a zoo from OSRM's initialization (A from the smallest-eigenvalue "
                    "directions of the other tasks' inputs) and report the interference before and after.",
                    ["osrm --zoo demo-text --out zoos", "osrm --zoo demo-vision --out ~/zoos --freeze-a"])
    p.add_argument("--zoo", required=True, help="the standard zoo (its recipe's data packages must be installed)")
    p.add_argument("--out", required=True, help="parent folder for the new zoo <name>-osrm")
    p.add_argument("--samples", type=positive_int, default=48, help="unlabeled val inputs per task for the second moments")
    p.add_argument("--freeze-a", action="store_true",
                   help="train B alone, keeping every A at OSRM's initialization (orthogonal to the other tasks' "
                        "inputs through fine-tuning); the zoo is <name>-osrm-frozen")
    p.add_argument("--overwrite", action="store_true", help="replace an existing <name>-osrm zoo")
    p.add_argument("--json", help="write the interference rows (per module, task pair, variant, stage)")
    p.set_defaults(func=cmd_osrm)

    p = add_command(sub, "zoo", "list, build, import, verify or precompute zoos",
                    "Zoos are a base, one adapter per task and the tasks' data. list: the zoos found; build: a demo zoo "
                    "from its recipe; import: a zoo from your own files (a YAML spec); verify: check every hash and "
                    "re-measure each adapter; precompute: fit the preference model and the dashboard's first views; "
                    "extend: add a demo zoo's unlabeled pools and labeled dev splits (merge_set, bench_fidelity.py).",
                    ["zoo list", "zoo verify demo-text", "zoo build demo-vision --osrm", "zoo import my-zoo.yaml --out ~/zoos",
                     "zoo precompute demo-text", "zoo extend demo-text"])
    p.add_argument("action", choices=("list", "build", "import", "verify", "precompute", "extend"), help="what to do")
    p.add_argument("name", nargs="?", help="zoo name (or folder, for verify; the spec file, for import)")
    p.add_argument("--out", help="build/import: parent folder (default: the repo's zoos/)")
    p.add_argument("--overwrite", action="store_true",
                   help="build/import: replace an existing zoo; precompute: refit the preference models")
    p.add_argument("--device", default="cpu", help="import/verify: where to run the measurements (cpu or cuda)")
    p.add_argument("--osrm", action="store_true", help="build: also build the OSRM variant (<name>-osrm)")
    p.add_argument("--tolerance", type=float, default=0.5, help="verify: allowed accuracy difference (points)")
    p.set_defaults(func=cmd_zoo)
