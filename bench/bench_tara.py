"""Seconds per optimization step of TARA-A, TARA-B and AdaMerging, and the cost of a ρ change (warm start).

Compares, on the same batch (``--batch-size`` unlabeled inputs from every task of a demo zoo):

* ``plain fwd+bwd``: the base model's forward and backward with its weights trainable (the cost of one
  ordinary training step, the issue's yardstick);
* each variant as tara_core runs it (``mode=auto``: per module, materialized ΔW(φ) or a factored side path,
  whichever the cost model picks; TARA-B's N task blocks folded before L = UΣ);
* the reference code's approach: every module gets a gated rank-K LoRA side path x ↦ W₀x + B diag(g) A x,
  with, for TARA-B, B = [UΣ, …, UΣ] repeated for each of the N tasks (K = N·R columns, no folding).

Then the slider case: φ optimized cold (``--cold-steps``, fp32) at uniform ρ, ρ moved, and φ re-optimized
warm-started for a few steps (fp32 and, where the CPU has native bf16, bf16 autocast; ``--warm-batch``
inputs per task); wall time and test accuracy (fp32) against a cold run at the new ρ, and the previous φ
left as it was (0 steps) to show how much the move itself matters.

    .venv/bin/python bench/bench_tara.py --zoo demo-text
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

from tara_core.evaluate import evaluate
from tara_core.optimize import MergeData, optimize, to_merge_result
from tara_core.precision import bf16_is_native
from tara_core.tara import ModuleParam, Parameterization, build_parameterization
from tara_core.zoo import open_zoo

VARIANTS = ("tara-a", "tara-b", "adamerging-layer", "adamerging-task")


def reference_param(param: Parameterization) -> Parameterization:
    """The reference layout: no folding, one gated rank-K side path per module (B repeated per task)."""
    modules = {}
    for m, p in param.modules.items():
        L = p.L.repeat(1, p.blocks) if p.blocks > 1 else p.L
        modules[m] = ModuleParam(L, p.Rt, 1, p.task_of_row)
    return Parameterization(param.variant, modules, param.n_tasks, param.init, param.clamp)


def time_steps(data, adapters, variant, steps, param=None, mode="auto", batch_size=16, bf16=False) -> float:
    config = {"mode": mode, "batch_size": batch_size, "bf16": bf16}
    optimize(data, adapters, variant, config={**config, "steps": 1}, param=param)
    rec = optimize(data, adapters, variant, config={**config, "steps": steps}, param=param)
    return rec.seconds / steps


def plain_step(data, steps: int, batch_size: int) -> float:
    bb = data.backbone
    batch = bb.preprocess([x for v in data.val for x in v[:batch_size]])
    params = [p for p in bb.model.parameters()]
    for p in params:
        p.requires_grad_(True)
    try:
        times = []
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            feats = bb.features(batch)
            loss = sum(h(feats).logsumexp(-1).mean() for h in data.heads)
            loss.backward()
            for p in params:
                p.grad = None
            times.append(time.perf_counter() - t0)
        return sum(times[1:]) / steps
    finally:
        for p in params:
            p.requires_grad_(False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="demo-text")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--cold-steps", type=int, default=250)
    ap.add_argument("--warm-steps", default="3,5,8")
    ap.add_argument("--warm-batch", default="8,16", help="inputs per task in the warm runs")
    ap.add_argument("--skip-warm", action="store_true")
    args = ap.parse_args()
    console = Console()
    torch.manual_seed(0)
    zoo = open_zoo(args.zoo)
    data, adapters = MergeData.from_zoo(zoo), zoo.adapters
    console.print(f"{zoo.name}: {len(adapters)} tasks × {args.batch_size} inputs, {len(adapters.module_names)} modules, "
                  f"{torch.get_num_threads()} threads")
    plain = plain_step(data, args.steps, args.batch_size)
    table = Table(title=f"{zoo.name}: seconds per step (batch {args.batch_size} × {len(adapters)} tasks)")
    for col in ("configuration", "coefficients", "s / step", "× plain fwd+bwd"):
        table.add_column(col, justify="right" if col != "configuration" else "left")
    table.add_row("plain fwd+bwd (base weights trainable)", "—", f"{plain:.3f}", "1.00")
    for variant in VARIANTS:
        param = build_parameterization(adapters, variant)
        s = time_steps(data, adapters, variant, args.steps, param, batch_size=args.batch_size)
        table.add_row(f"{variant} (tara_core, auto)", str(param.num_parameters), f"{s:.3f}", f"{s / plain:.2f}")
        if variant in ("tara-a", "tara-b"):
            ref = reference_param(param)
            s_ref = time_steps(data, adapters, variant, args.steps, ref, mode="side", batch_size=args.batch_size)
            table.add_row(f"{variant} (reference: gated rank-K side paths)", str(param.num_parameters),
                          f"{s_ref:.3f}", f"{s_ref / plain:.2f}")
        if variant == "tara-b" and bf16_is_native():
            s16 = time_steps(data, adapters, variant, args.steps, param, batch_size=args.batch_size, bf16=True)
            table.add_row(f"{variant} (tara_core, auto, bf16 autocast)", str(param.num_parameters), f"{s16:.3f}",
                          f"{s16 / plain:.2f}")
    console.print(table)
    if args.skip_warm:
        return

    n = len(adapters)
    rho0 = [1.0 / n] * n
    rho1 = [0.5] + [0.5 / (n - 1)] * (n - 1)
    param = build_parameterization(adapters, "tara-b")
    base = optimize(data, adapters, "tara-b", rho=rho0, config={"steps": args.cold_steps}, param=param)
    t0 = time.perf_counter()
    cold = optimize(data, adapters, "tara-b", rho=rho1, config={"steps": args.cold_steps}, param=param)
    cold_s = time.perf_counter() - t0
    acc_cold = evaluate(zoo, to_merge_result(cold, adapters))
    warm = Table(title=f"{zoo.name}: ρ moved from uniform to {[round(r, 3) for r in rho1]} (TARA-B)")
    for col in ("run", "precision", "batch / task", "steps", "seconds", f"{zoo.task_names[0]} acc", "avg acc",
                "Δ avg vs cold (points)"):
        warm.add_column(col, justify="right" if col != "run" else "left")
    avg = lambda acc: sum(acc.values()) / len(acc)  # noqa: E731
    warm.add_row("cold", "fp32", "16", str(args.cold_steps), f"{cold_s:.1f}", f"{acc_cold[zoo.task_names[0]]:.1f}",
                 f"{avg(acc_cold):.2f}", "0.00")
    acc_prev = evaluate(zoo, to_merge_result(base, adapters))
    warm.add_row("previous φ (uniform ρ), not re-optimized", "fp32", "—", "0", "0.0",
                 f"{acc_prev[zoo.task_names[0]]:.1f}", f"{avg(acc_prev):.2f}", f"{avg(acc_prev) - avg(acc_cold):+.2f}")
    for bf16 in (False, True) if bf16_is_native() else (False,):
        for batch in [int(x) for x in args.warm_batch.split(",")]:
            for k in [int(x) for x in args.warm_steps.split(",")]:
                t0 = time.perf_counter()
                rec = optimize(data, adapters, "tara-b", rho=rho1, config={"steps": k, "batch_size": batch, "bf16": bf16},
                               warm_start=base.phi, param=param)
                secs = time.perf_counter() - t0
                acc = evaluate(zoo, to_merge_result(rec, adapters))
                warm.add_row("warm", "bf16" if bf16 else "fp32", str(batch), str(k), f"{secs:.1f}",
                             f"{acc[zoo.task_names[0]]:.1f}", f"{avg(acc):.2f}", f"{avg(acc) - avg(acc_cold):+.2f}")
    console.print(warm)


if __name__ == "__main__":
    main()
