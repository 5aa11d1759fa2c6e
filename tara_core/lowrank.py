"""Factored low-rank algebra shared by every merge method and diagnostic.

A LoRA update is ΔW = B A with B ∈ R^{d_out×k}, A ∈ R^{k×d_in}. Everything here works on the factors and
never forms a d_out × N·d_in (or d_out·d_in × K) object:

* :func:`thin_svd` — SVD of B A through QR of both factors and an SVD of the k×k core.
* :func:`hconcat_svd` — SVD of the horizontal concatenation [ΔW_1, .., ΔW_N] (KnOTS, TARA-B §5.2 of
  TARA.md) through QR of B_cat = [B_1..B_N] and of each A_iᵀ; the core is K×K with K = Σ r_i.
* :func:`rank1_gram` — the Gram matrix of the vectorized rank-1 atoms, G = (BᵀB) ⊙ (AAᵀ) (TARA.md §2.2).
* :func:`effective_rank` — Roy & Vetterli (2007) erank = exp(H(σ/‖σ‖₁)), as in the reference code.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "Factors",
    "SVD",
    "HConcatSVD",
    "thin_svd",
    "hconcat_svd",
    "rank1_gram",
    "normalize_gram",
    "effective_rank",
    "erank_from_gram",
    "frobenius_norm",
    "polar",
]

_EPS = 1e-10  # the reference code's entropy epsilon (TARA.md §2.1)


@dataclass(frozen=True)
class Factors:
    """ΔW = B @ A, with B: (d_out, k) and A: (k, d_in). Scales are folded into A by the producer."""

    B: torch.Tensor
    A: torch.Tensor

    def __post_init__(self) -> None:
        if self.B.ndim != 2 or self.A.ndim != 2 or self.B.shape[1] != self.A.shape[0]:
            raise ValueError(f"factor shapes do not chain: B {tuple(self.B.shape)}, A {tuple(self.A.shape)}")

    @property
    def rank(self) -> int:
        return self.B.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.B.shape[0], self.A.shape[1])

    def materialize(self) -> torch.Tensor:
        """The dense d_out × d_in matrix. Only call when a dense matrix is really wanted."""
        return self.B @ self.A

    def scaled(self, c: float) -> "Factors":
        return Factors(self.B, self.A * c)

    def to(self, *args, **kwargs) -> "Factors":
        return Factors(self.B.to(*args, **kwargs), self.A.to(*args, **kwargs))

    @staticmethod
    def concat(parts: list["Factors"]) -> "Factors":
        """Σ_i B_i A_i as one factor pair [B_1..B_N] [A_1; ..; A_N] (exact; rank Σ k_i)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        return Factors(torch.cat([p.B for p in parts], dim=1), torch.cat([p.A for p in parts], dim=0))


@dataclass(frozen=True)
class SVD:
    """M = U diag(S) Vh with orthonormal columns of U and rows of Vh, S descending."""

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor

    def truncate(self, rank: int) -> "SVD":
        return SVD(self.U[:, :rank], self.S[:rank], self.Vh[:rank])

    def factors(self) -> Factors:
        return Factors(self.U * self.S, self.Vh)


@dataclass(frozen=True)
class HConcatSVD:
    """[ΔW_1, .., ΔW_N] = U diag(S) [Vh_1, .., Vh_N]  (Vh_i: R × d_in, the task blocks of Vᵀ)."""

    U: torch.Tensor
    S: torch.Tensor
    Vh_blocks: list[torch.Tensor]

    @property
    def rank(self) -> int:
        return self.S.shape[0]

    def task_delta(self, i: int) -> Factors:
        """Task i's block ΔW_i = U diag(S) Vh_i, exact when R = Σ r_i."""
        return Factors(self.U * self.S, self.Vh_blocks[i])


