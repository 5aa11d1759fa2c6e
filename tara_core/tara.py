"""TARA-A, TARA-B and AdaMerging as learnable parameterizations of the merged delta (TARA.md §5).

Every variant writes each adapted module's merged update as

    ΔW(φ) = L · fold(g(φ) ⊙ Rt)        L: d_out × R,  Rt: K × d_in,  g(φ) ∈ R^K

* TARA-A (§5.1, per-rank direction selection): L = [B_1..B_N], Rt = [s_1 A_1; ..; s_N A_N], fold = identity,
  g = φ ∈ R^{Σr_i}: ΔW = Σ_i Σ_j φ_ij s_i b_ij a_ijᵀ.
* TARA-B (§5.2, shared singular directions): [ΔW_1..ΔW_N] = U Σ [V_1ᵀ..V_Nᵀ] at R = Σ r_i (lossless,
  :func:`~tara_core.lowrank.hconcat_svd`), L = U Σ, Rt = [V_1ᵀ; ..; V_Nᵀ] (N·R × d_in), fold sums the N
  task blocks, g = φ ∈ R^{N·R}: ΔW = Σ_i Σ_k φ_ik σ_k u_k v_kiᵀ.
* AdaMerging layer-wise: TARA-A's layout with one λ_i per task per module, tiled over the task's ranks.
* AdaMerging task-wise: one λ_i per task shared by every module.

φ is signed and unconstrained by default (the reference code); ``clamp=(lo, hi)`` is an option.

Each module applies ΔW(φ) either **materialized** (W_0 + ΔW(φ) passed as a weight override) or as a
**factored side path** (y = W_0 x + L fold(g ⊙ Rt x)), chosen per module by an estimate of the cost of a
forward + backward for the batch's token count (:func:`choose_mode`). Neither mutates the base model:
overrides go through ``functional_call`` and side paths through hooks that read a context variable, so a
model cached for many dashboard sessions serves each session's merge independently.
"""
from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .adapters import AdapterSet
from .keymap import wrapped_module
from .lowrank import Factors, hconcat_svd

__all__ = ["VARIANTS", "ModuleParam", "Parameterization", "build_parameterization", "choose_mode", "side_paths",
           "install_side_path_hooks"]

VARIANTS = ("tara-a", "tara-b", "adamerging-layer", "adamerging-task")


