"""Every merge method against an independent dense reference (numpy, full ΔW matrices), against PEFT's
``add_weighted_adapter`` where the semantics match, and the identities any merge must satisfy."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tara_core import load_adapter_set, merge
from tara_core.adapters import build_adapter_set
from tara_core.methods import KernelContext, MergeError
from tara_core.methods.dare import dare_mask

RTOL = 1e-5


def dense_tasks(aset, module):
    """ΔW_i = s_i B_i A_i as float64 numpy arrays (zeros where the adapter lacks the module)."""
    out = []
    for i in range(len(aset)):
        lm = aset.get(i, module)
        out.append(np.zeros(aset.shapes[module]) if lm is None
                   else lm.scale * lm.B.double().numpy() @ lm.A.double().numpy())
    return out


def close(actual, expected, rtol=RTOL):
    actual = actual.double().numpy() if torch.is_tensor(actual) else actual
    scale = max(np.abs(expected).max(), 1e-12)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


# ---- dense references ----------------------------------------------------------------------------------
def ref_trim(t, density):
    k = int(density * t.size)
    flat = np.abs(t).ravel()
    keep = np.zeros(t.size, bool)
    keep[np.argsort(-flat, kind="stable")[:k]] = True
    return np.where(keep.reshape(t.shape), t, 0.0)


def ref_elect_merge(tasks, weights, majority="total"):
    T = np.stack(tasks)
    mass = T.sum(0) if majority == "total" else np.sign(T).sum(0)
    gamma = np.where(mass >= 0, 1.0, -1.0)
    out = np.zeros_like(T[0])
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            agree = [k for k in range(len(tasks)) if np.sign(T[k, i, j]) == gamma[i, j]]
            if agree:
                out[i, j] = sum(weights[k] * T[k, i, j] for k in agree) / len(agree)
    return out


def ref_polar(M):
    P, _, Qh = np.linalg.svd(M, full_matrices=False)
    return P @ Qh


def ref_knots_blocks(tasks, ranks):
    cat = np.concatenate(tasks, axis=1)
    U, S, Vt = np.linalg.svd(cat, full_matrices=False)
    R = sum(ranks)
    U, S, Vt = U[:, :R], S[:R], Vt[:R]
    d_in = tasks[0].shape[1]
    return U, [S[:, None] * Vt[:, i * d_in:(i + 1) * d_in] for i in range(len(tasks))]


def ref_tsv(tasks, ranks, weights, lam):
    n = len(tasks)
    Us, Ss, Vs = [], [], []
    for t, r, w in zip(tasks, ranks, weights):
        U, S, Vt = np.linalg.svd(t, full_matrices=False)
        k = math.ceil(r / n)
        Us.append(U[:, :k]); Ss.append(S[:k] * w); Vs.append(Vt[:k].T)
    U, V, S = ref_polar(np.concatenate(Us, 1)), ref_polar(np.concatenate(Vs, 1)), np.concatenate(Ss)
    return lam * U @ np.diag(S) @ V.T


def ref_iso_c(tasks, weights, lam):
    U, S, Vt = np.linalg.svd(sum(w * t for w, t in zip(weights, tasks)), full_matrices=False)
    r = int((S > S[0] * max(tasks[0].shape) * 1e-7).sum())
    return lam * S[:r].mean() * U[:, :r] @ Vt[:r]


def ref_iso_cts(tasks, weights, lam, frac):
    ta = sum(w * t for w, t in zip(weights, tasks))
    U, S, Vt = np.linalg.svd(ta, full_matrices=False)
    R = int((S > S[0] * max(ta.shape) * 1e-7).sum())
    s = (R - int(frac * R)) // len(tasks)
    k = R - len(tasks) * s  # leftover directions join the common subspace (the reference code's rule)
    Uc = U[:, :k]
    Us, Ss, Vs = [Uc], [S[:k]], [Vt[:k].T]
    for t, w in zip(tasks, weights):
        Ut, St, Vtt = np.linalg.svd(w * (t - Uc @ Uc.T @ t), full_matrices=False)
        Us.append(Ut[:, :s]); Ss.append(St[:s]); Vs.append(Vtt[:s].T)
    Up, Vp = ref_polar(np.concatenate(Us, 1)), ref_polar(np.concatenate(Vs, 1))
    return lam * np.concatenate(Ss).mean() * Up @ Vp.T


@pytest.fixture(scope="module")
def aset(families):
    return load_adapter_set(families["bert"].adapters)


@pytest.fixture(scope="module")
def aset_full(families):
    """CLIP adapters: the first two share all modules (needed where absent tasks would change the math)."""
    return load_adapter_set(families["clip"].adapters[:2])


WEIGHTS = [0.7, 1.3, -0.4]


# ---- every method vs its dense reference ------------------------------------------------------------
def test_ta_and_cat(aset):
    r = merge(aset, "ta", **{"lambda": 0.3, "weights": WEIGHTS})
    c = merge(aset, "cat", weights=WEIGHTS)
    for m in aset.module_names:
        T = dense_tasks(aset, m)
        close(r.dense(m), 0.3 * sum(w * t for w, t in zip(WEIGHTS, T)))
        close(c.dense(m), sum(w * t for w, t in zip(WEIGHTS, T)))
        assert r.deltas[m].rank == aset.total_rank(m)


@pytest.mark.parametrize("majority", ["total", "frequency"])
def test_ties(aset, majority):
    r = merge(aset, "ties", **{"lambda": 0.9, "density": 0.3, "weights": WEIGHTS, "majority_sign": majority})
    for m in aset.module_names:
        T = [ref_trim(t, 0.3) for t in dense_tasks(aset, m)]
        close(r.dense(m), 0.9 * ref_elect_merge(T, WEIGHTS, majority))


def _ref_dare_tasks(aset, m, density, seed):
    out = []
    for i, t in enumerate(dense_tasks(aset, m)):
        mask = dare_mask(t.shape, density, KernelContext(seed, m).generator(i)).numpy()
        out.append(np.where(mask, t / density, 0.0))
    return out


def test_dare_linear_and_ties(aset):
    lin = merge(aset, "dare-linear", **{"lambda": 0.5, "density": 0.6, "seed": 3, "weights": WEIGHTS})
    ties = merge(aset, "dare-ties", **{"lambda": 1.0, "density": 0.6, "seed": 3, "weights": WEIGHTS})
    for m in aset.module_names:
        D = _ref_dare_tasks(aset, m, 0.6, 3)
        close(lin.dense(m), 0.5 * sum(w * d for w, d in zip(WEIGHTS, D)))
        close(ties.dense(m), ref_elect_merge(D, WEIGHTS))


def test_dare_is_seeded_and_unbiased(aset):
    m = aset.module_names[0]
    a = merge(aset, "dare-linear", seed=1).dense(m)
    b = merge(aset, "dare-linear", seed=1).dense(m)
    c = merge(aset, "dare-linear", seed=2).dense(m)
    assert torch.equal(a, b) and not torch.equal(a, c)
    mean = sum(merge(aset, "dare-linear", seed=s, density=0.5).dense(m) for s in range(200)) / 200
    ta = merge(aset, "ta").dense(m)
    assert float((mean - ta).norm() / ta.norm()) < 0.15


@pytest.mark.parametrize("inner", ["ta", "ties", "dare"])
def test_knots(aset_full, inner):
    w = WEIGHTS[:2]
    params = {"lambda": 0.8, "weights": w} | ({} if inner == "ta" else {"density": 0.4})
    if inner == "dare":
        params["seed"] = 5
    r = merge(aset_full, f"knots-{inner}", **params)
    for m in aset_full.module_names:
        T = dense_tasks(aset_full, m)
        ranks = [aset_full.get(i, m).rank for i in range(2)]
        U, blocks = ref_knots_blocks(T, ranks)
        if inner == "ta":
            M = sum(wi * b for wi, b in zip(w, blocks))
        elif inner == "ties":
            M = ref_elect_merge([ref_trim(b, 0.4) for b in blocks], w)
        else:
            D = []
            for i, b in enumerate(blocks):
                mask = dare_mask(b.shape, 0.4, KernelContext(5, m).generator(i)).numpy()
                D.append(np.where(mask, b / 0.4, 0.0))
            M = ref_elect_merge(D, w)
        # with majority_sign=total (used here) trimming, dropping and sign election are equivariant to flipping
        # a singular pair (u_k, row k), so U M is unique although U and Σ V_iᵀ are only defined up to those signs;
        # with frequency a tie (as many + as −) elects +1 as PEFT does, which a flip turns into −1 (ties.py)
        close(r.dense(m), 0.8 * U @ M, rtol=1e-4)


def test_tsv(aset_full):
    w = [0.9, 1.2]
    r = merge(aset_full, "tsv", **{"lambda": 0.7, "weights": w})
    for m in aset_full.module_names:
        ranks = [aset_full.get(i, m).rank for i in range(2)]
        close(r.dense(m), ref_tsv(dense_tasks(aset_full, m), ranks, w, 0.7))


def test_iso_c_and_cts(aset_full):
    w = [0.9, 1.2]
    c = merge(aset_full, "iso-c", **{"lambda": 1.5, "weights": w})
    cts = merge(aset_full, "iso-cts", **{"lambda": 1.1, "weights": w, "common_fraction": 0.6})
    for m in aset_full.module_names:
        T = dense_tasks(aset_full, m)
        close(c.dense(m), ref_iso_c(T, w, 1.5))
        close(cts.dense(m), ref_iso_cts(T, w, 1.1, 0.6), rtol=1e-4)


def test_lora_lego_singleton_clusters_rescale_the_sum(aset_full):
    m = aset_full.module_names[0]
    K = aset_full.total_rank(m)
    r = merge(aset_full, "lora-lego", clusters=K)
    T = dense_tasks(aset_full, m)
    total = sum(T)
    target = np.mean([np.linalg.norm(t) for t in T])
    close(r.dense(m), total * target / np.linalg.norm(total))


# ---- identities -------------------------------------------------------------------------------------
ONE_ADAPTER = {
    "ta": {"lambda": 1.0}, "cat": {}, "ties": {"density": 1.0}, "dare-linear": {"density": 1.0, "lambda": 1.0},
    "dare-ties": {"density": 1.0}, "knots-ta": {"lambda": 1.0}, "knots-ties": {"density": 1.0},
    "knots-dare": {"density": 1.0}, "tsv": {"sv_fraction": 1.0}, "lora-lego": {},
}


@pytest.mark.parametrize("method", sorted(ONE_ADAPTER))
def test_one_adapter_weight_one_reproduces_and_minus_one_negates(families, method):
    one = load_adapter_set(families["clip"].adapters[:1])
    pos = merge(one, method, **ONE_ADAPTER[method])
    for m in one.module_names:
        close(pos.dense(m), dense_tasks(one, m)[0])
    if method != "lora-lego":  # LEGO rescales to the mean input norm: the sign survives, checked below
        neg = merge(one, method, **ONE_ADAPTER[method], weights=[-1.0])
        for m in one.module_names:
            close(neg.dense(m), -dense_tasks(one, m)[0])


def _twin_set(families):
    a = load_adapter_set(families["clip"].adapters[:1]).adapters[0]
    twin = replace(a, name="twin", sha256="0" * 64)
    return build_adapter_set([a, twin])


@pytest.mark.parametrize("method", ["ta", "cat", "knots-ta", "dare-linear"])
def test_twins_with_opposite_weights_cancel(families, method):
    twins = _twin_set(families)
    params = {"weights": [1.0, -1.0]} | ({"density": 1.0} if method.startswith("dare") else {})
    r = merge(twins, method, **params)
    for m in twins.module_names:
        assert float(r.dense(m).abs().max()) < 1e-5 * float(dense_tasks(twins, m)[0].__abs__().max())


def test_knots_decomposition_is_lossless(aset_full):
    from tara_core.lowrank import hconcat_svd

    for m in aset_full.module_names:
        svd = hconcat_svd(aset_full.factors(m))
        for i, t in enumerate(dense_tasks(aset_full, m)):
            close(svd.task_delta(i).materialize(), t)


# ---- PEFT's add_weighted_adapter -------------------------------------------------------------------
@pytest.fixture(scope="module")
def peft_bert(families):
    from peft import PeftModel

    fam = families["bert"]
    model = PeftModel.from_pretrained(__import__("copy").deepcopy(fam.model), fam.adapters[0], adapter_name="a0")
    for i, path in enumerate(fam.adapters[1:], start=1):
        model.load_adapter(path, adapter_name=f"a{i}")
    return model


def _peft_delta(model, module, adapter):
    layer = model.base_model.model.get_submodule(module)
    return layer.get_delta_weight(adapter).double().numpy()


def _two_full(families):
    """PEFT's svd types need every adapter on every module: use the first two BERT adapters' common modules."""
    return load_adapter_set(families["bert"].adapters[:2])


@pytest.mark.parametrize("ctype", ["cat", "svd", "ties_svd", "dare_linear_svd", "dare_ties_svd"])
def test_against_peft_add_weighted_adapter(families, peft_bert, ctype):
    w = [0.6, 1.4]
    aset2 = _two_full(families)
    common = [m for m in aset2.module_names if all(aset2.get(i, m) is not None for i in range(2))]
    kwargs = dict(adapters=["a0", "a1"], weights=w, adapter_name=f"m_{ctype}", combination_type=ctype)
    if ctype != "cat":
        kwargs["svd_rank"] = 32  # = min(d_out, d_in): no truncation, so the comparison is exact
    if ctype in ("ties_svd", "dare_linear_svd", "dare_ties_svd"):
        kwargs["density"] = 0.35 if ctype == "ties_svd" else 1.0
    peft_bert.add_weighted_adapter(**kwargs)
    ours = {
        "cat": ("cat", {}), "svd": ("ta", {"lambda": 1.0}),
        "ties_svd": ("ties", {"density": 0.35}),
        "dare_linear_svd": ("dare-linear", {"density": 1.0, "lambda": 1.0}),
        "dare_ties_svd": ("dare-ties", {"density": 1.0}),
    }[ctype]
    r = merge(aset2, ours[0], weights=w, **ours[1])
    for m in common:
        close(r.dense(m), _peft_delta(peft_bert, m, f"m_{ctype}"), rtol=1e-4)


# ---- parameters ----------------------------------------------------------------------------------------
def test_bad_method_and_parameters(aset):
    with pytest.raises(MergeError, match="unknown method 'nope'"):
        merge(aset, "nope")
    with pytest.raises(MergeError, match="has no parameter"):
        merge(aset, "ta", density=0.5)
    with pytest.raises(MergeError, match="density.*≤ 1"):
        merge(aset, "ties", density=1.5)
    with pytest.raises(MergeError, match="density.*≥ 0"):
        merge(aset, "ties", density=-0.1)
    with pytest.raises(MergeError, match="weights.*3 adapters"):
        merge(aset, "ta", weights=[1.0, 2.0])
    with pytest.raises(MergeError, match="majority_sign"):
        merge(aset, "ties", majority_sign="mean")
    with pytest.raises(MergeError, match="finite"):
        merge(aset, "ta", **{"lambda": float("nan")})


@pytest.mark.parametrize("method", ["ties", "knots-ties"])
def test_model_wide_trim_matches_a_flattened_reference(families, method):
    """trim_scope=model keeps each task's top-density entries over all its modules (the TIES/KnOTS reference
    code's flattened task vector); checked against one global kthvalue per task, computed directly."""
    from tara_core.methods.knots import knots_trim_inputs
    from tara_core.methods.ties import magnitude_threshold, ties_trim_inputs

    aset = load_adapter_set(families["clip"].adapters)
    params = {"density": 0.3}
    per_module = merge(aset, method, **params)
    global_ = merge(aset, method, trim_scope="model", **params)
    producer = ties_trim_inputs if method == "ties" else knots_trim_inputs
    blocks = {m: producer(aset.factors(m), params) for m in aset.module_names}
    for i in range(len(aset)):
        flat = torch.cat([b[i].abs().flatten() for b in blocks.values() if b[i] is not None])
        thr = magnitude_threshold(flat, 0.3)
        kept = sum(int((b[i].abs() >= thr).sum()) for b in blocks.values() if b[i] is not None)
        assert kept == pytest.approx(0.3 * flat.numel(), abs=len(aset.module_names) + 1)
    differ = [m for m in aset.module_names if not torch.allclose(per_module.dense(m), global_.dense(m))]
    assert differ  # the two scopes are different merges
    if method == "ties":  # dense reference: global per-task thresholds, sign election, disjoint mean
        thr = []
        for i in range(len(aset)):
            flat = torch.cat([b[i].abs().flatten() for b in blocks.values() if b[i] is not None])
            thr.append(magnitude_threshold(flat, 0.3))
        for m, b in blocks.items():
            T = torch.stack([torch.zeros(per_module.weight_shapes[m][:2]) if t is None
                             else torch.where(t.abs() >= thr[i], t, torch.zeros(())) for i, t in enumerate(b)])
            gamma = torch.where(T.sum(0) >= 0, 1.0, -1.0)
            agree = (T.sign() == gamma).float()
            ref = (T * agree).sum(0) / agree.sum(0).clamp(min=1)
            assert torch.allclose(global_.dense(m), ref, atol=1e-6), m


def test_coverage_of_a_dense_merge(families):
    from tara_core.diagnostics import coverage

    aset = load_adapter_set(families["clip"].adapters)
    df = coverage(aset, merged=merge(aset, "ties"))
    merged = df[df.quantity == "erank_merged"]
    assert len(merged) == len(aset.module_names) and (merged.value > 1).all()
