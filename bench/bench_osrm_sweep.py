"""OSRM's robustness claim: Task Arithmetic over λ on standard, OSRM and OSRM-with-A-frozen adapters.

For one demo zoo, the three adapter sets that differ only in how A was treated: **standard** (PEFT's random
A, A and B fine-tuned), **OSRM** (A from the smallest-eigenvalue directions of the other tasks' inputs, then
A and B fine-tuned; ``<zoo>-osrm``) and **OSRM, A frozen** (the same initialization, B alone fine-tuned, so A
stays in that subspace; ``<zoo>-osrm-frozen``, built by ``tara-studio osrm --zoo <zoo> --out DIR --freeze-a``).
Each is merged with TA at every λ and evaluated on the full test splits; normalized accuracy divides by each
set's own adapters alone on the same examples; the last columns give the adapters' own mean accuracy and the
merge's plain mean accuracy at its best λ (adapters that are weaker alone look better normalized). The OSRM
paper reports a merge that is robust to λ: the spread column (best − worst over the λ grid) measures that.

    TARA_ZOO_PATH=/path/with/frozen/zoos .venv/bin/python bench/bench_osrm_sweep.py --zoo demo-text
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tara_core.evaluate import evaluate, individual_accuracies  # noqa: E402
from tara_core.methods import merge  # noqa: E402
from tara_core.recipes.osrm import osrm_zoo_name  # noqa: E402
from tara_core.zoo import open_zoo  # noqa: E402

LAMBDAS = (0.2, 0.4, 0.6, 0.8, 1.0)


def sweep(zoo, lambdas, limit: int | None) -> dict:
    """Average normalized accuracy of TA at each λ, and the adapters' mean accuracy alone."""
    alone = individual_accuracies(zoo, limit=limit)
    row = {"individual": sum(alone.values()) / len(alone)}
    for lam in lambdas:
        acc = evaluate(zoo, merge(zoo.adapters, "ta", **{"lambda": lam}), limit=limit)
        row[lam] = sum(100 * acc[t] / alone[t] for t in acc) / len(acc)
        row[f"accuracy {lam}"] = sum(acc.values()) / len(acc)
    return row


def main() -> None:
    from bench_preference import cpu_name

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="demo-text")
    ap.add_argument("--lambdas", default=",".join(map(str, LAMBDAS)))
    ap.add_argument("--limit", type=int, help="first N test examples per task (default: all)")
    ap.add_argument("--out", help="write the rows as JSON")
    args = ap.parse_args()
    lambdas = [float(x) for x in args.lambdas.split(",")]
    variants = [("standard", args.zoo), ("OSRM", osrm_zoo_name(args.zoo)),
                ("OSRM, A frozen", osrm_zoo_name(args.zoo, freeze_A=True))]
    rows = []
    for label, name in variants:
        row = sweep(open_zoo(name), lambdas, args.limit)
        rows.append({"adapters": label, "zoo": name, **{str(k): v for k, v in row.items()}})
    table = Table(title=f"{args.zoo}: TA average normalized accuracy (%) over λ, full test splits "
                        f"({cpu_name()}, fp32)")
    for col in ["adapters", *[f"λ={lam:g}" for lam in lambdas], "best", "spread", "mean individual acc",
                "merged acc at best λ"]:
        table.add_column(col, justify="left" if col == "adapters" else "right")
    for row in rows:
        values = [row[str(lam)] for lam in lambdas]
        best = lambdas[values.index(max(values))]
        table.add_row(row["adapters"], *[f"{v:.1f}" for v in values], f"{max(values):.1f}",
                      f"{max(values) - min(values):.1f}", f"{row['individual']:.1f}", f"{row[f'accuracy {best}']:.1f}")
    Console().print(table)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
