"""Diagnostics against explicit (dense) references and the identities they must satisfy."""
import numpy as np
import pytest
import torch

from tara_core.diagnostics import (check_prop1, collect_inputs, condition_number, coverage, jacobian, kappa_table,
                                   misalignment, objective_gradient, preference_pairs, split_module_name)
from tara_core.lowrank import effective_rank, erank_from_gram, rank1_gram
from tara_core.methods import merge
from tara_core.objective import scalarize, validate_rho
from tara_core.optimize import MergeData, task_entropies
from tara_core.tara import build_parameterization
from tara_core.zoo import open_zoo
from zoo_fixture import build_tiny_zoo


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return open_zoo(build_tiny_zoo(tmp_path_factory.mktemp("diag")))


def explicit_erank(vectors: torch.Tensor) -> float:
    """erank of the explicit stack (rows = vectors) from its singular values."""
    return effective_rank(torch.linalg.svdvals(vectors.double()))


def test_split_module_name():
    assert split_module_name("encoder.layer.3.attention.self.query") == (3, "attention.self.query")
    assert split_module_name("pooler.dense") == (-1, "pooler.dense")


def test_gram_erank_equals_explicit_stack():
    g = torch.Generator().manual_seed(0)
    B, A = torch.randn(12, 5, generator=g, dtype=torch.float64), torch.randn(5, 9, generator=g, dtype=torch.float64)
    atoms = torch.stack([torch.outer(B[:, k], A[k]).flatten() for k in range(5)])
    assert erank_from_gram(rank1_gram(B, A)) == pytest.approx(explicit_erank(atoms), rel=1e-9)
    unit = atoms / atoms.norm(dim=1, keepdim=True)
    assert erank_from_gram(rank1_gram(B, A, normalize=True)) == pytest.approx(explicit_erank(unit), rel=1e-9)


def test_erank_of_orthonormal_and_repeated_atoms():
    Q = torch.linalg.qr(torch.randn(10, 4, dtype=torch.float64))[0]
    P = torch.linalg.qr(torch.randn(8, 4, dtype=torch.float64))[0]
    assert erank_from_gram(rank1_gram(Q, P.T)) == pytest.approx(4.0, rel=1e-9)  # 4 orthonormal equal-norm atoms
    b, a = torch.randn(10, 1, dtype=torch.float64), torch.randn(1, 8, dtype=torch.float64)
    assert erank_from_gram(rank1_gram(b.repeat(1, 5), a.repeat(5, 1))) == pytest.approx(1.0, rel=1e-6)


def test_coverage_matches_dense_stacks(zoo):
    adapters = zoo.adapters
    data = MergeData.from_zoo(zoo)
    inputs = collect_inputs(data.backbone, [x for v in data.val for x in v[:4]], adapters.module_names)
    ta = merge(adapters, "ta")
    df = coverage(adapters, merged=ta, inputs=inputs)
    assert set(df["quantity"]) == {"erank_per_task_sum", "erank_rank1_stack", "erank_dw_stack", "erank_dx_stack",
                                   "erank_merged"}
    for module in adapters.module_names[:3]:
        fs = adapters.factors(module)
        dense = [f.B.double() @ f.A.double() for f in fs]
        X = inputs[module].double()
        got = df[df.module_path == module].set_index("quantity")["value"]
        atoms = torch.stack([torch.outer(f.B[:, k], f.A[k]).flatten().double() for f in fs for k in range(f.rank)])
        assert got["erank_rank1_stack"] == pytest.approx(explicit_erank(atoms), rel=1e-6)
        per_task = sum(explicit_erank(torch.stack([torch.outer(f.B[:, k], f.A[k]).flatten().double()
                                                   for k in range(f.rank)])) for f in fs)
        assert got["erank_per_task_sum"] == pytest.approx(per_task, rel=1e-6)
        assert got["erank_dw_stack"] == pytest.approx(explicit_erank(torch.stack([d.flatten() for d in dense])), rel=1e-6)
        assert got["erank_dx_stack"] == pytest.approx(
            explicit_erank(torch.stack([(d @ X.T).flatten() for d in dense])), rel=1e-6)
        merged = ta.deltas[module].B.double() @ ta.deltas[module].A.double()
        assert got["erank_merged"] == pytest.approx(effective_rank(torch.linalg.svdvals(merged)), rel=1e-6)


