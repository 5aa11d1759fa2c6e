"""Preference models: the time of φ(ρ) per preference and of the fit, against the per-ρ paper recipe.

* **φ(ρ)**: median wall time of ``model.phi(ρ)`` over random ρ (Dirichlet(1)), and of φ(ρ) plus the merged
  factors of every module (what the Merge page builds before evaluating), against one warm AdamW step of
  per-ρ TARA-B (what the old slider paid per step, several steps per move);
* **fit**: the preference model's fit (default settings; ``--fit-steps`` other step counts) against one paper
  TARA-B run (the reference code's step rule, :func:`tara_core.optimize.reference_steps`: 80 AdamW steps on the
  demo zoos; batch 16, entropy STCH), both timed in this process on the same zoo. ``--steps N`` times N steps of
  each and scales to their full step counts (marked "extrapolated"; the one-time part of the fit, the experts'
  predictions and the TA gap scale, is timed apart and not scaled); ``--full`` times every run completely.

    .venv/bin/python bench/bench_preference.py --zoo demo-text --full
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tara_core.methods.learned import OptimizeConfig, PreferenceConfig  # noqa: E402
from tara_core.optimize import MergeData, optimize, reference_steps  # noqa: E402
from tara_core.precision import bf16_is_native  # noqa: E402
from tara_core.preference import (PreferenceModel, fit_preference_model, preference_model_for,  # noqa: E402
                                  shipped_path)
from tara_core.tara import build_parameterization  # noqa: E402
from tara_core.zoo import open_zoo  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="demo-text")
    ap.add_argument("--draws", type=int, default=200, help="random ρ for the φ(ρ) timing")
    ap.add_argument("--steps", type=int, default=20, help="steps timed per run (scaled to the full runs)")
    ap.add_argument("--full", action="store_true", help="time the complete fit and paper run")
    ap.add_argument("--fit-steps", default="", help="comma-separated fit step counts to time (default: the "
                                                    "default settings' count)")
    args = ap.parse_args()
    console = Console()
    zoo = open_zoo(args.zoo)
    n = len(zoo.task_names)
    where = f"{cpu_name()}, {torch.get_num_threads()} threads, fp32 (bf16 native: {bf16_is_native('cpu')})"

    table = Table(title=f"{args.zoo}: time per preference ρ ({where})")
    for col in ("what", "variant", "coefficients", "median ms", "p95 ms"):
        table.add_column(col, justify="left" if col in ("what", "variant") else "right")
    rng = np.random.default_rng(0)
    rhos = [rng.dirichlet(np.ones(n)).tolist() for _ in range(args.draws)]
    for variant in ("tara-b", "tara-a"):
        param = build_parameterization(zoo.adapters, variant)
        # the shipped fitted model; where none is shipped, an unfitted one (φ(ρ) costs the same for the same shapes)
        model = (preference_model_for(zoo, variant, param=param)[0] if shipped_path(zoo, variant).with_suffix(".safetensors").exists()
                 else PreferenceModel.initial(param, zoo.task_names))
        for what, fn in (("φ(ρ)", lambda r: model.phi(r)),
                         ("φ(ρ) + merged factors of every module", lambda r: param.deltas(model.phi(r)))):
            times = []
            for r in rhos:
                t0 = time.perf_counter()
                fn(r)
                times.append(1000 * (time.perf_counter() - t0))
            table.add_row(what, variant, f"{param.num_parameters:,}", f"{statistics.median(times):.2f}",
                          f"{np.percentile(times, 95):.2f}")
    data = MergeData.from_zoo(zoo)
    param = build_parameterization(zoo.adapters, "tara-b")
    warm = optimize(data, zoo.adapters, "tara-b", config={"steps": 1})  # warm-up
    t0 = time.perf_counter()
    optimize(data, zoo.adapters, "tara-b", rho=rhos[0], config={"steps": 3}, warm_start=warm.phi, param=param)
    table.add_row("one warm AdamW step of per-ρ TARA-B (batch 16/task)", "tara-b", f"{param.num_parameters:,}",
                  f"{1000 * (time.perf_counter() - t0) / 3:.0f}", "—")
    console.print(table)

    cfg = PreferenceConfig()
    paper = OptimizeConfig()  # the paper run's defaults: its steps are the reference rule's
    paper_total_steps = reference_steps([len(v) for v in data.val], paper.batch_size, paper.epochs)
    paper_steps = paper_total_steps if args.full else min(args.steps, paper_total_steps)
    settings = cfg.model_dump(exclude={"model", "refit"})
    setup_s = paper_setup_s = 0.0  # the one-time parts (anchors; experts' predictions and TA gap scale)
    if not args.full:
        t0 = time.perf_counter()
        optimize(MergeData.from_zoo(zoo), zoo.adapters, "tara-b", config={"steps": 0})
        paper_setup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        fit_preference_model(MergeData.from_zoo(zoo), zoo.adapters, "tara-b", {**settings, "steps": 0})
        setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    optimize(MergeData.from_zoo(zoo), zoo.adapters, "tara-b", config={"steps": paper_steps})
    paper_s = time.perf_counter() - t0
    paper_total = paper_setup_s + (paper_s - paper_setup_s) * paper_total_steps / paper_steps
    label = "measured" if args.full else f"extrapolated from {args.steps} steps of each"
    t2 = Table(title=f"{args.zoo}: fit time ({where}; {label})")
    for col in ("run", "steps", "seconds", "× paper TARA-B run"):
        t2.add_column(col, justify="left" if col == "run" else "right")
    t2.add_row("paper TARA-B (entropy STCH, AdamW 1e-3, batch 16; the reference step rule)", str(paper_total_steps),
               f"{paper_total:.0f}", "1.00")
    for total in [int(x) for x in args.fit_steps.split(",") if x] or [cfg.steps]:
        steps = total if args.full else min(args.steps, total)
        t0 = time.perf_counter()
        fit_preference_model(MergeData.from_zoo(zoo), zoo.adapters, "tara-b", {**settings, "steps": steps})
        fit_s = time.perf_counter() - t0
        fit_total = setup_s + (fit_s - setup_s) * total / steps  # only the steps scale (--full: fit_s itself)
        t2.add_row(f"tara-b-pareto fit ({'default settings' if total == cfg.steps else f'steps={total}'}, incl. "
                   "experts' predictions and TA gap scale)", str(total), f"{fit_total:.0f}",
                   f"{fit_total / paper_total:.2f}")
    console.print(t2)


if __name__ == "__main__":
    main()
