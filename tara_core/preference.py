"""Preference models: φ(ρ) over the whole simplex, learned once per task set (DESIGN.md §9).

Per-ρ TARA (the paper, TARA.md §6) re-optimizes φ for every preference, and at its learning rate a slider
move barely changes φ. A preference model instead learns the map ρ ↦ φ(ρ) in one fit, as Pareto set learning
does (Pareto HyperNetworks, Navon et al. ICLR 2021; Pareto Merging, Chen & Kwok 2024; PWE-MoE, Tang et al.
2024), and is then evaluated in milliseconds at any ρ.

Parameterization, per coefficient φ_p (TARA-A: one per rank-1 atom; TARA-B: one per (task, shared singular
direction)), with t(p) the task coefficient p belongs to::

    φ_p(ρ) = Φ0_p · s_t(p)(ρ) + (U V ψ(ρ))_p
    s(ρ)   = 1 + A ψ(ρ)                                           per-task scale, A ∈ R^{N×q}
    ψ(ρ)   = [N ρ − 1]              (``linear``,    q = N)
    ψ(ρ)   = [N ρ − 1, (N ρ − 1)²]  (``quadratic``, q = 2N)

With ``scale_form=proportional`` (the default) the whole expression is multiplied by N ρ_t(p) (and A starts at
0): a task at ρ_t = 0 then has every coefficient at 0, its adapter left out of the merge exactly as TA's task
weights leave it out, whatever the fit learned, so a slider dragged to 0 drops its task (on demo-text the
average the dashboard shows falls by 2–3 points for the first task). The ``affine`` form (the default before)
keeps part of a dropped task there (s_t ≈ 0.3 on demo-text) and the others' rise can cancel its fall (+1.0).

Φ0 (the shared profile, one value per coefficient) is φ at uniform ρ, since ψ(1/N) = 0. The per-task scale
says how strongly each task's coefficients respond to the preference (N·q numbers), and U V ψ(ρ) (U: P × k,
V: k × q, rank ``rank``) lets the profile itself change with ρ. Free per-coefficient profiles (P × q) were
tried first and fail: Adam moves each of them by about lr per step whatever its gradient, so the noisy
ρ-dependent part drifts to ±5 and φ(ρ) away from uniform ρ is wrecked (steer −43 points on demo-vision);
the shared profile with few ρ-dependent numbers is what the data can determine.

Initialization: Φ0 = φ_init (Task Arithmetic with λ = φ_init), U = 0, and A = 0 (proportional) or A = [I 0]
(affine: s_t(ρ) = N ρ_t) — so either untrained model is Task Arithmetic with task weights N ρ_t: ρ steers from
the first step.

Fit: every step samples ρ (Dirichlet(c) on the simplex, or with probability ``face_prob`` on a random face:
some tasks exactly 0, vertices included), computes φ(ρ), each task's label-free loss on one unlabeled batch
(:mod:`tara_core.objective`: by default KL to each adapter's own predictions with ``ta``-normalized gaps and
STCH at α = 0.1), and takes one Adam step on (Φ0, Φ). The objective's pieces that do not depend on φ — the
experts' predictions on the val inputs and the TA gap scale — are computed once and stored with the model.

A fitted model is a pair of files, ``<name>.safetensors`` (Φ0, Φ, the experts' probabilities, gap scale and
anchors, and the singular values of the parameterization as a consistency check) and ``<name>.json``
(variant, tasks, the zoo fingerprint and adapter hashes it was fitted on, settings, fit record, and the
safetensors' SHA-256). :func:`load_model` refuses a file whose hash, tasks, adapters or shapes do not match.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .adapters import AdapterSet, file_sha256
from .cache import cache_root
from .methods import MergeError
from .methods.learned import PreferenceConfig, parse_preference_config
from .objective import scalarize, sharpen, validate_rho
from .optimize import MergeData, expert_probabilities, objective_terms, step_modes, task_losses, Sampler
from .precision import autocast
from .tara import Parameterization, build_parameterization

__all__ = ["PreferenceError", "PreferenceModel", "features", "sample_rho", "fit_preference_model",
           "save_model", "load_model", "zoo_fingerprint", "preference_model_for", "cache_root", "FORMAT"]

FORMAT = "tara-studio/preference-model@1"
VARIANTS = ("tara-a", "tara-b")


class PreferenceError(MergeError):
    """A preference model file that is corrupt, tampered with, or fitted on something else."""


FEATURES = ("linear", "quadratic", "rational")


def features(rho: torch.Tensor, kind: str) -> torch.Tensor:
    """ψ(ρ) (q), 0 at uniform ρ: x = N ρ − 1 (``linear``), with x² (``quadratic``) or with the bounded,
    increasing x / (x + 2) = (Nρ − 1)/(Nρ + 1) ∈ [−1, (N−1)/(N+1)] (``rational``)."""
    n = rho.numel()
    centred = n * rho - 1.0
    if kind == "linear":
        return centred
    if kind == "quadratic":
        return torch.cat([centred, centred ** 2])
    if kind == "rational":
        return torch.cat([centred, centred / (centred + 2.0)])
    raise PreferenceError(f"unknown features {kind!r}; use one of {FEATURES}")


def sample_rho(rng: np.random.Generator, n: int, concentration: float = 1.0, face_prob: float = 0.0) -> np.ndarray:
    """One ρ: Dirichlet(concentration) over all tasks, or with probability ``face_prob`` over a random
    proper subset of them (size 1..N−1, the others exactly 0)."""
    rho = np.zeros(n)
    if n > 1 and rng.random() < face_prob:
        size = int(rng.integers(1, n))
        tasks = rng.choice(n, size=size, replace=False)
        rho[tasks] = rng.dirichlet(np.full(size, concentration)) if size > 1 else 1.0
        return rho
    return rng.dirichlet(np.full(n, concentration))


@dataclass
class PreferenceModel:
    """φ(ρ) = Φ0 ⊙ s_t(ρ) + U V ψ(ρ) (affine), times N ρ_t (proportional), for every coefficient vector of a
    parameterization (module docstring)."""

    variant: str
    task_names: list[str]
    feature_kind: str
    base: dict[str, torch.Tensor]  # Φ0 per coefficient key (P,)
    owner: dict[str, torch.Tensor]  # the task of every coefficient (P,), long
    task_scale: torch.Tensor  # A (N, q)
    low: dict[str, torch.Tensor]  # U per key (P, k)
    mix: torch.Tensor  # V (k, q)
    teachers: list[torch.Tensor] | None = None  # experts' probabilities on each task's val inputs (kl loss)
    scale: torch.Tensor | None = None  # ta gap scale |f(TA) − z| per task
    anchors: torch.Tensor | None = None  # z per task
    meta: dict = field(default_factory=dict)  # settings, fingerprint, fit record
    check: dict[str, torch.Tensor] | None = None  # σ per module of the parameterization it was fitted on
    proportional: bool = False  # scale_form "proportional": every coefficient of task t times N ρ_t

    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    def leaves(self) -> list[torch.Tensor]:
        """The learned tensors: [Φ0..., A], and the low-rank part [U..., V] (trained at their own rate)."""
        return [*self.base.values(), self.task_scale], [*self.low.values(), self.mix]

    @property
    def num_parameters(self) -> int:
        return sum(t.numel() for group in self.leaves() for t in group)

    def phi(self, rho: Sequence[float] | torch.Tensor) -> dict[str, torch.Tensor]:
        """φ(ρ) for a preference (validated, normalized to sum 1)."""
        r = rho if isinstance(rho, torch.Tensor) else validate_rho(rho, self.n_tasks)
        r = r.to(self.mix.dtype).to(self.mix.device)
        psi = features(r, self.feature_kind)
        s = 1.0 + self.task_scale @ psi  # (N,)
        h = self.mix @ psi  # (k,)
        phi = {key: self.base[key] * s[self.owner[key]] + self.low[key] @ h for key in self.base}
        if self.proportional:
            weight = self.n_tasks * r  # N ρ_t, 1 at uniform ρ
            phi = {key: value * weight[self.owner[key]] for key, value in phi.items()}
        return phi

    @classmethod
    def initial(cls, param: Parameterization, task_names: list[str], feature_kind: str = "quadratic",
                phi_init: float = 0.4, rank: int = 4, seed: int = 0, proportional: bool = True) -> "PreferenceModel":
        """The untrained model: Task Arithmetic with task weights N ρ_t (see the module docstring)."""
        n = len(task_names)
        q = n if feature_kind == "linear" else 2 * n
        if feature_kind not in FEATURES:
            raise PreferenceError(f"unknown features {feature_kind!r}; use one of {FEATURES}")
        base, owner, low = {}, {}, {}
        for key, shape in param.shapes.items():
            base[key] = torch.full(shape, float(phi_init))
            owner[key] = (param.modules[key].task_of_row if key in param.modules else torch.arange(n)).cpu().long()
            low[key] = torch.zeros(*shape, rank)
        task_scale = torch.zeros(n, q)
        if not proportional:  # s_t(ρ) = N ρ_t; proportional: N ρ_t is the outer factor, s ≡ 1
            task_scale[:, :n] = torch.eye(n)
        mix = torch.randn(rank, q, generator=torch.Generator().manual_seed(seed)) / q ** 0.5
        return cls(param.variant, list(task_names), feature_kind, base, owner, task_scale, low, mix,
                   proportional=proportional)


def _singular_values(param: Parameterization) -> dict[str, torch.Tensor]:
    """What pins the meaning of φ: per module the norms of L's columns (TARA-B: the σ_k)."""
    return {m: p.L.detach().float().norm(dim=0).cpu() for m, p in param.modules.items()}


