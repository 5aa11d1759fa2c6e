"""Evaluation: per-task accuracy of a merged model, normalized accuracy and the method table.

Normalized accuracy_i = 100 · acc_merged,i / acc_individual,i on the test split (TARA.md §6.6); the average
is the mean over tasks. Inputs are run in fixed batches under ``torch.no_grad``; the base is not mutated
(the merged weights are passed as overrides).
"""
from __future__ import annotations

import math
import time

import pandas as pd
import torch

from .backbones import delta_weights
from .methods import MergeResult
from .objective import entropy
from .precision import autocast

__all__ = ["merged_overrides", "predict_logits", "task_accuracy", "evaluate", "mean_entropy", "eval_rows",
           "individual_accuracies"]


def merged_overrides(zoo, result: MergeResult | dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    """W_0 + ΔW for every merged module, as functional_call overrides (None: the base alone)."""
    if result is None:
        return None
    deltas = result if isinstance(result, dict) else {m: result.dense(m) for m in result.deltas}
    fifo = zoo.adapters.fan_in_fan_out
    deltas = {m: (d.T if fifo.get(m) else d) for m, d in deltas.items()}
    return delta_weights(zoo.backbone.model, {m: d.to(zoo.device) for m, d in deltas.items()})


@torch.no_grad()
def predict_logits(zoo, task: int, inputs: list, overrides=None, batch_size: int = 256,
                   bf16: bool = False) -> torch.Tensor:
    bb, head = zoo.backbone, zoo.heads[task]
    outs = []
    for start in range(0, len(inputs), batch_size):
        batch = bb.preprocess(inputs[start:start + batch_size])
        with autocast(getattr(bb, "device", "cpu"), bf16):
            features = bb.features(batch, overrides)
        outs.append(head(features.float()).cpu())
    return torch.cat(outs) if outs else torch.zeros(0, head.weight.shape[0])


def task_accuracy(zoo, task: int, overrides=None, limit: int | None = None, bf16: bool = False) -> float:
    data = zoo.data[task]
    inputs, labels = data.test_inputs[:limit], data.test_labels[:limit]
    pred = zoo.heads[task].predict(predict_logits(zoo, task, inputs, overrides, bf16=bf16))
    return 100.0 * float((pred == labels).float().mean())


def evaluate(zoo, result=None, tasks: list[int] | None = None, limit: int | None = None,
             bf16: bool = False, progress=None) -> dict[str, float]:
    """Test accuracy (%) per task for a merge result (or a dict of dense deltas, or None for the base).

    ``bf16`` runs the backbone under bf16 autocast (see :mod:`tara_core.precision`); the default is fp32.
    ``progress(done, total)`` is called after each task.
    """
    overrides = merged_overrides(zoo, result)
    tasks = list(range(len(zoo.task_names)) if tasks is None else tasks)
    out = {}
    for k, i in enumerate(tasks):
        out[zoo.task_names[i]] = task_accuracy(zoo, i, overrides, limit, bf16)
        if progress is not None:
            progress(k + 1, len(tasks))
    return out


def individual_accuracies(zoo, tasks: list[int] | None = None, limit: int | None = None,
                          bf16: bool = False) -> dict[str, float]:
    """Each task's accuracy with its own adapter alone — the denominators of normalized accuracy — on the
    same examples a merge is evaluated on: the recorded full-test value without ``limit``, measured on the
    first ``limit`` test examples otherwise (memoized per zoo), so a subset never divides by a full-test number."""
    from .methods import merge

    tasks = range(len(zoo.task_names)) if tasks is None else tasks
    recorded = {t.name: t.individual_accuracy for t in zoo.manifest.tasks}
    out = {}
    memo = zoo.memo.setdefault("individual_accuracy", {})
    for i in tasks:
        name = zoo.task_names[i]
        if limit is None or limit >= len(zoo.data[i].test_labels):
            if recorded[name] is not None:
                out[name] = recorded[name]
                continue
        key = (i, limit, bf16)  # the adapters of an opened zoo never change
        if key not in memo:
            memo[key] = evaluate(zoo, merge(zoo.adapters.subset([i]), "cat"), tasks=[i], limit=limit, bf16=bf16)[name]
        out[name] = memo[key]
    return out


def mean_entropy(zoo, task: int, overrides=None, limit: int | None = None) -> float:
    """Mean predictive entropy on the task's unlabeled val rows (the first ``limit``): the anchor z_i."""
    return float(entropy(predict_logits(zoo, task, zoo.data[task].val[:limit], overrides)).mean())


def eval_rows(method: str, accuracies: dict[str, float], individual: dict[str, float], seconds: float | None = None) -> list[dict]:
    """Tidy rows {method, task, accuracy, individual_accuracy, normalized_accuracy} plus an 'average' row."""
    rows = []
    for task, acc in accuracies.items():
        ind = individual.get(task)
        rows.append({"method": method, "task": task, "accuracy": acc, "individual_accuracy": ind,
                     "normalized_accuracy": 100.0 * acc / ind if ind else math.nan})
    avg = {"method": method, "task": "average",
           "accuracy": sum(r["accuracy"] for r in rows) / len(rows),
           "individual_accuracy": sum(r["individual_accuracy"] or 0 for r in rows) / len(rows),
           "normalized_accuracy": sum(r["normalized_accuracy"] for r in rows) / len(rows)}
    rows.append(avg)
    if seconds is not None:
        for r in rows:
            r["seconds"] = seconds
    return rows


def timed_eval(zoo, method_name: str, make_result) -> list[dict]:
    """Run ``make_result()`` (a merge), evaluate it, and return tidy rows with the merge+eval time."""
    start = time.perf_counter()
    result = make_result()
    merge_s = time.perf_counter() - start
    acc = evaluate(zoo, result)
    individual = {t.name: t.individual_accuracy for t in zoo.manifest.tasks}
    rows = eval_rows(method_name, acc, individual)
    for r in rows:
        r["merge_seconds"] = round(merge_s, 3)
        r["eval_seconds"] = round(time.perf_counter() - start - merge_s, 3)
    return rows


def table(rows: list[dict]) -> pd.DataFrame:
    """Methods × tasks table of normalized accuracy (the README / paper layout)."""
    df = pd.DataFrame(rows)
    return df.pivot_table(index="method", columns="task", values="normalized_accuracy", sort=False)