@pytest.fixture(scope="module")
def zoo64(tmp_path_factory):
    z = open_zoo(build_tiny_zoo(tmp_path_factory.mktemp("diag64")))
    z.backbone.model.double()
    for h in z.heads:
        h.weight = h.weight.double()
    return z


@pytest.mark.parametrize("basis", ["raw", "orth"])
def test_jacobian_matches_finite_differences(zoo64, basis):
    data = MergeData.from_zoo(zoo64)
    param = build_parameterization(zoo64.adapters, "tara-a" if basis == "raw" else "tara-b")
    for p in param.modules.values():
        p.L, p.Rt = p.L.double(), p.Rt.double()
    jac = jacobian(data, zoo64.adapters, basis, batch_size=4, param=param)
    assert jac.J.shape == (3, param.num_parameters)
    batches = [v[:4] for v in data.val]
    point = param.initial(0.4)
    key = list(point)[1]
    for j in (0, 2):
        eps = 1e-6
        plus = {k: v.double().clone() for k, v in point.items()}
        minus = {k: v.double().clone() for k, v in point.items()}
        plus[key][j] += eps
        minus[key][j] -= eps
        fd = (task_entropies(data, param, plus, batches) - task_entropies(data, param, minus, batches)) / (2 * eps)
        torch.testing.assert_close(jac.J[:, jac.columns[key]][:, j], fd.detach(), rtol=1e-5, atol=1e-8)
    # h(ρ) = Jᵀ ∂S/∂f equals the gradient of the scalarized objective computed end to end
    rho = [0.5, 0.3, 0.2]
    leaves = {k: v.double().clone().requires_grad_(True) for k, v in point.items()}
    S = scalarize(task_entropies(data, param, leaves, batches), validate_rho(rho, 3), data.anchors.double(), "stch")
    full = torch.cat([g.flatten() for g in torch.autograd.grad(S, list(leaves.values()))])
    torch.testing.assert_close(objective_gradient(jac, rho, data.anchors), full, rtol=1e-7, atol=1e-10)


def test_kappa_is_scale_invariant_and_prop1_holds():
    J = torch.randn(4, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert condition_number(7.5 * J) == pytest.approx(condition_number(J), rel=1e-10)
    s = torch.linalg.svdvals(J)
    assert condition_number(J) == pytest.approx(float(s[0] / s[3]))
    check = check_prop1(J)
    assert check["holds"] and check["sigma_min"] <= check["ratio_min"] <= check["ratio_max"] <= check["sigma_max"] * (1 + 1e-12)
    # an anisotropic J: the bounds are attained (up to sampling) and are far apart
    U, _, Vh = torch.linalg.svd(J, full_matrices=False)
    aniso = U @ torch.diag(torch.tensor([100.0, 10.0, 1.0, 0.1], dtype=torch.float64)) @ Vh
    assert condition_number(aniso) == pytest.approx(1000.0, rel=1e-8)
    assert check_prop1(aniso)["holds"]


def test_kappa_table_and_misalignment(zoo):
    data = MergeData.from_zoo(zoo)
    jac = jacobian(data, zoo.adapters, "orth", batch_size=4)
    kt = kappa_table(jac, rho=[0.6, 0.3, 0.1])
    assert set(kt["quantity"]) == {"kappa_orth"} and (kt["value"] >= 1).all()
    assert len(kt[kt.module == "all"]) == 2
    pairs = preference_pairs(3, n_random=2)
    xi = misalignment(jac, data.anchors, pairs + [("same", [0.2, 0.3, 0.5], [0.2, 0.3, 0.5])])
    vals = xi["value"].dropna()
    assert ((vals >= -1e-12) & (vals <= 1 + 1e-12)).all()
    assert np.allclose(xi[xi.pair == "same"]["value"].dropna(), 0.0, atol=1e-6)
    swapped = misalignment(jac, data.anchors, [(n, b, a) for n, a, b in pairs])
    np.testing.assert_allclose(xi[xi.pair != "same"]["value"].to_numpy(), swapped["value"].to_numpy(), atol=1e-9)
    assert xi[(xi.module == "all") & (xi.pair == "onehot0~onehot1")]["value"].iloc[0] > 0
