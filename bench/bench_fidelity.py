"""Issue 19's controlled study on a demo zoo: one factor at a time, hyperparameters chosen on a labeled dev split.

For TA, TIES (their λ), AdaMerging task-/layer-wise, TARA-A and TARA-B (their step count, and the size of the
unlabeled merge set), every setting is evaluated on a **labeled dev split** and on the test split; each
method's setting is chosen by its dev average normalized accuracy (the same rule for every method), and the
table reports its test value at that setting. The dev split and the larger unlabeled merge sets are the zoo's
own extra files (``zoo extend``; :meth:`tara_core.zoo.Zoo.extra`, ``merge_set``): on demo-text they are texts
the zoo's recipe leaves out (de-duplicated, same seeded shuffle, after test | val | train), disjoint from every
split the zoo ships and from the adapters' training data. On demo-vision some sources leave (almost) no image out
(8×8 digits: none), so both are carved from each task's train split (dev: its last images, pool: its first):
disjoint from val and test, but the adapters were trained on them, so dev accuracies are in-sample and only rank
settings. The manifest records each task's sizes and rule.

Steps are one run per method: φ after s steps is the result of a run with ``steps = s`` (the data order and AdamW
do not depend on the total; ``optimize(on_step=...)``). Normalized accuracy divides by each adapter's own
accuracy on the same examples (dev: measured here; test: the zoo's full-test record).

    .venv/bin/python bench/bench_fidelity.py --dev 200 --steps 50,100,250 --pool 256,1000
    .venv/bin/python bench/bench_fidelity.py --steps 50,100,250 --pool 1000,4000 --skip-data-free
    .venv/bin/python bench/bench_fidelity.py --zoo demo-vision --dev 200 --steps 50,80,100,250,500 --pool 256,1000
    .venv/bin/python bench/bench_fidelity.py --zoo demo-text --steps 80 --pool 256 --starts ta-kl --lambdas 0.1,0.15,0.2,0.3,0.4
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tara_core.evaluate import evaluate, individual_accuracies, merged_overrides, predict_logits  # noqa: E402
from tara_core.methods import get_method, merge  # noqa: E402
from tara_core.optimize import MergeData, merge_from_phi, optimize  # noqa: E402
from tara_core.zoo import open_zoo  # noqa: E402

LEARNED = ("adamerging-task", "adamerging-layer", "tara-a", "tara-b")
LAMBDAS = (0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
# "<method>+kl": the method with the label-free objective of the preference models (KL to each adapter's own
# predictions, TA-normalized gaps, STCH α = 0.1; lr 1e-2, no weight decay) instead of the paper's entropy
KL_OBJECTIVE = {"loss": "kl", "gap": "ta", "alpha": 0.1, "lr": 1e-2, "weight_decay": 0.0}


def task_accuracy_on(zoo, task: int, overrides, inputs: list[str], labels: torch.Tensor) -> float:
    """Accuracy (%) of task ``task``'s head on the given labeled inputs, with these weight overrides."""
    pred = zoo.heads[task].predict(predict_logits(zoo, task, inputs, overrides))
    return 100.0 * float((pred == labels).float().mean())


def accuracy_on(zoo, result, inputs: list[list[str]], labels: list[torch.Tensor]) -> list[float]:
    """Accuracy (%) per task of a merge (None: the base) on the given labeled inputs."""
    overrides = merged_overrides(zoo, result)
    return [task_accuracy_on(zoo, i, overrides, x, y) for i, (x, y) in enumerate(zip(inputs, labels))]


def alone(zoo, task: int):
    """Weight overrides of task ``task``'s adapter by itself (what normalized accuracy divides by)."""
    return merged_overrides(zoo, merge(zoo.adapters.subset([task]), "cat"))


