"""Factored thin SVD of concatenated adapters vs the dense SVD (KnOTS / TARA reference code) and PEFT.

Decomposes [ΔW_1..ΔW_N] for every module of a model, three ways:
  factored  tara_core.lowrank.hconcat_svd (QR of the factors + SVD of a K×K core)
  dense     torch.linalg.svd of the d_out × N·d_in concatenation (what the reference code does)
  peft      PeftModel.add_weighted_adapter(..., combination_type="svd", svd_rank=Σr) (dense ΔW + SVD)
at ViT-B/32 shapes (48 modules 768×768, N=8, r=16) and LLaMA-3-8B shapes (128 modules 4096×4096, N=6,
r=16; dense and PEFT are timed on a few modules and extrapolated, marked with ~).
Relative error: ‖σ_factored − σ_dense‖ / ‖σ_dense‖ over the top Σr singular values, and the relative
reconstruction error of [ΔW_i] from the factored SVD.

    .venv/bin/python bench/bench_lowrank.py [--quick]
"""
from __future__ import annotations

import argparse
import copy
import csv
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tara_core.lowrank import Factors, hconcat_svd  # noqa: E402


def make_factors(n, r, d_out, d_in, gen):
    return [Factors(torch.randn(d_out, r, generator=gen) / r ** 0.5, torch.randn(r, d_in, generator=gen) / d_in ** 0.5)
            for _ in range(n)]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_shape(label, modules, n, r, d, timed_dense_modules, timed_peft_modules):
    gen = torch.Generator().manual_seed(0)
    per_module = [make_factors(n, r, d, d, gen) for _ in range(min(modules, max(timed_dense_modules, 2)))]
    # factored: every module (reuse the generated factors cyclically; the cost does not depend on values)
    t_fact, _ = timed(lambda: [hconcat_svd(per_module[m % len(per_module)]) for m in range(modules)])
    # dense: a few modules, extrapolated
    def dense(fs):
        return torch.linalg.svd(torch.cat([f.materialize() for f in fs], dim=1), full_matrices=False)
    t_dense_some, dense_out = timed(lambda: [dense(per_module[m]) for m in range(timed_dense_modules)])
    t_dense = t_dense_some / timed_dense_modules * modules
    # accuracy on module 0
    fact = hconcat_svd(per_module[0])
    _, S_ref, _ = dense_out[0]
    k = n * r
    sv_err = float((fact.S[:k] - S_ref[:k]).norm() / S_ref[:k].norm())
    cat = torch.cat([f.materialize() for f in per_module[0]], dim=1)
    rec = (fact.U * fact.S) @ torch.cat(fact.Vh_blocks, dim=1)
    rec_err = float((rec - cat).norm() / cat.norm())
    t_peft = bench_peft(per_module, n, r, d, timed_peft_modules) / timed_peft_modules * modules
    extrap = timed_dense_modules < modules
    return {
        "shape": label, "modules": modules, "N": n, "r": r,
        "factored_s": round(t_fact, 3),
        "dense_svd_s": round(t_dense, 2), "dense_extrapolated": extrap,
        "peft_svd_s": round(t_peft, 2), "peft_extrapolated": timed_peft_modules < modules,
        "speedup_vs_dense": round(t_dense / t_fact, 1), "speedup_vs_peft": round(t_peft / t_fact, 1),
        "sv_rel_err": f"{sv_err:.1e}", "recon_rel_err": f"{rec_err:.1e}",
    }


def bench_peft(per_module, n, r, d, modules):
    """PEFT's add_weighted_adapter(svd) on a model of `modules` Linear layers with N adapters loaded."""
    from peft import LoraConfig, get_peft_model

    base = torch.nn.Sequential(*[torch.nn.Linear(d, d, bias=False) for _ in range(modules)])
    targets = [str(i) for i in range(modules)]
    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=r, lora_alpha=r, target_modules=targets), adapter_name="t0")
    for t in range(1, n):
        model.add_adapter(f"t{t}", LoraConfig(r=r, lora_alpha=r, target_modules=targets))
    with torch.no_grad():
        for m in range(modules):
            layer = model.base_model.model[m]
            for t in range(n):
                f = per_module[m % len(per_module)][t]
                layer.lora_A[f"t{t}"].weight.copy_(f.A)
                layer.lora_B[f"t{t}"].weight.copy_(f.B)
    t, _ = timed(lambda: model.add_weighted_adapter([f"t{t}" for t in range(n)], [1.0] * n, "merged",
                                                    combination_type="svd", svd_rank=n * r))
    return t


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed dense modules")
    parser.add_argument("--csv", default="bench/results/lowrank.csv")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = [
        bench_shape("ViT-B/32 768x768", 48, 8, 16, 768, timed_dense_modules=4 if args.quick else 48,
                    timed_peft_modules=4 if args.quick else 48),
        bench_shape("LLaMA-3-8B 4096x4096", 128, 6, 16, 4096, timed_dense_modules=1, timed_peft_modules=1),
    ]
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print(" | ".join(c.ljust(widths[c]) for c in cols))
    print("-|-".join("-" * widths[c] for c in cols))
    for r in rows:
        print(" | ".join(str(r[c]).ljust(widths[c]) for c in cols))
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
