"""The one optimizer TARA-A, TARA-B and AdaMerging share (TARA.md §6.3–6.4).

Each step draws one unlabeled batch from **every** task (``batch_size`` per task, a seeded order per task),
runs them through the merged model in a single forward (the backbone is shared; each task uses its own
head), and takes an AdamW step (lr 1e-3, weight decay 0.01 as in PyTorch's default) on the scalarized
entropies. φ starts at ``phi_init`` = 0.4 everywhere (Task Arithmetic with λ = 0.4) or at a previous φ
(**warm start**, when only ρ changed). A progress callback sees (step, total, losses) and a cancel check
is polled before every step; a cancelled run returns the best φ seen so far.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import torch

from .adapters import AdapterSet
from .backbones import delta_weights, supports_side_path
from .lowrank import Factors
from .methods import MergeError, MergeResult
from .methods.learned import OptimizeConfig, parse_config
from .objective import entropy, scalarize, sharpen, task_loss, validate_rho
from .precision import autocast
from .tara import Parameterization, build_parameterization, choose_mode, install_side_path_hooks, side_paths

__all__ = ["OptimizeConfig", "MergeData", "OptimizeResult", "optimize", "reference_steps", "task_logits",
           "task_entropies", "task_losses", "expert_probabilities", "reference_losses", "ta_kl_losses", "ta_kl_start",
           "TA_KL_GRID", "parse_config"]


@dataclass
class MergeData:
    """What a data-driven merge sees: the backbone, each task's head, unlabeled inputs and anchors z_i.

    ``teachers`` (optional): per task, each adapter's own predicted probabilities on its task's ``val``
    inputs (rows aligned with ``val``), what the ``kl`` loss distills to (:func:`expert_probabilities`).
    """

    backbone: object
    heads: list
    val: list[list]
    anchors: torch.Tensor | None
    names: list[str]
    teachers: list[torch.Tensor] | None = None

    @classmethod
    def from_zoo(cls, zoo, tasks: Sequence[int] | None = None, merge_set: int | None = None) -> "MergeData":
        """The zoo's merge data for ``tasks``; ``merge_set`` unlabeled inputs per task (default: each task's val
        split; more adds the zoo's shipped pool, :meth:`tara_core.zoo.Zoo.merge_set`). The anchors z_i stay the
        zoo's (measured on val)."""
        tasks = list(range(len(zoo.task_names))) if tasks is None else list(tasks)
        infos = [zoo.manifest.tasks[i] for i in tasks]
        z = [t.anchor_entropy for t in infos]
        anchors = None if any(v is None for v in z) else torch.tensor(z, dtype=torch.float32)
        return cls(zoo.backbone, [zoo.heads[i] for i in tasks], [zoo.merge_set(i, merge_set) for i in tasks], anchors,
                   [t.name for t in infos])

    def subset(self, tasks: Sequence[int]) -> "MergeData":
        tasks = list(tasks)
        return MergeData(self.backbone, [self.heads[i] for i in tasks], [self.val[i] for i in tasks],
                         None if self.anchors is None else self.anchors[tasks], [self.names[i] for i in tasks],
                         None if self.teachers is None else [self.teachers[i] for i in tasks])