def _qr(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.linalg.qr(M, mode="reduced")


def thin_svd(B: torch.Tensor, A: torch.Tensor) -> SVD:
    """SVD of the product B @ A without forming it.

    B = Q_b R_b, Aᵀ = Q_a R_a  ⇒  B A = Q_b (R_b R_aᵀ) Q_aᵀ; the SVD of the small core R_b R_aᵀ gives
    U = Q_b U_c and Vh = V_cᵀ Q_aᵀ. Cost O((d_out + d_in) k²) instead of O(d_out d_in min(d_out, d_in)).
    """
    Qb, Rb = _qr(B)
    Qa, Ra = _qr(A.T)
    Uc, S, Vhc = torch.linalg.svd(Rb @ Ra.T, full_matrices=False)
    return SVD(Qb @ Uc, S, Vhc @ Qa.T)


def hconcat_svd(deltas: list[Factors], rank: int | None = None) -> HConcatSVD:
    """SVD of [ΔW_1, .., ΔW_N] (d_out × N·d_in) from the factors ΔW_i = B_i A_i.

    [ΔW_1..ΔW_N] = B_cat · blockdiag(A_1..A_N). With B_cat = Q_b R_b and A_iᵀ = Q_i R_i,
    blockdiag(A_i) = blockdiag(R_iᵀ) blockdiag(Q_iᵀ), so the concatenation equals
    Q_b · [R_b blockdiag(R_iᵀ)] · blockdiag(Q_iᵀ); only the K×K core is decomposed.
    ``rank`` truncates to the leading components (default: all, R = Σ r_i, lossless).
    """
    if not deltas:
        raise ValueError("need at least one delta")
    Qb, Rb = _qr(torch.cat([d.B for d in deltas], dim=1))
    Qs, Rs = zip(*(_qr(d.A.T) for d in deltas))
    core = Rb @ torch.block_diag(*[R.T for R in Rs])
    Uc, S, Vhc = torch.linalg.svd(core, full_matrices=False)
    blocks, start = [], 0
    for Q in Qs:
        width = Q.shape[1]
        blocks.append(Vhc[:, start:start + width] @ Q.T)
        start += width
    U = Qb @ Uc
    if rank is not None:
        U, S, blocks = U[:, :rank], S[:rank], [b[:rank] for b in blocks]
    return HConcatSVD(U, S, blocks)


def rank1_gram(B: torch.Tensor, A: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Gram matrix of the K rank-1 atoms b_k a_kᵀ, vectorized: G_kl = (b_k·b_l)(a_k·a_l).

    ⟨vec(b aᵀ), vec(b' a'ᵀ)⟩ = (b·b')(a·a'), so G = (BᵀB) ⊙ (AAᵀ) (TARA.md §2.2). With ``normalize``
    every atom is scaled to unit Frobenius norm first (G_kk = 1), the option DESIGN.md §5 asks for.
    """
    G = (B.T @ B) * (A @ A.T)
    return normalize_gram(G) if normalize else G


def normalize_gram(G: torch.Tensor) -> torch.Tensor:
    """The Gram matrix of the same vectors scaled to unit norm: G_kl / sqrt(G_kk G_ll)."""
    d = torch.sqrt(torch.clamp(torch.diagonal(G), min=torch.finfo(G.dtype).tiny))
    return G / d[:, None] / d[None, :]


def effective_rank(singular_values: torch.Tensor) -> float:
    """Roy–Vetterli effective rank exp(−Σ p_k log p_k), p = σ/‖σ‖₁ (TARA.md §2.1, reference code's ε)."""
    s = singular_values.double().clamp(min=0)
    p = s / (s.sum() + _EPS)
    return float(torch.exp(-(p * torch.log(p + _EPS)).sum()))


def erank_from_gram(G: torch.Tensor) -> float:
    """Effective rank of the matrix whose Gram matrix is G: its singular values are sqrt(eig(G))."""
    ev = torch.linalg.eigvalsh(G.double()).clamp(min=0)
    return effective_rank(torch.sqrt(ev))


def frobenius_norm(f: Factors) -> float:
    """‖B A‖_F = sqrt(tr((BᵀB)(AAᵀ))) without materializing."""
    val = torch.sum((f.B.T @ f.B) * (f.A @ f.A.T))
    return float(torch.sqrt(torch.clamp(val, min=0)))


def polar(M: torch.Tensor) -> torch.Tensor:
    """Orthogonal polar factor P Qᵀ of M = P Σ Qᵀ (nearest matrix with orthonormal columns/rows)."""
    P, _, Qh = torch.linalg.svd(M, full_matrices=False)
    return P @ Qh
