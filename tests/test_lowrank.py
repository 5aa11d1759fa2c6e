"""The factored algebra against dense, obviously-correct computations."""
import pytest
import torch

from tara_core.lowrank import (Factors, effective_rank, erank_from_gram, frobenius_norm, hconcat_svd, polar,
                               rank1_gram, thin_svd)


def _random_factors(gen, d_out, d_in, r, scale=1.0):
    return Factors(torch.randn(d_out, r, generator=gen, dtype=torch.float64),
                   torch.randn(r, d_in, generator=gen, dtype=torch.float64) * scale)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def test_thin_svd_matches_dense(gen):
    f = _random_factors(gen, 30, 20, 5)
    svd = thin_svd(f.B, f.A)
    dense_s = torch.linalg.svdvals(f.materialize())
    assert torch.allclose(svd.S, dense_s[:5], rtol=1e-10)
    assert torch.allclose(svd.U @ torch.diag(svd.S) @ svd.Vh, f.materialize(), atol=1e-10)
    assert torch.allclose(svd.U.T @ svd.U, torch.eye(5, dtype=torch.float64), atol=1e-10)


@pytest.mark.parametrize("shape", [(40, 24, [4, 6, 3]), (8, 6, [4, 4, 4])])  # second: K > d_out and r > d_in
def test_hconcat_svd_is_lossless_and_matches_dense(gen, shape):
    d_out, d_in, ranks = shape
    deltas = [_random_factors(gen, d_out, d_in, r) for r in ranks]
    svd = hconcat_svd(deltas)
    dense = torch.cat([d.materialize() for d in deltas], dim=1)
    ref = torch.linalg.svdvals(dense)
    k = svd.S.shape[0]
    assert torch.allclose(svd.S, ref[:k], rtol=1e-8, atol=1e-10)
    rebuilt = svd.U @ torch.diag(svd.S) @ torch.cat(svd.Vh_blocks, dim=1)
    assert torch.allclose(rebuilt, dense, atol=1e-9)
    for i, d in enumerate(deltas):
        assert torch.allclose(svd.task_delta(i).materialize(), d.materialize(), atol=1e-9)


def test_rank1_gram_equals_explicit_stack(gen):
    f = _random_factors(gen, 9, 7, 6)
    atoms = torch.stack([torch.outer(f.B[:, k], f.A[k]).flatten() for k in range(6)], dim=1)
    assert torch.allclose(rank1_gram(f.B, f.A), atoms.T @ atoms, atol=1e-10)
    s = torch.linalg.svdvals(atoms)
    assert erank_from_gram(rank1_gram(f.B, f.A)) == pytest.approx(effective_rank(s), rel=1e-8)
    normalized = atoms / atoms.norm(dim=0, keepdim=True)
    assert erank_from_gram(rank1_gram(f.B, f.A, normalize=True)) == pytest.approx(
        effective_rank(torch.linalg.svdvals(normalized)), rel=1e-8)


def test_effective_rank_extremes():
    assert effective_rank(torch.ones(5)) == pytest.approx(5.0, rel=1e-6)
    assert effective_rank(torch.tensor([3.0, 0, 0])) == pytest.approx(1.0, rel=1e-6)


def test_frobenius_and_polar(gen):
    f = _random_factors(gen, 12, 10, 3)
    assert frobenius_norm(f) == pytest.approx(float(f.materialize().norm()), rel=1e-10)
    M = torch.randn(12, 4, generator=gen, dtype=torch.float64)
    P = polar(M)
    assert torch.allclose(P.T @ P, torch.eye(4, dtype=torch.float64), atol=1e-10)


def test_factors_reject_bad_shapes():
    with pytest.raises(ValueError, match="do not chain"):
        Factors(torch.zeros(3, 2), torch.zeros(3, 4))