@dataclass
class OptimizeResult:
    variant: str
    rho: list[float]
    phi: dict[str, torch.Tensor]
    best_phi: dict[str, torch.Tensor]
    best_step: int
    history: list[dict] = field(default_factory=list)
    steps_run: int = 0
    cancelled: bool = False
    seconds: float = 0.0
    config: dict = field(default_factory=dict)

    def final_losses(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def _modes(param: Parameterization, tokens: int, mode: str, model: torch.nn.Module) -> dict[str, str]:
    """Per module 'materialized' or 'side' (modules a hook cannot extend, e.g. an MHA's in_proj, are always
    materialized)."""
    out = {}
    for m, p in param.modules.items():
        if not supports_side_path(model, m):
            out[m] = "materialized"
        else:
            out[m] = choose_mode(p, tokens) if mode == "auto" else mode
    return out


def task_logits(data: MergeData, param: Parameterization, phi: dict[str, torch.Tensor], batches: list[list],
                modes: dict[str, str] | None = None, fan_in_fan_out: dict[str, bool] | None = None) -> list[torch.Tensor]:
    """Each task's head logits on its batch, through one forward of the merged model ΔW(φ)."""
    bb = data.backbone
    sizes = [len(b) for b in batches]
    batch = bb.preprocess([x for b in batches for x in b])
    if modes is None:
        modes = _modes(param, bb.token_count(batch), "auto", bb.model)
    deltas, paths = {}, {}
    fifo = fan_in_fan_out or {}
    for m, p in param.modules.items():
        g = param.gate(phi, m)
        if modes[m] == "side":
            paths[m] = (lambda x, p=p, g=g: p.side(g, x))
        else:
            d = p.delta(g)
            deltas[m] = d.T if fifo.get(m) else d
    overrides = delta_weights(bb.model, deltas)
    if paths:
        install_side_path_hooks(bb.model, list(paths))
    with side_paths(paths):
        feats = bb.features(batch, overrides or None)
    out, start = [], 0
    for head, n in zip(data.heads, sizes):
        out.append(head(feats[start:start + n]))
        start += n
    return out


def task_entropies(data: MergeData, param: Parameterization, phi: dict[str, torch.Tensor], batches: list[list],
                   modes: dict[str, str] | None = None, fan_in_fan_out: dict[str, bool] | None = None) -> torch.Tensor:
    """Mean predictive entropy per task (N) of the merged model ΔW(φ) on one batch per task."""
    logits = task_logits(data, param, phi, batches, modes, fan_in_fan_out)
    return torch.stack([entropy(z).mean() for z in logits])


def task_losses(data: MergeData, param: Parameterization, phi: dict[str, torch.Tensor], rows: list[list[int]],
                loss: str = "entropy", modes: dict[str, str] | None = None,
                fan_in_fan_out: dict[str, bool] | None = None) -> torch.Tensor:
    """The label-free loss f_i per task (N) on the val rows ``rows[i]`` of each task (:func:`task_loss`)."""
    if loss == "kl" and data.teachers is None:
        raise MergeError("loss 'kl' needs the experts' predictions (MergeData.teachers); see expert_probabilities")
    batches = [[v[j] for j in r] for v, r in zip(data.val, rows)]
    logits = task_logits(data, param, phi, batches, modes, fan_in_fan_out)
    teachers = [None] * len(rows) if loss != "kl" else [t[r] for t, r in zip(data.teachers, rows)]
    return torch.stack([task_loss(z, loss, t) for z, t in zip(logits, teachers)])


@torch.no_grad()
def expert_probabilities(data: MergeData, adapters: AdapterSet, batch_size: int = 128,
                          rows: int | None = None) -> list[torch.Tensor]:
    """Per task i: softmax of task i's head with adapter i alone (W_0 + ΔW_i) on task i's val inputs (the first
    ``rows``; all by default) — the experts' own predictions the ``kl`` loss distills to. Needs no labels."""
    bb = data.backbone
    out = []
    for i, inputs in enumerate(data.val):
        inputs = inputs[:rows]
        deltas = {}
        for m in adapters.module_names:
            f = adapters.factors(m)[i]
            if f is not None:
                d = f.materialize()
                deltas[m] = d.T if adapters.fan_in_fan_out.get(m) else d
        overrides = delta_weights(bb.model, {m: d.to(getattr(bb, "device", "cpu")) for m, d in deltas.items()})
        probs = []
        for start in range(0, len(inputs), batch_size):
            feats = bb.features(bb.preprocess(list(inputs[start:start + batch_size])), overrides or None)
            probs.append(torch.softmax(data.heads[i](feats).float(), dim=-1).cpu())
        out.append(torch.cat(probs))
    return out


@torch.no_grad()
def reference_losses(data: MergeData, param: Parameterization, phi: dict[str, torch.Tensor], loss: str,
                     rows: int = 64, batch_size: int = 16, fan_in_fan_out: dict[str, bool] | None = None) -> torch.Tensor:
    """f_i at a fixed φ (the TA start point for ``ta`` gaps) on the first ``rows`` val inputs of every task."""
    n = min(rows, min(len(v) for v in data.val))
    total = torch.zeros(len(data.val), dtype=torch.float64)
    count = 0
    for start in range(0, n, batch_size):
        idx = [list(range(start, min(start + batch_size, n)))] * len(data.val)
        total += task_losses(data, param, phi, idx, loss, fan_in_fan_out=fan_in_fan_out).double() * len(idx[0])
        count += len(idx[0])
    return (total / max(count, 1)).float()


def objective_terms(data: MergeData, cfg, param: Parameterization, adapters: AdapterSet,
                    f_ta: torch.Tensor | None = None):
    """(anchors z, gap scale or None) of a config: z = the zoo's anchors for ``entropy``, 0 for ``kl``; the
    ``ta`` gap scale = |f(TA) − z| measured at φ ≡ φ_init (``f_ta``: those losses when already measured)."""
    if cfg.loss == "kl":
        if data.teachers is None:
            data.teachers = expert_probabilities(data, adapters)
        anchors = torch.zeros(len(data.val))
    else:
        anchors = data.anchors
        if anchors is None and (cfg.scalarization != "linear" or cfg.gap == "ta"):
            raise MergeError(f"scalarization {cfg.scalarization!r} needs anchors z_i; use scalarization=linear")
    scale = None
    if cfg.gap == "ta":
        if f_ta is None:
            f_ta = reference_losses(data, param, param.initial(cfg.phi_init), cfg.loss,
                                    fan_in_fan_out=adapters.fan_in_fan_out)
        scale = (f_ta - anchors.to(f_ta.dtype)).abs().clamp_min(1e-4)
    return anchors, scale


TA_KL_GRID = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)