def scaled_heads(zoo, scale: float) -> MergeData:
    """The merge data with every (cosine) head's logit scale set to ``scale`` and the anchors z_i re-measured
    at it (each adapter's mean entropy on its val inputs; logits scale linearly, so from the zoo's logits)."""
    import dataclasses

    from tara_core.objective import entropy

    data = MergeData.from_zoo(zoo)
    anchors = []
    for i, head in enumerate(zoo.heads):
        logits = predict_logits(zoo, i, zoo.data[i].val, alone(zoo, i)) * (scale / head.logit_scale)
        anchors.append(float(entropy(logits).mean()))
    data.heads = [dataclasses.replace(h, logit_scale=scale) for h in zoo.heads]
    data.anchors = torch.tensor(anchors)
    return data


def normalized(acc: list[float], individual: list[float]) -> float:
    return sum(100.0 * a / b for a, b in zip(acc, individual)) / len(acc)


def main() -> None:
    from bench_preference import cpu_name

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="demo-text")
    ap.add_argument("--dev", type=int, default=200, help="labeled dev examples per task")
    ap.add_argument("--steps", default="50,100,250", help="step counts of the learned methods (one run each)")
    ap.add_argument("--pool", default="256,1000", help="unlabeled merge-set sizes per task (256 = the zoo's val)")
    ap.add_argument("--methods", default=",".join(LEARNED), help="learned methods; '<method>+kl' runs it with the "
                                                                 "preference models' KL objective")
    ap.add_argument("--weight-decays", type=lambda t: [float(x) for x in t.split(",")], default=[],
                    help="extra runs of each learned method at these AdamW weight decays (default 0.01)")
    ap.add_argument("--logit-scales", type=lambda t: [float(x) for x in t.split(",")], default=[],
                    help="extra runs of each learned method with the heads' logit scale set to these (zoo: 20)")
    ap.add_argument("--phi-inits", type=lambda t: [float(x) for x in t.split(",")], default=[],
                    help="extra runs of each learned method started at these φ (default 0.4, TA's λ = 0.4)")
    ap.add_argument("--starts", type=lambda t: t.split(","), default=[],
                    help="extra runs from these starts of φ (optimize's 'start': fixed, ta-kl), e.g. ta-kl")
    ap.add_argument("--lambdas", type=lambda t: [float(x) for x in t.split(",")], default=list(LAMBDAS),
                    help="TA's and TIES' λ grid")
    ap.add_argument("--skip-data-free", action="store_true", help="do not sweep TA's and TIES' λ")
    ap.add_argument("--test-limit", type=int, help="test examples per task (default: all; a smaller number is a "
                                                  "smoke run)")
    ap.add_argument("--out", help="write every measured row to this JSON file")
    args = ap.parse_args()
    console = Console()
    zoo = open_zoo(args.zoo)
    n = len(zoo.task_names)
    steps = sorted(int(s) for s in args.steps.split(","))
    pools = sorted(int(p) for p in args.pool.split(",") if p)  # "": only the weight-decay / logit-scale runs
    extras = [zoo.extra(i) for i in range(n)]
    short = [t for t, e in zip(zoo.task_names, extras) if len(e.dev_inputs) < args.dev]
    if short:
        raise SystemExit(f"{', '.join(short)}: fewer than {args.dev} dev examples in the zoo (`python -m tara_core zoo "
                         f"extend {zoo.name}` writes them)")
    dev_x = [e.dev_inputs[:args.dev] for e in extras]
    dev_y = [e.dev_labels[:args.dev] for e in extras]
    available = [len(zoo.data[i].val) + len(e.pool) for i, e in enumerate(extras)]
    for pool in pools:
        fewer = [f"{t} {a}" for t, a in zip(zoo.task_names, available) if a < pool]
        if fewer:  # e.g. demo-vision's 8×8 digits: a 1,041-image train split
            console.print(f"merge set {pool}: fewer inputs for {', '.join(fewer)} (all they have)")
    # each adapter alone on its own task's dev texts (the dev normalization)
    dev_individual = [task_accuracy_on(zoo, i, alone(zoo, i), dev_x[i], dev_y[i]) for i in range(n)]
    if args.test_limit is None:
        test_individual = [t.individual_accuracy for t in zoo.manifest.tasks]
    else:  # a smoke run: the same subset for the denominators
        test_individual = list(individual_accuracies(zoo, limit=args.test_limit).values())
    rows = []

    def record(method: str, factor: str, value, result) -> dict:
        dev = normalized(accuracy_on(zoo, result, dev_x, dev_y), dev_individual)
        test_acc = evaluate(zoo, result, limit=args.test_limit)
        test = normalized([test_acc[t] for t in zoo.task_names], test_individual)
        row = {"method": method, "factor": factor, "value": value, "dev": dev, "test": test}
        rows.append(row)
        console.print(f"  {method} {factor}={value}: dev {dev:.1f}  test {test:.1f}")
        return row

    for method in () if args.skip_data_free else ("ta", "ties"):
        for lam in args.lambdas:
            record(method, "lambda", lam, merge(zoo.adapters, method, **{"lambda": lam}))
    uniform = [1.0 / n] * n
    val_size = len(zoo.data[0].val)

    def learned_run(method: str, label: str, data: MergeData, overrides: dict) -> None:
        """One run of a learned method up to the largest step count; every step count in ``steps`` recorded."""
        base, _, objective = method.partition("+")
        cfg = {**get_method(base).resolve({}), **(KL_OBJECTIVE if objective == "kl" else {}), **overrides,
               "steps": max(steps)}
        kept = {}
        start = time.perf_counter()
        run = optimize(data, zoo.adapters, base, rho=uniform, config=cfg,
                       on_step=lambda s, phi: kept.__setitem__(s, {k: v.detach().clone() for k, v in phi.items()})
                       if s in steps else None)
        console.print(f"{method}, {label}: {run.steps_run} steps in {time.perf_counter() - start:.0f} s")
        for s in sorted(kept):
            record(method, label, s, merge_from_phi(run.param, kept[s], zoo.adapters, base, params={"rho": uniform}))

    for method in args.methods.split(","):
        for pool in pools:
            data = MergeData.from_zoo(zoo)
            if pool != val_size:
                data.val = [zoo.merge_set(i, min(pool, available[i])) for i in range(n)]
            learned_run(method, "steps" if pool == val_size else f"steps, pool {pool}", data, {})
        for wd in args.weight_decays:
            learned_run(method, f"steps, weight decay {wd:g}", MergeData.from_zoo(zoo), {"weight_decay": wd})
        for init in args.phi_inits:
            learned_run(method, f"steps, φ init {init:g}", MergeData.from_zoo(zoo), {"phi_init": init})
        for begin in args.starts:
            learned_run(method, f"steps, start {begin}", MergeData.from_zoo(zoo), {"start": begin})
        for scale in args.logit_scales:
            learned_run(method, f"steps, logit scale {scale:g}", scaled_heads(zoo, scale), {})
    where = f"{cpu_name()}, fp32"
    table = Table(title=f"{zoo.name}: every setting (dev = {args.dev} labeled inputs per task; {where})")
    for col in ("method", "factor", "value", "dev avg normalized", "test avg normalized"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["method"], r["factor"], str(r["value"]), f"{r['dev']:.1f}", f"{r['test']:.1f}")
    console.print(table)
    chosen = Table(title=f"{zoo.name}: each method at its dev-chosen setting (test average normalized accuracy)")
    for col in ("method", "chosen on dev", "dev", "test", "best test over its settings (not a choice)"):
        chosen.add_column(col, justify="right")
    by_method: dict[str, list[dict]] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    for method, rs in by_method.items():
        best = max(rs, key=lambda r: r["dev"])
        chosen.add_row(method, f"{best['factor']} = {best['value']}", f"{best['dev']:.1f}", f"{best['test']:.1f}",
                       f"{max(r['test'] for r in rs):.1f}")
    console.print(chosen)
    if args.out:
        Path(args.out).write_text(json.dumps({"dev": args.dev, "where": where, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