def fit_preference_model(data: MergeData, adapters: AdapterSet, variant: str, config: PreferenceConfig | dict | None = None,
                         param: Parameterization | None = None,
                         progress: Callable[[int, int, dict], None] | None = None,
                         should_cancel: Callable[[], bool] | None = None) -> PreferenceModel:
    """Learn φ(ρ) for ``variant`` ('tara-a' or 'tara-b') over the simplex of the N tasks of ``data``.

    Args:
        data: backbone, heads, unlabeled val inputs and anchors of the N tasks (teachers are computed here
            when the loss is ``kl`` and ``data`` has none).
        adapters: the N adapters, in the order of ``data``.
        config: :class:`~tara_core.methods.learned.PreferenceConfig` or a dict of its fields.
        param: a prebuilt parameterization of ``variant`` (reuses the per-module SVDs).
        progress: called after every step with (step, total, {"loss", "rho": [...], <task>: loss}).
        should_cancel: polled before every step; True stops the fit (the model so far is returned).
    """
    cfg = config if isinstance(config, PreferenceConfig) else parse_preference_config(dict(config or {}))
    if variant not in VARIANTS:
        raise PreferenceError(f"preference models exist for {VARIANTS}, not {variant!r}")
    n = len(adapters)
    if len(data.heads) != n:
        raise MergeError(f"{len(data.heads)} tasks of data for {n} adapters")
    start = time.perf_counter()
    param = param or build_parameterization(adapters, variant, cfg.phi_init)
    device = getattr(data.backbone, "device", "cpu")
    param.to(device)
    anchors, scale = objective_terms(data, cfg, param, adapters)
    model = PreferenceModel.initial(param, data.names, cfg.features, cfg.phi_init, cfg.rank, cfg.seed,
                                    cfg.scale_form == "proportional")
    main, low = model.leaves()
    for t in [*main, *low, *model.owner.values()]:
        t.data = t.data.to(device)
    for t in [*main, *low]:
        t.requires_grad_(True)
    opt = torch.optim.AdamW([{"params": main, "lr": cfg.lr}, {"params": low, "lr": cfg.lr * cfg.low_rank_lr}],
                            weight_decay=cfg.weight_decay)
    decay = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.steps, 1))
             if cfg.schedule == "cosine" else None)
    sampler = Sampler([len(v) for v in data.val], cfg.batch_size, cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    modes, history, steps_run = None, [], 0
    for step in range(cfg.steps):
        if should_cancel is not None and should_cancel():
            break
        rho = torch.tensor(sample_rho(rng, n, cfg.concentration, cfg.face_prob), dtype=torch.float64)
        rows = [sampler.next(i) for i in range(n)]
        if modes is None:
            modes = step_modes(data, param, rows, cfg.mode)
        phi = model.phi(rho.to(device))
        with autocast(device, cfg.bf16):
            f = task_losses(data, param, phi, rows, cfg.loss, modes, adapters.fan_in_fan_out)
        loss = scalarize(f.float(), sharpen(rho, cfg.sharpness), anchors, cfg.scalarization, cfg.alpha, scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if decay is not None:
            decay.step()
        steps_run = step + 1
        record = {"step": step, "loss": float(loss.detach()), "rho": [round(float(r), 4) for r in rho],
                  **{nm: float(v) for nm, v in zip(data.names, f.detach())}}
        history.append(record)
        if progress is not None:
            progress(step + 1, cfg.steps, record)
    for t in [*main, *low, *model.owner.values()]:
        t.requires_grad_(False)
        t.data = t.data.cpu()
    model.teachers = data.teachers if cfg.loss == "kl" else None
    model.scale = None if scale is None else scale.cpu()
    model.anchors = None if anchors is None else anchors.float().cpu()
    model.meta = {"settings": cfg.fit_fields(), "steps_run": steps_run, "seconds": time.perf_counter() - start,
                  "adapter_sha256": [a.sha256 for a in adapters.adapters],
                  "final_loss": float(np.mean([h["loss"] for h in history[-50:]])) if history else None}
    model.check = _singular_values(param)
    return model


# ---- files -----------------------------------------------------------------------------------------------
def save_model(model: PreferenceModel, path: str | Path, param: Parameterization | None = None, **meta) -> Path:
    """Write ``<path>.safetensors`` + ``<path>.json`` atomically (temp files, then rename: the JSON last,
    so a reader never sees a JSON whose hash does not match). Returns the safetensors path."""
    from .export import atomic_file_write

    path = Path(path).with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"base.{k}": v.contiguous() for k, v in model.base.items()}
    tensors.update({f"owner.{k}": v.contiguous() for k, v in model.owner.items()})
    tensors.update({f"low.{k}": v.contiguous() for k, v in model.low.items()})
    tensors["task_scale"], tensors["mix"] = model.task_scale.contiguous(), model.mix.contiguous()
    check = model.check or (_singular_values(param) if param is not None else {})
    tensors.update({f"check.{k}": v.contiguous() for k, v in check.items()})
    for i, t in enumerate(model.teachers or []):
        tensors[f"teacher.{i}"] = t.contiguous()
    if model.scale is not None:
        tensors["scale"] = model.scale.contiguous()
    if model.anchors is not None:
        tensors["anchors"] = model.anchors.contiguous()
    if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
        raise PreferenceError("the fitted preference model has non-finite values; nothing was written")
    st_path = path.with_suffix(".safetensors")
    tmp = st_path.with_name(f".{st_path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
        os.replace(tmp, st_path)
    finally:
        tmp.unlink(missing_ok=True)
    record = {"format": FORMAT, "variant": model.variant, "tasks": model.task_names, "features": model.feature_kind,
              "num_parameters": model.num_parameters, **model.meta, **meta,
              "safetensors": st_path.name, "sha256": file_sha256(st_path)}
    atomic_file_write(path.with_suffix(".json"), json.dumps(record, indent=2, default=str))
    return st_path


def load_model(path: str | Path, expect: dict | None = None) -> PreferenceModel:
    """Read a fitted model, refusing (:class:`PreferenceError`, one line) a file that is missing, corrupt,
    changed since it was written, or fitted on other tasks/adapters/settings than ``expect`` (keys:
    ``variant``, ``tasks``, ``adapter_sha256``, ``fingerprint``, ``check`` (the σ of the parameterization))."""
    path = Path(path).with_suffix("")
    st_path, js_path = path.with_suffix(".safetensors"), path.with_suffix(".json")
    try:
        record = json.loads(js_path.read_text())
    except FileNotFoundError:
        raise PreferenceError(f"preference model {js_path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise PreferenceError(f"preference model {js_path}: unreadable JSON ({type(exc).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise PreferenceError(f"{js_path} is not a {FORMAT} file")
    if not st_path.is_file():
        raise PreferenceError(f"preference model {st_path} is missing")
    if file_sha256(st_path) != record.get("sha256"):
        raise PreferenceError(f"preference model {st_path} changed since it was written (SHA-256 mismatch)")
    for key, want in (expect or {}).items():
        if key != "check" and record.get(key) != want:
            raise PreferenceError(f"preference model {st_path.name} was fitted with other {key} "
                                  f"({_short(record.get(key))}, here {_short(want)}); refit it")
    try:
        tensors = load_file(str(st_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise PreferenceError(f"preference model {st_path}: unreadable ({type(exc).__name__})") from None
    part = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
    base, owner, low = part("base."), part("owner."), part("low.")
    n = len(record.get("tasks", []))
    q = n if record.get("features") == "linear" else 2 * n
    task_scale, mix = tensors.get("task_scale"), tensors.get("mix")
    if (task_scale is None or mix is None or tuple(task_scale.shape) != (n, q) or mix.ndim != 2 or mix.shape[1] != q
            or not set(base) == set(owner) == set(low)
            or any(owner[k].shape != base[k].shape or low[k].shape != (*base[k].shape, mix.shape[0]) for k in base)
            or any(int(owner[k].min()) < 0 or int(owner[k].max()) >= n for k in owner if owner[k].numel())):
        raise PreferenceError(f"preference model {st_path.name}: tensor shapes do not fit together")
    check = (expect or {}).get("check")
    if check is not None:
        if set(check) != {k[6:] for k in tensors if k.startswith("check.")}:
            raise PreferenceError(f"preference model {st_path.name} covers other modules than these adapters")
        for m, s in check.items():
            stored = tensors[f"check.{m}"]
            if stored.shape != s.shape or not torch.allclose(stored, s.to(stored.dtype), rtol=1e-3, atol=1e-6):
                raise PreferenceError(f"preference model {st_path.name} was fitted on other adapters "
                                      f"(module {m} differs)")
    teachers = [tensors[f"teacher.{i}"] for i in range(n) if f"teacher.{i}" in tensors] or None
    return PreferenceModel(record["variant"], record["tasks"], record["features"],
                           {k: v.float() for k, v in base.items()}, {k: v.long() for k, v in owner.items()},
                           task_scale.float(), {k: v.float() for k, v in low.items()}, mix.float(), teachers,
                           tensors.get("scale"), tensors.get("anchors"), record,
                           {k[6:]: v for k, v in tensors.items() if k.startswith("check.")},
                           (record.get("settings") or {}).get("scale_form") == "proportional")


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


# ---- where fitted models live -------------------------------------------------------------------------------
def zoo_fingerprint(zoo) -> str:
    """SHA-256 over the zoo's recorded file hashes (adapters, heads, data), its anchors and accuracies —
    everything a fit depends on — leaving out the fitted models and precomputed results themselves."""
    files = {k: v for k, v in sorted(zoo.manifest.files.items()) if not k.startswith(("preference/", "results/"))}
    tasks = [(t.name, t.anchor_entropy) for t in zoo.manifest.tasks]
    text = json.dumps({"files": files, "tasks": tasks, "name": zoo.manifest.name}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _settings_key(variant: str, tasks: list[str], cfg: PreferenceConfig) -> str:
    text = json.dumps({"variant": variant, "tasks": tasks, "settings": cfg.fit_fields()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shipped_path(zoo, variant: str) -> Path:
    """Where a zoo ships the fitted model of its full task set at the default settings."""
    return zoo.folder / "preference" / variant


def cache_path(zoo, variant: str, task_names: list[str], cfg: PreferenceConfig, fingerprint: str | None = None) -> Path:
    """Where a fit of ``variant`` on these tasks and settings is cached (per zoo fingerprint)."""
    fingerprint = fingerprint or zoo_fingerprint(zoo)
    return (cache_root() / "preference" / f"{zoo.name}-{fingerprint[:12]}"
            / f"{variant}-{_settings_key(variant, task_names, cfg)}")


def _other_settings(path: Path, cfg: PreferenceConfig) -> bool:
    """True when a shipped or cached file records a fit with other settings (a zoo shipped before the defaults
    changed): not the model asked for, so the lookup goes on (a corrupt record is left to load_model to refuse)."""
    try:
        recorded = json.loads(path.with_suffix(".json").read_text()).get("settings")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(recorded, dict) and recorded != cfg.fit_fields()


def preference_model_for(zoo, variant: str, tasks: Sequence[int] | None = None, config: PreferenceConfig | dict | None = None,
                         param: Parameterization | None = None, progress: Callable | None = None,
                         should_cancel: Callable | None = None, log: Callable[[str], None] | None = None
                         ) -> tuple[PreferenceModel, Path]:
    """The fitted model for a zoo, a task subset and settings: an explicit ``model`` file, else the zoo's
    shipped one (full task set, default settings), else the cache, else a fresh fit written to the cache.
    Every file found is verified (:func:`load_model`); returns (model, its safetensors path)."""
    cfg = config if isinstance(config, PreferenceConfig) else parse_preference_config(dict(config or {}))
    tasks = list(range(len(zoo.task_names))) if tasks is None else list(tasks)
    memo = zoo.memo.setdefault("preference", {})  # an opened zoo's files do not change: verify once
    key = (variant, tuple(tasks), json.dumps(cfg.fit_fields(), sort_keys=True), cfg.model)
    if key in memo and not cfg.refit:
        return memo[key]
    found = _find_or_fit(zoo, variant, tasks, cfg, param, progress, should_cancel, log)
    if found[1] is not None:
        memo[key] = found
    return found


def _find_or_fit(zoo, variant, tasks, cfg, param, progress, should_cancel, log):
    adapters = zoo.adapters if tasks == list(range(len(zoo.task_names))) else zoo.adapters.subset(tasks)
    names = [zoo.task_names[i] for i in tasks]
    param = param or build_parameterization(adapters, variant, cfg.phi_init)
    expect = {"variant": variant, "tasks": names, "adapter_sha256": [a.sha256 for a in adapters.adapters],
              "check": _singular_values(param)}
    if cfg.model:
        model = load_model(cfg.model, expect)
        return model, Path(cfg.model).with_suffix(".safetensors")
    fingerprint = zoo_fingerprint(zoo)
    expect["fingerprint"] = fingerprint
    default = PreferenceConfig(**{k: v for k, v in cfg.model_dump().items() if k in ("refine_steps", "refine_lr")})
    candidates = []
    if tasks == list(range(len(zoo.task_names))) and cfg.fit_fields() == default.fit_fields():
        candidates.append(shipped_path(zoo, variant))
    cached = cache_path(zoo, variant, names, cfg, fingerprint)
    candidates.append(cached)
    if not cfg.refit:
        for path in candidates:
            if path.with_suffix(".json").is_file() and not _other_settings(path, cfg):
                return load_model(path, {**expect, "settings": cfg.fit_fields()}), path.with_suffix(".safetensors")
    if log:
        log(f"fitting the {variant} preference model on {', '.join(names)} ({cfg.steps} steps)")
    data = MergeData.from_zoo(zoo, tasks, cfg.merge_set)
    model = fit_preference_model(data, adapters, variant, cfg, param, progress, should_cancel)
    if model.meta["steps_run"] < cfg.steps:  # cancelled: usable now, never cached as a finished fit
        return model, None
    st_path = save_model(model, cached, fingerprint=fingerprint, zoo=zoo.name)
    model.meta["sha256"] = file_sha256(st_path)
    return model, st_path


__all__ += ["shipped_path", "cache_path", "expert_probabilities"]
