"""``diagnose``: effective-rank stacks, κ (RAW/ORTH) and ξ per layer and module (TARA.md §2–4)."""
from __future__ import annotations

from .common import (UsageError, add_command, parse_rho, positive_int, print_frame, progress_bar, task_indices,
                     write_table)


def cmd_diagnose(args) -> int:
    from ..diagnostics import WHAT, diagnose, summarize
    from ..zoo import open_zoo

    zoo = open_zoo(args.zoo, device=args.device)
    what = [w.strip() for w in args.what.split(",") if w.strip()]
    if set(what) - set(WHAT):
        raise UsageError(f"--what takes {', '.join(WHAT)}, got {args.what!r}")
    tasks = task_indices(zoo, args.tasks)
    with progress_bar(f"diagnosing {zoo.name} ({', '.join(what)})", "stages") as progress:
        df = diagnose(zoo, what, tasks=tasks, batch_size=args.batch_size, rho=parse_rho(args.rho),
                      normalize=args.normalize, progress=progress)
    print_frame(summarize(df), f"{zoo.name}: diagnostics per module type (over layers)")
    write_table(df, args.json, args.csv)
    return 0


def register(sub) -> None:
    p = add_command(sub, "diagnose", "effective-rank stacks, κ (RAW/ORTH) and ξ per layer and module",
                    "The paper's diagnostics: subspace coverage (effective rank of the per-task, rank-1, ΔW and ΔX "
                    "stacks), the Jacobian's condition number κ in the LoRA (RAW) and TARA-B (ORTH) bases, and the "
                    "misalignment ξ over preference pairs.",
                    ["diagnose --zoo demo-text", "diagnose --zoo demo-vision --what erank --csv erank.csv"])
    p.add_argument("--zoo", required=True, help="zoo name or folder")
    p.add_argument("--what", default="erank,kappa,xi", help="comma-separated: erank, kappa, xi")
    p.add_argument("--tasks", help="comma-separated task subset (default: all)")
    p.add_argument("--rho", help="also report κ(ρ) = κ(diag(ρ) J) for this preference")
    p.add_argument("--batch-size", type=positive_int, default=16, help="unlabeled inputs per task for ΔX and J")
    p.add_argument("--normalize", action="store_true", help="unit-norm atoms before stacking (erank)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", help="write tidy rows {quantity, layer, module, value, ...}")
    p.add_argument("--csv", help="write the same rows as CSV")
    p.set_defaults(func=cmd_diagnose)
