"""Why OSRM helps less here than in its paper: how well its A avoids the other tasks' inputs, measured on inputs
it never saw, against the number of samples behind the covariance, the rank, and fine-tuning.

Per zoo, the val split of every task (unlabeled, 256 inputs) is cut in two: the first ``n`` inputs estimate the
second moments OSRM's initialization is computed from, the last 128 measure it (held out). For task t's A and
each other task j, input interference = ‖A H_jᵀ‖_F / (‖A‖_F ‖H_j‖_F) on task j's held-out inputs (0: A sees
none of task j's input energy; a random A has ≈ sqrt(1 / d_in), since E tr(A S Aᵀ) = ‖A‖² tr S / d_in),
averaged over modules and ordered pairs. Rows: OSRM's init from n = 8 … 128 inputs per task (rank r of the
zoo, then r × 2 and r × 4 at n = 48), PEFT's random init, and the fine-tuned A of each adapter set found
(standard, ``<zoo>-osrm``, ``<zoo>-osrm-frozen``), per module type; the last column is the same measure on
the adapter's own task's held-out inputs (how much of its own input energy an A can use).

    TARA_ZOO_PATH=/path/with/frozen/zoos .venv/bin/python bench/bench_osrm_init.py --zoo demo-text
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from tara_core.cli.common import print_frame  # noqa: E402
from tara_core.diagnostics import split_module_name  # noqa: E402
from tara_core.osrm import collect_second_moments, input_interference, osrm_init, pooled_moment  # noqa: E402
from tara_core.recipes.osrm import osrm_zoo_name, peft_initial_A  # noqa: E402
from tara_core.zoo import ZooError, open_zoo  # noqa: E402

HELD_OUT = 128


def held_out_interference(As: list[dict], held: list[dict]) -> pd.DataFrame:
    """One row per (task t, other task j, module): task t's A against task j's held-out second moment."""
    rows = []
    for t, per_module in enumerate(As):
        for j, moments in enumerate(held):
            for m, A in per_module.items():
                rows.append({"module": split_module_name(m)[1], "own": j == t,
                             "value": input_interference(A, moments[m].S)})
    return pd.DataFrame(rows)


def main() -> None:
    from bench_preference import cpu_name

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="demo-text")
    ap.add_argument("--samples", default="8,16,48,128", help="inputs per task behind the covariance")
    args = ap.parse_args()
    zoo = open_zoo(args.zoo)
    modules = zoo.adapters.module_names
    r = zoo.adapters.adapters[0].ranks[modules[0]]
    d_in = {m: zoo.adapters.adapters[0].modules[m].A.shape[1] for m in modules}
    if any(len(d.val) < HELD_OUT + 8 for d in zoo.data):
        raise SystemExit(f"{zoo.name}: needs at least {HELD_OUT + 8} val inputs per task")
    held = [collect_second_moments(zoo.backbone, d.val[-HELD_OUT:], modules) for d in zoo.data]
    out = {}

    def osrm_As(n: int, rank: int) -> list[dict]:
        fit = [collect_second_moments(zoo.backbone, d.val[:n], modules) for d in zoo.data]
        return [{m: osrm_init(pooled_moment([fit[k][m] for k in range(len(fit)) if k != t]), rank) for m in modules}
                for t in range(len(fit))]

    for n in [int(x) for x in args.samples.split(",")]:
        out[f"OSRM init, n = {n}, r = {r}"] = held_out_interference(osrm_As(n, r), held)
    for rank in (2 * r, 4 * r):
        out[f"OSRM init, n = 48, r = {rank}"] = held_out_interference(osrm_As(48, rank), held)
    cfg = dict(zoo.manifest.build["config"])
    out[f"PEFT random init, r = {r}"] = held_out_interference(
        [peft_initial_A(zoo, t, cfg) for t in range(len(zoo.task_names))], held)
    for label, name in (("standard", zoo.name), ("OSRM", osrm_zoo_name(zoo.name)),
                        ("OSRM, A frozen", osrm_zoo_name(zoo.name, freeze_A=True))):
        try:
            twin = zoo if name == zoo.name else open_zoo(name)
        except ZooError:
            continue
        out[f"after fine-tuning: {label}"] = held_out_interference(
            [{m: a.modules[m].A for m in modules} for a in twin.adapters.adapters], held)
    table = pd.DataFrame({k: {"all modules": v[~v.own].value.mean(),
                              **v[~v.own].groupby("module").value.mean().to_dict(),
                              "own task's inputs": v[v.own].value.mean()} for k, v in out.items()}).T
    random_level = sum((1 / d) ** 0.5 for d in d_in.values()) / len(d_in)
    print_frame(table.rename_axis("A").reset_index(),
                f"{zoo.name}: input interference on held-out val inputs (mean over modules and ordered task pairs; "
                f"{HELD_OUT} held-out inputs per task; a random A: sqrt(1/d_in) = {random_level:.3f}; "
                f"{cpu_name()}, fp32)")


if __name__ == "__main__":
    main()