def ta_kl_losses(data: MergeData, param: Parameterization, adapters: AdapterSet,
                 grid: Sequence[float] = TA_KL_GRID, rows: int = 64) -> dict[float, torch.Tensor]:
    """{λ: per-task KL(p_adapter_i ‖ p_merged)} of Task Arithmetic's merge at each λ in ``grid`` (φ ≡ λ is TA with
    λ in every variant), on the first ``rows`` unlabeled inputs of task i. The experts' predictions are computed
    on those rows only, unless ``data`` already holds them (the ``kl`` loss needs them on every row)."""
    if data.teachers is None:
        data = replace(data, teachers=expert_probabilities(data, adapters, rows=rows))
    return {float(lam): reference_losses(data, param, param.initial(lam), "kl", rows=rows,
                                         fan_in_fan_out=adapters.fan_in_fan_out) for lam in grid}


def ta_kl_start(losses: dict[float, torch.Tensor]) -> tuple[float, dict[float, float]]:
    """The label-free start φ ≡ λ (``start=ta-kl``) from :func:`ta_kl_losses`: the λ whose TA merge has the
    smallest mean over tasks of KL(p_adapter_i ‖ p_merged). Returns (λ, {λ: mean KL}). On the demo zoos it picks
    the λ a labeled dev split picks (demo-vision 0.15, demo-text 0.4; README)."""
    kl = {lam: float(v.mean()) for lam, v in losses.items()}
    return min(kl, key=kl.get), kl


def step_modes(data: MergeData, param: Parameterization, rows: list[list[int]], mode: str) -> dict[str, str]:
    """Per-module application mode for batches like ``rows`` (the cost model sees their token count)."""
    probe = data.backbone.preprocess([v[j] for v, r in zip(data.val, rows) for j in r])
    return _modes(param, data.backbone.token_count(probe), mode, data.backbone.model)


def reference_steps(sizes: Sequence[int], batch_size: int, epochs: int) -> int:
    """The reference code's step count (TARA.md §6.4): epochs × min(50, min_i len(val_loader_i)), a loader of
    n_i unlabeled inputs having ⌈n_i / batch⌉ batches. 250 at 5 epochs once every task has ≥ 50 batches; 80 on
    the demo zoos (256 inputs per task, batch 16)."""
    if not sizes:
        raise MergeError("no tasks to merge")
    return epochs * min(50, min(math.ceil(n / batch_size) for n in sizes))


