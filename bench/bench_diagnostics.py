"""Diagnostics speed: Gram vs explicit erank stacks, a whole zoo's diagnostics, and a warm-started front.

1. Rank-1-stack erank at ViT-B/32 shapes (768 × 768, N = 8 adapters of r = 16 → 128 atoms): the K × K Gram
   (BᵀB) ⊙ (AAᵀ) against the explicit K × (d_out·d_in) stack's singular values.
2. ``diagnose`` (erank stacks incl. ΔX, κ RAW/ORTH, ξ over all preference pairs) on a demo zoo, against the
   naive way: every stack built explicitly (vec ΔW atoms and vec ΔW_i X) before its SVD.
3. An 11-point two-task TARA-B front with warm starts (``--steps`` cold, then ``--warm-steps``) against cold
   starts at every point.

    .venv/bin/python bench/bench_diagnostics.py --zoo demo-text
"""
from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # run from a checkout: python bench/<name>.py

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from tara_core.diagnostics import collect_inputs, diagnose
from tara_core.lowrank import effective_rank, erank_from_gram, rank1_gram
from tara_core.optimize import MergeData
from tara_core.pareto import pareto_front
from tara_core.precision import bf16_is_native
from tara_core.zoo import open_zoo


def timed(fn, repeat: int = 1):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def gram_vs_explicit(console: Console) -> None:
    g = torch.Generator().manual_seed(0)
    d, K = 768, 8 * 16
    B, A = torch.randn(d, K, generator=g), torch.randn(K, d, generator=g)
    gram_val, gram_s = timed(lambda: erank_from_gram(rank1_gram(B, A)), repeat=5)

    def explicit():
        stack = torch.stack([torch.outer(B[:, k], A[k]).flatten() for k in range(K)])
        return effective_rank(torch.linalg.svdvals(stack.double()))

    exp_val, exp_s = timed(explicit)
    t = Table(title="Rank-1 stack erank, ViT-B/32 module (768 × 768), N = 8, r = 16 (128 atoms)")
    for c in ("way", "seconds", "erank", "speed-up"):
        t.add_column(c, justify="right" if c != "way" else "left")
    t.add_row("explicit stack (128 × 589,824) + SVD", f"{exp_s:.3f}", f"{exp_val:.4f}", "1×")
    t.add_row("Gram (BᵀB) ⊙ (AAᵀ), 128 × 128", f"{gram_s:.4f}", f"{gram_val:.4f}", f"{exp_s / gram_s:.0f}×")
    console.print(t)


def naive_erank(zoo, batch_size: int) -> None:
    """Every coverage stack built explicitly, then its SVD (what the Gram path avoids)."""
    adapters = zoo.adapters
    data = MergeData.from_zoo(zoo)
    inputs = collect_inputs(data.backbone, [x for v in data.val for x in v[:batch_size]], adapters.module_names)
    for m in adapters.module_names:
        fs = [f for f in adapters.factors(m) if f is not None]
        atoms = torch.stack([torch.outer(f.B[:, k], f.A[k]).flatten() for f in fs for k in range(f.rank)])
        effective_rank(torch.linalg.svdvals(atoms.double()))
        dense = [f.materialize() for f in fs]
        effective_rank(torch.linalg.svdvals(torch.stack([d.flatten() for d in dense]).double()))
        X = inputs[m]
        effective_rank(torch.linalg.svdvals(torch.stack([(d @ X.T).flatten() for d in dense]).double()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="demo-text")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--pair", default="0,1", help="task indices of the front")
    ap.add_argument("--points", type=int, default=11)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warm-steps", type=int, default=20)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--skip-front", action="store_true")
    ap.add_argument("--front-only", action="store_true")
    args = ap.parse_args()
    console = Console()
    zoo = open_zoo(args.zoo)
    _ = zoo.backbone, zoo.adapters, zoo.data
    if not args.front_only:
        diagnostics_tables(console, zoo, args)
    if args.skip_front:
        return
    front_table(console, zoo, args)


def diagnostics_tables(console, zoo, args) -> None:
    gram_vs_explicit(console)
    t = Table(title=f"{zoo.name}: diagnostics ({len(zoo.task_names)} tasks, {len(zoo.adapters.module_names)} modules)")
    for c in ("what", "seconds", "rows"):
        t.add_column(c, justify="right" if c != "what" else "left")
    df, s = timed(lambda: diagnose(zoo, ("erank",), batch_size=args.batch_size))
    t.add_row("erank stacks (Gram, factored; incl. ΔX and merged TA)", f"{s:.2f}", str(len(df)))
    _, s_naive = timed(lambda: naive_erank(zoo, args.batch_size))
    t.add_row("erank stacks, naive (explicit vec stacks + SVD)", f"{s_naive:.2f}", "—")
    df2, s2 = timed(lambda: diagnose(zoo, ("kappa", "xi"), batch_size=args.batch_size))
    t.add_row("J (RAW + ORTH, autograd), κ, ξ over all preference pairs", f"{s2:.2f}", str(len(df2)))
    t.add_row("all diagnostics", f"{s + s2:.2f}", str(len(df) + len(df2)))
    console.print(t)


def front_table(console, zoo, args) -> None:
    pair = tuple(int(x) for x in args.pair.split(","))
    f = Table(title=f"{zoo.name}: {args.points}-point TARA-B front, tasks {[zoo.task_names[i] for i in pair]}")
    for c in ("way", "seconds", "steps in total"):
        f.add_column(c, justify="right" if c != "way" else "left")
    precisions = (False, True) if bf16_is_native() else (False,)
    for bf16 in precisions:
        _, warm_s = timed(lambda: pareto_front(zoo, pair, ("tara-b",), points=args.points, steps=args.steps,
                                               warm_steps=args.warm_steps, limit=args.limit, backend="local",
                                               bf16=bf16))
        f.add_row(f"warm-started chain ({args.steps} + {args.points - 1} × {args.warm_steps} steps), "
                  f"{'bf16' if bf16 else 'fp32'}", f"{warm_s:.1f}", str(args.steps + (args.points - 1) * args.warm_steps))
    _, cold_s = timed(lambda: pareto_front(zoo, pair, ("tara-b",), points=args.points, steps=args.steps,
                                           limit=args.limit, backend="local", warm_start=False))
    f.add_row(f"cold start at every point ({args.points} × {args.steps} steps), fp32", f"{cold_s:.1f}",
              str(args.points * args.steps))
    console.print(f)


if __name__ == "__main__":
    main()
