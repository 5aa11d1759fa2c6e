"""The diagnostics the paper explains merging with (TARA.md §2–4, DESIGN.md §5), as tidy DataFrames.

Every function returns one row per (layer, module, quantity) with columns ``quantity``, ``layer``,
``module``, ``value`` (plus ``basis``, ``rho1``, ``rho2``... where they apply). ``layer`` is the first
integer in the module path (``encoder.layer.3.attention.self.query`` → 3, module ``attention.self.query``);
rows about all modules together have ``layer = -1`` and ``module = "all"``.

* **Subspace coverage** (Fig. 1/5): effective ranks of the per-task sum Σ_i erank(atoms of i), the rank-1
  stack (all Σ r_i atoms, through the K × K Gram (BᵀB) ⊙ (AAᵀ)), the ΔW stack [vec ΔW_1 .. vec ΔW_N]
  (Gram ⟨ΔW_i, ΔW_j⟩ = Σ (B_iᵀB_j) ⊙ (A_iA_jᵀ)), the ΔX stack [vec ΔW_i X] on a batch of inputs X
  (Gram Σ (B_iᵀB_j) ⊙ (A_i X Xᵀ A_jᵀ)) and the merged ΔW of a merge result. Nothing d_out·d_in-sized is built.
* **Anisotropy** (§3, Prop. 1): J ∈ R^{N×K}, J_ik = ∂f_i/∂φ_k by autograd at a merge point; κ(J) =
  σ_max/σ_N, κ(ρ) = κ(diag(ρ) J), in the RAW basis (LoRA atoms, TARA-A's φ) and the ORTH basis (TARA-B's
  singular atoms).
* **Misalignment** (§4): ξ(ρ1, ρ2) = 1 − |cos(h(ρ1), h(ρ2))| with h(ρ) = ∇_φ S_ρ(f(φ)) = Jᵀ ∂S/∂f.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .adapters import AdapterSet
from .backbones import module_inputs
from .lowrank import Factors, effective_rank, erank_from_gram, normalize_gram, rank1_gram, thin_svd
from .objective import scalarize, validate_rho
from .tara import Parameterization, build_parameterization

__all__ = ["split_module_name", "coverage", "collect_inputs", "JacobianResult", "jacobian", "condition_number",
           "kappa_table", "objective_gradient", "preference_pairs", "misalignment", "check_prop1",
           "QUANTITIES"]

QUANTITIES = ("erank_per_task_sum", "erank_rank1_stack", "erank_dw_stack", "erank_dx_stack", "erank_merged",
              "kappa_raw", "kappa_orth", "xi")
_LAYER = re.compile(r"\.(\d+)\.")


def split_module_name(name: str) -> tuple[int, str]:
    """(layer index, module type) of a module path; (-1, name) when the path has no layer index."""
    m = _LAYER.search(name)
    if m is None:
        return -1, name
    return int(m.group(1)), name[m.end():]


def _cross_gram(fs: list[Factors], X: torch.Tensor | None = None) -> torch.Tensor:
    """G_ij = ⟨ΔW_i (X), ΔW_j (X)⟩_F for factored ΔW_i = B_i A_i (optionally applied to inputs Xᵀ)."""
    n = len(fs)
    G = torch.zeros(n, n, dtype=torch.float64)
    As = [f.A.double() if X is None else f.A.double() @ X.T.double() for f in fs]
    for i in range(n):
        for j in range(i, n):
            v = torch.sum((fs[i].B.double().T @ fs[j].B.double()) * (As[i] @ As[j].T))
            G[i, j] = G[j, i] = v
    return G


def coverage(adapters: AdapterSet, merged=None, inputs: dict[str, torch.Tensor] | None = None,
             normalize: bool = False) -> pd.DataFrame:
    """Effective-rank stacks per adapted module (see the module docstring).

    Args:
        adapters: the N adapters.
        merged: an optional :class:`~tara_core.methods.MergeResult` whose merged ΔW erank is added.
        inputs: optional {module: X (T × d_in)} activations for the ΔX stack (:func:`collect_inputs`).
        normalize: scale every atom (and every ΔW_i) to unit Frobenius norm before stacking.
    """
    rows = []
    for module in adapters.module_names:
        layer, mtype = split_module_name(module)
        fs = [Factors(f.B.double(), f.A.double()) for f in adapters.factors(module) if f is not None]
        per_task = sum(erank_from_gram(rank1_gram(f.B, f.A, normalize)) for f in fs)
        B = torch.cat([f.B for f in fs], 1)
        A = torch.cat([f.A for f in fs], 0)
        values = {"erank_per_task_sum": per_task, "erank_rank1_stack": erank_from_gram(rank1_gram(B, A, normalize))}
        G = _cross_gram(fs)
        values["erank_dw_stack"] = erank_from_gram(normalize_gram(G) if normalize else G)
        if inputs is not None and module in inputs:
            Gx = _cross_gram(fs, inputs[module])
            values["erank_dx_stack"] = erank_from_gram(normalize_gram(Gx) if normalize else Gx)
        if merged is not None and module in merged.deltas:
            f = merged.deltas[module]
            sigma = (thin_svd(f.B.double(), f.A.double()).S if isinstance(f, Factors)
                     else torch.linalg.svdvals(f.double()))  # a dense result (TIES, DARE)
            values["erank_merged"] = effective_rank(sigma)
        for q, v in values.items():
            rows.append({"quantity": q, "layer": layer, "module": mtype, "module_path": module, "value": float(v)})
    return pd.DataFrame(rows)


def collect_inputs(backbone, batch_inputs: list, modules: list[str]) -> dict[str, torch.Tensor]:
    """Inputs X (tokens × d_in, fp32) of each module of the frozen base on one batch."""
    batch = next(module_inputs(backbone, batch_inputs, modules, batch_size=max(len(batch_inputs), 1)))
    return {m: x.float() for m, x in batch.items()}


@dataclass
class JacobianResult:
    """J (N × K) of the per-task entropies w.r.t. the coefficients of one basis, at one merge point."""

    J: torch.Tensor
    f: torch.Tensor  # N task entropies at the point
    columns: dict[str, slice]  # module → its columns in J
    basis: str
    param: Parameterization

    def module_J(self, module: str) -> torch.Tensor:
        return self.J[:, self.columns[module]]


BASES = {"raw": "tara-a", "orth": "tara-b"}


def jacobian(data, adapters: AdapterSet, basis: str = "raw", phi: dict[str, torch.Tensor] | None = None,
             phi_value: float = 0.4, batch_size: int = 16, param: Parameterization | None = None) -> JacobianResult:
    """J_ik = ∂f_i/∂φ_k by autograd (N backward passes through one forward) on the first ``batch_size``
    unlabeled inputs of each task; at ``phi`` or at the constant point φ ≡ ``phi_value`` (TA with λ)."""
    from .optimize import task_entropies

    if basis not in BASES:
        raise ValueError(f"unknown basis {basis!r}; use 'raw' (LoRA atoms) or 'orth' (TARA-B singular atoms)")
    device = getattr(data.backbone, "device", "cpu")
    param = (param or build_parameterization(adapters, BASES[basis])).to(device)
    point = phi if phi is not None else param.initial(phi_value)
    dtype = next(iter(param.modules.values())).L.dtype
    leaves = {k: v.detach().clone().to(device, dtype).requires_grad_(True) for k, v in point.items()}
    batches = [list(v[:batch_size]) for v in data.val]
    with torch.enable_grad():
        f = task_entropies(data, param, leaves, batches, fan_in_fan_out=adapters.fan_in_fan_out)
        keys = list(param.shapes)
        rows = []
        for i in range(len(f)):
            grads = torch.autograd.grad(f[i], [leaves[k] for k in keys], retain_graph=i < len(f) - 1,
                                        allow_unused=True)
            rows.append(torch.cat([(g if g is not None else torch.zeros_like(leaves[k])).flatten()
                                   for g, k in zip(grads, keys)]))
    J = torch.stack(rows).double()
    columns, start = {}, 0
    for k in keys:
        n = int(np.prod(param.shapes[k]))
        columns[k] = slice(start, start + n)
        start += n
    return JacobianResult(J, f.detach().double(), columns, basis, param)


def condition_number(J: torch.Tensor) -> float:
    """κ = σ_max / σ_min with σ_min the min(N, K)-th singular value (∞ when it is 0)."""
    s = torch.linalg.svdvals(J.double())
    smin = s[min(J.shape) - 1]
    return float(s[0] / smin) if smin > 0 else float("inf")


def kappa_table(jac: JacobianResult, rho=None) -> pd.DataFrame:
    """κ(J) (and κ(diag(ρ) J) when ρ is given) per module and for all modules together."""
    quantity = f"kappa_{jac.basis}"
    rho_t = None if rho is None else validate_rho(rho, jac.J.shape[0])
    rows = []
    for module, cols in [*jac.columns.items(), ("all", slice(None))]:
        J = jac.J[:, cols]
        layer, mtype = split_module_name(module) if module != "all" else (-1, "all")
        rows.append({"quantity": quantity, "layer": layer, "module": mtype, "value": condition_number(J),
                     "basis": jac.basis, "rho": None})
        if rho_t is not None:
            rows.append({"quantity": quantity, "layer": layer, "module": mtype, "basis": jac.basis,
                         "value": condition_number(rho_t[:, None] * J), "rho": ",".join(f"{r:.3g}" for r in rho_t.tolist())})
    return pd.DataFrame(rows)


def objective_gradient(jac: JacobianResult, rho, anchors: torch.Tensor | None, kind: str = "stch",
                       alpha: float = 1.0) -> torch.Tensor:
    """h(ρ) = ∇_φ S_ρ(f(φ)) = Jᵀ ∂S/∂f (chain rule through the scalarization only; J is reused)."""
    f = jac.f.clone().requires_grad_(True)
    S = scalarize(f, validate_rho(rho, len(f)).double(), anchors.double() if anchors is not None else None, kind, alpha)
    (w,) = torch.autograd.grad(S, f)
    return jac.J.T @ w


def preference_pairs(n: int, n_random: int = 4, seed: int = 0) -> list[tuple[str, list[float], list[float]]]:
    """Named (ρ1, ρ2) pairs: uniform vs each one-hot, every one-hot pair, and seeded Dirichlet pairs."""
    eye = np.eye(n)
    uniform = np.full(n, 1.0 / n)
    pairs = [(f"uniform~onehot{i}", uniform, eye[i]) for i in range(n)]
    pairs += [(f"onehot{i}~onehot{j}", eye[i], eye[j]) for i, j in itertools.combinations(range(n), 2)]
    rng = np.random.default_rng(seed)
    pairs += [(f"random{k}", rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))) for k in range(n_random)]
    return [(name, a.tolist(), b.tolist()) for name, a, b in pairs]


def _xi(h1: torch.Tensor, h2: torch.Tensor) -> float:
    n1, n2 = h1.norm(), h2.norm()
    if n1 == 0 or n2 == 0:
        return float("nan")
    return float(1.0 - (h1 @ h2).abs() / (n1 * n2))


def misalignment(jac: JacobianResult, anchors: torch.Tensor | None, pairs=None, kind: str = "stch",
                 alpha: float = 1.0) -> pd.DataFrame:
    """ξ(ρ1, ρ2) per module and for all modules together, for every preference pair."""
    n = jac.J.shape[0]
    pairs = pairs if pairs is not None else preference_pairs(n)
    rows = []
    for name, r1, r2 in pairs:
        h1 = objective_gradient(jac, r1, anchors, kind, alpha)
        h2 = objective_gradient(jac, r2, anchors, kind, alpha)
        for module, cols in [*jac.columns.items(), ("all", slice(None))]:
            layer, mtype = split_module_name(module) if module != "all" else (-1, "all")
            rows.append({"quantity": "xi", "layer": layer, "module": mtype, "value": _xi(h1[cols], h2[cols]),
                         "pair": name, "rho1": ",".join(f"{v:.3g}" for v in r1),
                         "rho2": ",".join(f"{v:.3g}" for v in r2), "basis": jac.basis})
    return pd.DataFrame(rows)


def check_prop1(J: torch.Tensor, trials: int = 200, seed: int = 0) -> dict:
    """Proposition 1 on random Δφ in the row space of J: σ_min‖Δφ‖ ≤ ‖JΔφ‖ ≤ σ_max‖Δφ‖.

    Returns the bounds, the observed min/max of ‖JΔφ‖/‖Δφ‖ and whether every trial held (rel. tol 1e-9).
    """
    J = J.double()
    s = torch.linalg.svdvals(J)
    smin, smax = s[min(J.shape) - 1], s[0]
    g = torch.Generator().manual_seed(seed)
    C = torch.randn(trials, J.shape[0], generator=g, dtype=torch.float64)
    dphi = C @ J  # rows in the row space of J
    ratios = (dphi @ J.T).norm(dim=1) / dphi.norm(dim=1)
    tol = 1e-9 * float(smax)
    return {"sigma_min": float(smin), "sigma_max": float(smax), "ratio_min": float(ratios.min()),
            "ratio_max": float(ratios.max()),
            "holds": bool((ratios >= smin - tol).all() and (ratios <= smax + tol).all())}


WHAT = ("erank", "kappa", "xi")


def diagnose(zoo, what: Sequence[str] = WHAT, tasks: Sequence[int] | None = None, batch_size: int = 16,
             phi_value: float = 0.4, rho=None, normalize: bool = False, merged=None,
             phi: dict[str, dict[str, torch.Tensor]] | None = None, progress=None) -> pd.DataFrame:
    """All requested diagnostics of a zoo (or a task subset) as one tidy DataFrame (``progress(done, total)``
    after each stage: the coverage stacks, J in each basis).

    ``erank``: the coverage stacks (ΔX on ``batch_size`` unlabeled inputs per task; merged = ``merged`` or
    TA with λ = ``phi_value``). ``kappa``/``xi``: J in the RAW and ORTH bases at φ ≡ ``phi_value`` (or at
    ``phi[basis]``, e.g. a TARA optimum), κ and κ(ρ) for ``rho``, and ξ over :func:`preference_pairs`.
    """
    from .methods import merge
    from .optimize import MergeData

    unknown = set(what) - set(WHAT)
    if unknown:
        raise ValueError(f"unknown diagnostics {sorted(unknown)}; choose from {WHAT}")
    tasks = list(range(len(zoo.task_names))) if tasks is None else list(tasks)
    adapters = zoo.adapters if len(tasks) == len(zoo.task_names) else zoo.adapters.subset(tasks)
    data = MergeData.from_zoo(zoo, tasks)
    frames = []
    stages = int("erank" in what) + (len(BASES) if ("kappa" in what or "xi" in what) else 0)
    done = 0

    def step():
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, stages)

    if "erank" in what:
        inputs = collect_inputs(data.backbone, [x for v in data.val for x in v[:batch_size]], adapters.module_names)
        merged = merged if merged is not None else merge(adapters, "ta", **{"lambda": phi_value})
        frames.append(coverage(adapters, merged, inputs, normalize))
        step()
    if "kappa" in what or "xi" in what:
        for basis in BASES:
            jac = jacobian(data, adapters, basis, phi=(phi or {}).get(basis), phi_value=phi_value,
                           batch_size=batch_size)
            if "kappa" in what:
                frames.append(kappa_table(jac, rho))
            if "xi" in what:
                frames.append(misalignment(jac, data.anchors, kind="stch" if data.anchors is not None else "linear"))
            step()
    df = pd.concat(frames, ignore_index=True)
    front = ["quantity", "layer", "module", "value"]
    return df[front + [c for c in df.columns if c not in front]]


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Median (and min/max) of each quantity per module type over layers, plus the all-module rows."""
    g = df.groupby(["quantity", "module"], dropna=False)["value"]
    return g.agg(["median", "min", "max", "count"]).reset_index()


__all__ += ["WHAT", "BASES", "diagnose", "summarize"]