@dataclass
class ModuleParam:
    """One module's fixed factors: ΔW(g) = L · fold(g ⊙ Rt), with ``blocks`` task blocks folded (TARA-B)."""

    L: torch.Tensor  # d_out × R
    Rt: torch.Tensor  # K × d_in
    blocks: int  # 1 (TARA-A layout) or N (TARA-B: Rt holds N stacked R × d_in blocks)
    task_of_row: torch.Tensor  # K: the task each row of Rt belongs to

    @property
    def K(self) -> int:
        return self.Rt.shape[0]

    def fold(self, M: torch.Tensor) -> torch.Tensor:
        """Sum the task blocks of a K × c matrix (TARA-B) to R × c; identity for TARA-A."""
        if self.blocks == 1:
            return M
        return M.reshape(self.blocks, -1, *M.shape[1:]).sum(0)

    def delta(self, g: torch.Tensor) -> torch.Tensor:
        return self.L @ self.fold(g[:, None] * self.Rt)

    def side(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """L fold(g ⊙ Rt x) for inputs x (..., d_in) → (..., d_out)."""
        z = (x @ self.Rt.T) * g  # (..., K)
        if self.blocks > 1:
            z = z.reshape(*z.shape[:-1], self.blocks, -1).sum(-2)
        return z @ self.L.T

    def factors(self, g: torch.Tensor) -> Factors:
        return Factors(self.L, self.fold(g[:, None] * self.Rt))


def choose_mode(p: ModuleParam, tokens: int) -> str:
    """'materialized' or 'side', whichever costs fewer multiply-adds for one forward + backward.

    materialized: build ΔW (d_out·R·d_in + K·d_in), plus the weight gradient T·d_out·d_in that the frozen
    base alone would not need; side path: the extra T·(K·d_in + R·d_out) forward, twice more backward.
    """
    d_out, R = p.L.shape
    K, d_in = p.Rt.shape
    materialized = tokens * d_out * d_in + 2 * d_out * R * d_in + 2 * K * d_in
    side = 3 * tokens * (K * d_in + R * d_out)
    return "materialized" if materialized <= side else "side"


class Parameterization:
    """The learnable coefficients of one variant over every module of an adapter set."""

    def __init__(self, variant: str, modules: dict[str, ModuleParam], n_tasks: int, init: float = 0.4,
                 clamp: tuple[float, float] | None = None):
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; use one of {VARIANTS}")
        self.variant, self.modules, self.n_tasks, self.clamp = variant, modules, n_tasks, clamp
        if variant == "adamerging-task":
            self.shapes = {"task": (n_tasks,)}
        elif variant == "adamerging-layer":
            self.shapes = {m: (n_tasks,) for m in modules}
        else:
            self.shapes = {m: (p.K,) for m, p in modules.items()}
        self.init = init

    @property
    def num_parameters(self) -> int:
        return sum(int(torch.tensor(s).prod()) for s in self.shapes.values())

    def initial(self, value: float | None = None) -> dict[str, torch.Tensor]:
        v = self.init if value is None else value
        return {k: torch.full(s, float(v)) for k, s in self.shapes.items()}

    def gate(self, phi: dict[str, torch.Tensor], module: str) -> torch.Tensor:
        """g(φ) for one module: φ itself (TARA), or the task's λ tiled over its rows (AdaMerging)."""
        p = self.modules[module]
        if self.variant in ("tara-a", "tara-b"):
            g = phi[module]
        else:
            lam = phi["task"] if self.variant == "adamerging-task" else phi[module]
            g = lam[p.task_of_row]
        if self.clamp is not None:
            g = g.clamp(*self.clamp)
        return g

    def deltas(self, phi: dict[str, torch.Tensor]) -> dict[str, Factors]:
        """The merged ΔW of every module as exact factors (rank ≤ R)."""
        return {m: p.factors(self.gate(phi, m)) for m, p in self.modules.items()}

    def to(self, device) -> "Parameterization":
        for p in self.modules.values():
            p.L, p.Rt, p.task_of_row = p.L.to(device), p.Rt.to(device), p.task_of_row.to(device)
        return self


def _tara_a_module(factors: list[Factors | None]) -> ModuleParam:
    present = [(i, f) for i, f in enumerate(factors) if f is not None]
    L = torch.cat([f.B for _, f in present], dim=1)
    Rt = torch.cat([f.A for _, f in present], dim=0)
    task = torch.cat([torch.full((f.rank,), i, dtype=torch.long) for i, f in present])
    return ModuleParam(L, Rt, 1, task)


def _tara_b_module(factors: list[Factors | None], shape: tuple[int, int]) -> ModuleParam:
    # absent tasks get a zero block so every module keeps N blocks (φ layout [task 1: k=1..R, task 2: ...])
    filled = [f if f is not None else Factors(torch.zeros(shape[0], 1), torch.zeros(1, shape[1])) for f in factors]
    svd = hconcat_svd(filled, rank=sum(f.rank for f in factors if f is not None))
    R = svd.rank
    Rt = torch.cat(svd.Vh_blocks, dim=0)
    task = torch.arange(len(factors)).repeat_interleave(R)
    return ModuleParam(svd.U * svd.S, Rt, len(factors), task)


def build_parameterization(adapters: AdapterSet, variant: str, init: float = 0.4,
                           clamp: tuple[float, float] | None = None) -> Parameterization:
    """Factor every module once (TARA-B: one thin SVD per module) and return the parameterization."""
    modules = {}
    for m in adapters.module_names:
        factors = adapters.factors(m)
        modules[m] = _tara_b_module(factors, adapters.shapes[m]) if variant == "tara-b" else _tara_a_module(factors)
    return Parameterization(variant, modules, len(adapters), init, clamp)


# ---- side paths: hooks that read the current context's gates -------------------------------------------
_ACTIVE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("tara_side_paths", default=None)


def install_side_path_hooks(model: torch.nn.Module, names: list[str]) -> None:
    """Register (once per module) a forward hook adding the active context's side path, if any."""
    for name in names:
        module = model.get_submodule(wrapped_module(name))
        if getattr(module, "_tara_hooked", False):
            continue

        def hook(mod, args, output, _name=name):
            active = _ACTIVE.get()
            if active is None or _name not in active:
                return output
            fn = active[_name]
            x = args[0]
            if x.dtype != torch.float32 and not torch.is_autocast_enabled(x.device.type):
                x = x.float()  # the factors stay fp32 in a model loaded in bf16 (LLaMA on CUDA)
            return output + fn(x).to(output.dtype)

        module.register_forward_hook(hook)
        module._tara_hooked = True


@contextmanager
def side_paths(paths: dict[str, callable]):
    """Activate side paths {module: x ↦ ΔW(φ) x} for forwards run in this context (thread/task local)."""
    token = _ACTIVE.set(paths)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
