"""OSRM (Zhang & Zhou, ACL 2025): initialize each task's LoRA A in the subspace the other tasks' inputs
barely use, so that after merging, task j's inputs pass through task t's adapter almost untouched.

For task t and module m (METHODS.md, OSRM):

1. the inputs h ∈ R^{d_in} reaching m are collected with forward hooks on the frozen base for a few dozen
   unlabeled samples of every task, and accumulated batch by batch into S_j = Σ h hᵀ (d_in × d_in, fp64)
   and a count n_j — the stacked activations are never kept;
2. C_t = Σ_{j≠t} S_j / Σ_{j≠t} n_j (uncentered second moment of the *other* tasks' inputs);
3. A_t = the r eigenvectors of C_t with the smallest eigenvalues, as orthonormal rows
   (``torch.linalg.eigh`` in fp64); B_t = 0, so W_0 is unchanged at initialization.

Interference is computed from the same second moments, since ‖M Hᵀ‖²_F = tr(M S Mᵀ) for S = HᵀH:

* input interference  ‖A_t H_jᵀ‖_F / (‖A_t‖_F ‖H_j‖_F);
* output interference ‖B_t A_t H_jᵀ‖_F / ‖B_j A_j H_jᵀ‖_F (task t's update on task j's inputs, relative to
  task j's own update on them).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from .adapters import AdapterSet
from .backbones import module_inputs
from .diagnostics import split_module_name

__all__ = ["SecondMoment", "collect_second_moments", "pooled_moment", "osrm_init", "input_interference",
           "output_interference", "interference_table"]


@dataclass
class SecondMoment:
    """Σ h hᵀ and the number of vectors h accumulated (fp64)."""

    S: torch.Tensor
    n: int = 0

    def add(self, X: torch.Tensor) -> None:
        X = X.reshape(-1, X.shape[-1]).double()
        self.S += X.T @ X
        self.n += X.shape[0]

    def mean(self) -> torch.Tensor:
        return self.S / max(self.n, 1)


def collect_second_moments(backbone, inputs: list, modules: list[str], batch_size: int = 32) -> dict[str, SecondMoment]:
    """Stream ``inputs`` through the frozen base and accumulate each module's input second moment.

    Padding positions (``attention_mask == 0``) are left out. Memory: one d_in × d_in matrix per module
    plus one batch of activations, however many inputs are streamed.
    """
    moments: dict[str, SecondMoment | None] = {m: None for m in modules}
    for batch in module_inputs(backbone, inputs, modules, batch_size):
        for m, x in batch.items():
            if moments[m] is None:
                moments[m] = SecondMoment(torch.zeros(x.shape[-1], x.shape[-1], dtype=torch.float64))
            moments[m].add(x)
    return moments


def pooled_moment(moments: list[SecondMoment]) -> torch.Tensor:
    """C = Σ S_j / Σ n_j over the given tasks' moments."""
    S = sum(m.S for m in moments)
    n = sum(m.n for m in moments)
    if n == 0:
        raise ValueError("no inputs were collected for the other tasks")
    return S / n


def osrm_init(C: torch.Tensor, r: int) -> torch.Tensor:
    """A (r × d_in): the eigenvectors of the r smallest eigenvalues of C as orthonormal rows (fp64)."""
    if not 0 < r <= C.shape[0]:
        raise ValueError(f"rank {r} must be in 1..{C.shape[0]}")
    C = 0.5 * (C.double() + C.double().T)
    _, vecs = torch.linalg.eigh(C)  # ascending eigenvalues
    return vecs[:, :r].T.contiguous()


def input_interference(A: torch.Tensor, S: torch.Tensor) -> float:
    """‖A Hᵀ‖_F / (‖A‖_F ‖H‖_F) for S = HᵀH."""
    A = A.double()
    num = torch.sqrt(torch.clamp(torch.trace(A @ S @ A.T), min=0))
    den = A.norm() * torch.sqrt(torch.clamp(torch.trace(S), min=0))
    return float(num / den) if den > 0 else float("nan")


def _update_energy(B: torch.Tensor, A: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """‖B A Hᵀ‖²_F = Σ (BᵀB) ⊙ (A S Aᵀ)."""
    B, A = B.double(), A.double()
    return torch.sum((B.T @ B) * (A @ S @ A.T))


def output_interference(Bt, At, Bj, Aj, S: torch.Tensor) -> float:
    """‖B_t A_t H_jᵀ‖_F / ‖B_j A_j H_jᵀ‖_F for S = H_jᵀH_j."""
    own = _update_energy(Bj, Aj, S)
    return float(torch.sqrt(_update_energy(Bt, At, S).clamp(min=0) / own)) if own > 0 else float("nan")


def interference_table(adapters: AdapterSet, moments: list[dict[str, SecondMoment]], label: str = "") -> pd.DataFrame:
    """Rows (adapter t, data of task j ≠ t, module): input and output interference of the *trained* adapters."""
    rows = []
    names = adapters.names
    for module in adapters.module_names:
        layer, mtype = split_module_name(module)
        fs = adapters.factors(module)
        for t, ft in enumerate(fs):
            for j, fj in enumerate(fs):
                if t == j or ft is None or fj is None or moments[j].get(module) is None:
                    continue
                S = moments[j][module].S
                rows.append({"adapters": label, "module_path": module, "layer": layer, "module": mtype,
                             "adapter_task": names[t], "data_task": names[j],
                             "input_interference": input_interference(ft.A, S),
                             "output_interference": output_interference(ft.B, ft.A, fj.B, fj.A, S)})
    return pd.DataFrame(rows)