class Sampler:
    """Seeded, cycling, without-replacement batches per task."""

    def __init__(self, sizes: list[int], batch_size: int, seed: int):
        self.gens = [torch.Generator().manual_seed(seed * 7919 + i) for i in range(len(sizes))]
        self.sizes, self.bs = sizes, batch_size
        self.orders = [torch.randperm(n, generator=g) for n, g in zip(sizes, self.gens)]
        self.pos = [0] * len(sizes)

    def next(self, i: int) -> list[int]:
        n = self.sizes[i]
        bs = min(self.bs, n)
        if self.pos[i] + bs > n:
            self.orders[i], self.pos[i] = torch.randperm(n, generator=self.gens[i]), 0
        idx = self.orders[i][self.pos[i]:self.pos[i] + bs].tolist()
        self.pos[i] += bs
        return idx


def optimize(
    data: MergeData,
    adapters: AdapterSet,
    variant: str,
    rho: Sequence[float] | None = None,
    config: OptimizeConfig | dict | None = None,
    warm_start: dict[str, torch.Tensor] | None = None,
    param: Parameterization | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_best: Callable[[dict[str, torch.Tensor], int], None] | None = None,
    on_step: Callable[[int, dict[str, torch.Tensor]], None] | None = None,
) -> OptimizeResult:
    """Learn φ for ``variant`` under preference ``rho`` (TARA.md §6).

    Args:
        data: backbone, heads, unlabeled val inputs and anchors of the N tasks.
        adapters: the N adapters (same order as ``data``).
        variant: 'tara-a', 'tara-b', 'adamerging-layer' or 'adamerging-task'.
        rho: task preference (validated and normalized; uniform by default).
        config: :class:`OptimizeConfig` or a dict of its fields.
        warm_start: a previous φ (same variant and adapters) to start from instead of ``phi_init``.
        param: a prebuilt :class:`Parameterization` (reuse the per-module SVDs across runs).
        progress: called after every step with (step, total, {"loss", <task>: entropy, ...}).
        should_cancel: polled before every step; True stops the run and returns the best φ so far.
        on_best: called with (a copy of the best φ so far, its step) whenever it improves, so that a caller
            whose run may be interrupted from outside (a dashboard rerun) keeps the best φ.
        on_step: called after every update with (steps done, the live φ): φ after s steps is the result of
            the same run with ``steps = s`` (the data order and AdamW do not depend on the total), so one run
            serves a sweep over step counts (``bench/bench_fidelity.py``). Copy φ to keep it.
    """
    cfg = config if isinstance(config, OptimizeConfig) else parse_config(dict(config or {}))
    n = len(adapters)
    if len(data.heads) != n:
        raise MergeError(f"{len(data.heads)} tasks of data for {n} adapters")
    rho_t = validate_rho(rho, n)
    clamp = None
    if cfg.clamp_min is not None or cfg.clamp_max is not None:
        clamp = (cfg.clamp_min if cfg.clamp_min is not None else -float("inf"),
                 cfg.clamp_max if cfg.clamp_max is not None else float("inf"))
    if param is None:
        param = build_parameterization(adapters, variant, cfg.phi_init, clamp)
    elif param.variant != variant:
        raise MergeError(f"prebuilt parameterization is {param.variant!r}, not {variant!r}")
    device = getattr(data.backbone, "device", "cpu")
    param.to(device)  # the factors live where the backbone runs (a no-op on CPU)
    param.clamp = clamp
    start_kl = f_ta = None
    if cfg.start == "ta-kl" and warm_start is None:
        if cfg.loss == "kl" and data.teachers is None:  # every row, once: the start and the loss share them
            data.teachers = expert_probabilities(data, adapters)
        losses = ta_kl_losses(data, param, adapters)
        chosen, start_kl = ta_kl_start(losses)
        cfg = cfg.model_copy(update={"phi_init": chosen})  # the start, and the TA point of ``ta`` gaps
        f_ta = losses[chosen] if cfg.loss == "kl" else None  # the kl loss at that TA point: measured already
    anchors, scale = objective_terms(data, cfg, param, adapters, f_ta)
    if warm_start is not None:
        if set(warm_start) != set(param.shapes) or any(warm_start[k].shape != param.shapes[k] for k in warm_start):
            raise MergeError("warm_start φ does not match this variant and adapter set")
        start_phi = {k: v.detach().clone().float() for k, v in warm_start.items()}
    else:
        start_phi = param.initial(cfg.phi_init)
    phi = {k: v.to(device).requires_grad_(True) for k, v in start_phi.items()}
    best_phi = {k: v.detach().clone() for k, v in phi.items()}
    opt = torch.optim.AdamW(list(phi.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sizes = [len(v) for v in data.val]
    steps = cfg.steps if cfg.steps is not None else reference_steps(sizes, cfg.batch_size, cfg.epochs)
    sampler = Sampler(sizes, cfg.batch_size, cfg.seed)
    result = OptimizeResult(variant, rho_t.tolist(), phi, best_phi, 0, config={**cfg.model_dump(), "steps": steps})
    if start_kl is not None:
        result.config["start_kl"] = [[lam, kl] for lam, kl in start_kl.items()]  # each TA λ tried: mean KL
    best_loss = float("inf")
    modes = None
    start = time.perf_counter()
    for step in range(steps):
        if should_cancel is not None and should_cancel():
            result.cancelled = True
            break
        rows = [sampler.next(i) for i in range(len(data.val))]
        if modes is None:
            modes = step_modes(data, param, rows, cfg.mode)
        with autocast(getattr(data.backbone, "device", "cpu"), cfg.bf16):
            H = task_losses(data, param, phi, rows, cfg.loss, modes, adapters.fan_in_fan_out)
        loss = scalarize(H.float(), sharpen(rho_t, cfg.sharpness), anchors, cfg.scalarization, cfg.alpha, scale)
        if float(loss.detach()) < best_loss:  # loss of the φ *before* this step's update
            best_loss = float(loss.detach())
            result.best_step = step
            result.best_phi = {k: v.detach().clone() for k, v in phi.items()}
            if on_best is not None:
                on_best(result.best_phi, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        flat = torch.cat([v.detach().flatten() for v in phi.values()])
        record = {"step": step, "loss": float(loss.detach()), **{nm: float(h) for nm, h in zip(data.names, H.detach())},
                  "phi_mean": float(flat.mean()), "phi_std": float(flat.std()) if flat.numel() > 1 else 0.0,
                  "phi_min": float(flat.min()), "phi_max": float(flat.max())}
        result.history.append(record)
        result.steps_run = step + 1
        if on_step is not None:
            on_step(step + 1, phi)
        if progress is not None:
            progress(step + 1, steps, record)
    result.seconds = time.perf_counter() - start
    final = result.best_phi if result.cancelled else {k: v.detach().clone() for k, v in phi.items()}
    result.phi = final
    result.modes = modes or {}
    result.param = param
    return result


def merge_from_phi(param: Parameterization, phi: dict[str, torch.Tensor], adapters: AdapterSet, method: str,
                   params: dict | None = None, info: dict | None = None) -> MergeResult:
    """The merge ΔW(φ) of a parameterization as a :class:`MergeResult` (exact factors; φ kept as coefficients)."""
    return MergeResult(
        method=method,
        params=dict(params or {}),
        deltas={m: Factors(f.B.cpu(), f.A.cpu()) for m, f in param.deltas(phi).items()},  # results live on the CPU
        adapter_names=adapters.names,
        adapter_hashes=[a.sha256 for a in adapters.adapters],
        weight_shapes=dict(adapters.weight_shapes),
        fan_in_fan_out=dict(adapters.fan_in_fan_out),
        coefficients={k: v.detach().cpu() for k, v in phi.items()},
        info={"num_coefficients": param.num_parameters, **(info or {})},
    )


def to_merge_result(result: OptimizeResult, adapters: AdapterSet, method: str | None = None) -> MergeResult:
    """The learned merge of an optimization run, with its config, ρ and run summary."""
    return merge_from_phi(
        result.param, result.phi, adapters, method or result.variant,
        params={**result.config, "rho": result.rho},
        info={"seconds": result.seconds, "steps_run": result.steps_run, "cancelled": result.cancelled,
              "best_step": result.best_step, "final_losses": result.final_losses()},
    )


__all__ += ["merge_from_phi", "to_merge_result"]
