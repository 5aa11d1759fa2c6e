"""TARA-A/B and AdaMerging: identities with the data-free methods, gradients, determinism, preference control."""
from __future__ import annotations


import pytest
import torch

from tara_core.methods import MergeError, merge
from tara_core.objective import ObjectiveError, scalarize, validate_rho
from tara_core.optimize import MergeData, optimize, task_entropies, to_merge_result
from tara_core.tara import build_parameterization
from tara_core.zoo import open_zoo
from zoo_fixture import build_tiny_zoo


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return open_zoo(build_tiny_zoo(tmp_path_factory.mktemp("tarazoo")))


def _close(a, b, tol=1e-5):
    scale = max(float(b.abs().max()), 1e-12)
    assert float((a - b).abs().max()) <= tol * scale


@pytest.mark.parametrize("c", [0.4, 0.7, -0.3])
def test_tara_b_constant_phi_zero_steps_equals_task_arithmetic(zoo, c):
    res = optimize(MergeData.from_zoo(zoo), zoo.adapters, "tara-b", config={"phi_init": c, "steps": 0})
    tara = to_merge_result(res, zoo.adapters)
    ta = merge(zoo.adapters, "ta", **{"lambda": c})
    for m in zoo.adapters.module_names:
        _close(tara.dense(m), ta.dense(m))


@pytest.mark.parametrize("variant", ["tara-a", "adamerging-layer", "adamerging-task"])
def test_constant_phi_one_equals_cat(zoo, variant):
    param = build_parameterization(zoo.adapters, variant)
    deltas = param.deltas(param.initial(1.0))
    cat = merge(zoo.adapters, "cat")
    for m in zoo.adapters.module_names:
        _close(deltas[m].materialize(), cat.dense(m))


def test_tara_b_coefficient_layout_matches_paper_formula(zoo):
    """ΔW = Σ_i Σ_k φ_ik σ_k u_k v_kiᵀ with φ in the order [task 1: k=1..R, task 2: ...] (dense check)."""
    from tara_core.lowrank import hconcat_svd

    param = build_parameterization(zoo.adapters, "tara-b")
    m = zoo.adapters.module_names[0]
    K = param.modules[m].K
    phi = {k: torch.randn(s, generator=torch.Generator().manual_seed(1)) for k, s in param.shapes.items()}
    got = param.deltas(phi)[m].materialize()
    svd = hconcat_svd(zoo.adapters.factors(m), rank=K // len(zoo.adapters))
    R = svd.rank
    ref = sum(phi[m][i * R + k] * svd.S[k] * torch.outer(svd.U[:, k], svd.Vh_blocks[i][k])
              for i in range(len(zoo.adapters)) for k in range(R))
    _close(got, ref, 1e-4)


def test_side_path_and_materialized_agree(zoo):
    data = MergeData.from_zoo(zoo)
    param = build_parameterization(zoo.adapters, "tara-b")
    g = torch.Generator().manual_seed(0)
    phi = {k: (0.4 + 0.2 * torch.randn(s, generator=g)).requires_grad_(True) for k, s in param.shapes.items()}
    batches = [v[:4] for v in data.val]
    out = {}
    for mode in ("side", "materialized"):
        H = task_entropies(data, param, phi, batches, {m: mode for m in param.modules})
        grads = torch.autograd.grad(H.sum(), list(phi.values()))
        out[mode] = (H.detach(), grads)
    _close(out["side"][0], out["materialized"][0], 1e-5)
    for a, b in zip(out["side"][1], out["materialized"][1]):
        _close(a, b, 1e-4)


def test_gradient_matches_finite_differences(tmp_path):
    zoo64 = open_zoo(build_tiny_zoo(tmp_path))
    zoo64.backbone.model.double()
    for h in zoo64.heads:
        h.weight = h.weight.double()
    data = MergeData.from_zoo(zoo64)
    for variant in ("tara-a", "tara-b"):
        param = build_parameterization(zoo64.adapters, variant)
        for p in param.modules.values():
            p.L, p.Rt = p.L.double(), p.Rt.double()
        phi = {k: torch.full(s, 0.4, dtype=torch.float64, requires_grad=True) for k, s in param.shapes.items()}
        batches = [v[:4] for v in data.val]
        rho = validate_rho([0.5, 0.3, 0.2], 3)

        def objective(ph):
            return scalarize(task_entropies(data, param, ph, batches), rho, data.anchors.double(), "stch", 1.0)

        grad = torch.autograd.grad(objective(phi), list(phi.values()))
        key = list(phi)[0]
        for j in (0, 3):
            eps = 1e-6
            plus = {k: v.detach().clone() for k, v in phi.items()}
            minus = {k: v.detach().clone() for k, v in phi.items()}
            plus[key][j] += eps
            minus[key][j] -= eps
            fd = (objective(plus) - objective(minus)) / (2 * eps)
            assert float(grad[0][j]) == pytest.approx(float(fd), rel=1e-4, abs=1e-9)


def test_same_seed_same_phi(zoo):
    data = MergeData.from_zoo(zoo)
    cfg = {"steps": 5, "batch_size": 4, "seed": 3}
    a = optimize(data, zoo.adapters, "tara-a", config=cfg)
    b = optimize(data, zoo.adapters, "tara-a", config=cfg)
    c = optimize(data, zoo.adapters, "tara-a", config={**cfg, "seed": 4})
    assert all(torch.equal(a.phi[k], b.phi[k]) for k in a.phi)
    assert any(not torch.equal(a.phi[k], c.phi[k]) for k in a.phi)


def test_one_hot_rho_lowers_its_task_entropy(zoo):
    data = MergeData.from_zoo(zoo)
    cfg = {"steps": 40, "batch_size": 8, "lr": 1e-2}
    uniform = optimize(data, zoo.adapters, "tara-b", rho=[1, 1, 1], config=cfg)
    focused = optimize(data, zoo.adapters, "tara-b", rho=[0, 0, 1], config=cfg)
    param = uniform.param
    full = [v for v in data.val]
    h_uniform = task_entropies(data, param, uniform.phi, full)[2]
    h_focused = task_entropies(data, param, focused.phi, full)[2]
    assert float(h_focused) < float(h_uniform)


def test_cancel_stops_within_one_step_and_returns_best(zoo):
    data = MergeData.from_zoo(zoo)
    calls = {"n": 0}

    def cancel_after_three():
        calls["n"] += 1
        return calls["n"] > 3

    res = optimize(data, zoo.adapters, "tara-a", config={"steps": 50, "batch_size": 4, "lr": 0.05},
                   should_cancel=cancel_after_three)
    assert res.cancelled and res.steps_run == 3
    losses = [h["loss"] for h in res.history]
    assert res.best_step == min(range(3), key=losses.__getitem__)
    assert all(torch.equal(res.phi[k], res.best_phi[k]) for k in res.phi)


def test_on_best_keeps_the_best_phi_of_an_interrupted_run(zoo):
    """A run interrupted from outside (an exception in the progress callback, as a dashboard rerun does)
    still leaves the caller the best φ seen, through on_best."""
    data = MergeData.from_zoo(zoo)
    seen = []

    class Interrupted(Exception):
        pass

    def progress(step, total, record):
        if step == 4:
            raise Interrupted

    with pytest.raises(Interrupted):
        optimize(data, zoo.adapters, "tara-a", config={"steps": 50, "batch_size": 4, "lr": 0.05},
                 progress=progress, on_best=lambda phi, step: seen.append((step, phi)))
    full = optimize(data, zoo.adapters, "tara-a", config={"steps": 4, "batch_size": 4, "lr": 0.05})
    losses = [h["loss"] for h in full.history]
    best_step = min(range(4), key=losses.__getitem__)
    assert seen[-1][0] == best_step
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)


def test_warm_start_continues_from_previous_phi(zoo):
    data = MergeData.from_zoo(zoo)
    first = optimize(data, zoo.adapters, "tara-b", config={"steps": 3, "batch_size": 4})
    again = optimize(data, zoo.adapters, "tara-b", config={"steps": 0}, warm_start=first.phi, param=first.param)
    assert all(torch.equal(first.phi[k], again.phi[k]) for k in first.phi)
    with pytest.raises(MergeError, match="warm_start"):
        optimize(data, zoo.adapters, "tara-b", config={"steps": 1}, warm_start={"x": torch.zeros(2)})


def test_on_step_phi_equals_a_shorter_run(zoo):
    """φ seen after s steps of a long run is the result of the same run with steps = s (the step sweep of
    bench/bench_fidelity.py relies on it)."""
    data = MergeData.from_zoo(zoo)
    cfg = {"batch_size": 4, "lr": 0.05}
    kept = {}
    optimize(data, zoo.adapters, "tara-b", config={**cfg, "steps": 5},
             on_step=lambda s, phi: kept.__setitem__(s, {k: v.detach().clone() for k, v in phi.items()}))
    assert sorted(kept) == [1, 2, 3, 4, 5]
    short = optimize(data, zoo.adapters, "tara-b", config={**cfg, "steps": 2})
    assert all(torch.allclose(kept[2][k], short.phi[k], atol=1e-6) for k in short.phi)
    assert any(not torch.allclose(kept[2][k], kept[5][k]) for k in short.phi)


def test_progress_callback(zoo):
    seen = []
    optimize(MergeData.from_zoo(zoo), zoo.adapters, "adamerging-task", config={"steps": 3, "batch_size": 2},
             progress=lambda s, t, losses: seen.append((s, t, set(losses))))
    assert [s for s, _, _ in seen] == [1, 2, 3] and seen[0][1] == 3
    assert {"loss", "task0", "task1", "task2"} <= seen[0][2]


@pytest.mark.parametrize("rho, match", [
    ([1, 2], "2 values but there are 3"), ([1, -1, 1], "non-negative"), ([0, 0, 0], "positive entry"),
    ([1, float("nan"), 1], "finite"), ([1, float("inf"), 1], "finite"),
])
def test_bad_rho(zoo, rho, match):
    with pytest.raises(ObjectiveError, match=match):
        optimize(MergeData.from_zoo(zoo), zoo.adapters, "tara-a", rho=rho, config={"steps": 1})


@pytest.mark.parametrize("params, match", [
    ({"steps": -1}, "steps"), ({"lr": 0}, "lr"), ({"temperature": 2}, "unknown parameter 'temperature'"),
    ({"scalarization": "max"}, "scalarization"), ({"batch_size": 0}, "batch_size"), ({"alpha": -1}, "alpha"),
])
def test_bad_parameters(zoo, params, match):
    with pytest.raises(MergeError, match=match):
        optimize(MergeData.from_zoo(zoo), zoo.adapters, "tara-a", config=params)


def test_rho_is_normalized_and_scalarizations():
    rho = validate_rho([2, 6], 2)
    assert torch.allclose(rho, torch.tensor([0.25, 0.75], dtype=torch.float64))
    f, z = torch.tensor([1.0, 2.0]), torch.tensor([1.5, 1.0])
    r = rho.float()
    assert float(scalarize(f, rho, z, "linear")) == pytest.approx(float((r * f).sum()))
    assert float(scalarize(f, rho, z, "stch", 0.5)) == pytest.approx(
        float(0.5 * torch.logsumexp(r * (f - z) / 0.5, 0)))
    assert float(scalarize(f, rho, z, "stch-abs")) == pytest.approx(float(torch.logsumexp(r * (f - z).abs(), 0)))


# ---- CLI ---------------------------------------------------------------------------------------------
def test_cli_tara_b_zero_steps_equals_ta_export(zoo, tmp_path):
    from safetensors.torch import load_file

    from tara_core.cli import main

    assert main(["merge", "--zoo", str(zoo.folder), "--method", "tara-b", "--param", "phi_init=0.6",
                 "--param", "steps=0", "--rho", "1,2,1", "--out", str(tmp_path / "tb")]) == 0
    assert main(["merge", "--zoo", str(zoo.folder), "--method", "ta", "--param", "lambda=0.6",
                 "--out", str(tmp_path / "ta")]) == 0
    import json

    manifest = json.loads((tmp_path / "tb" / "merge.json").read_text())
    assert manifest["rho"] == pytest.approx([0.25, 0.5, 0.25]) and manifest["coefficients"]["count"] > 0
    phi = load_file(tmp_path / "tb" / "phi.safetensors")
    assert all(torch.allclose(v, torch.full_like(v, 0.6)) for v in phi.values())
    from peft import PeftModel
    from transformers import AutoModel

    def deltas(folder):
        model = PeftModel.from_pretrained(AutoModel.from_pretrained(zoo.folder / "base"), folder)
        return {m: model.base_model.model.get_submodule(m).get_delta_weight("default")
                for m in zoo.adapters.module_names}

    a, b = deltas(tmp_path / "tb"), deltas(tmp_path / "ta")
    for m in a:
        _close(a[m], b[m])


def test_cli_eval_with_learned_methods(zoo, tmp_path):
    import json

    from tara_core.cli import main

    out = tmp_path / "e.json"
    assert main(["eval", "--zoo", str(zoo.folder), "--methods", "ta,tara-a,adamerging-layer", "--param",
                 "steps=2", "--param", "batch_size=4", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {r["method"] for r in rows} == {"ta", "tara-a", "adamerging-layer"}


@pytest.mark.parametrize("args, match", [
    (["--method", "tara-a", "--rho", "1,-1,1"], "non-negative"),
    (["--method", "tara-a", "--rho", "1,x"], "comma-separated"),
    (["--method", "tara-b", "--param", "steps=-2"], "steps"),
    (["--method", "ta", "--rho", "1,1,1"], "only applies to data-driven"),
])
def test_cli_bad_learned_input(zoo, tmp_path, capsys, args, match):
    from tara_core.cli import main

    assert main(["merge", "--zoo", str(zoo.folder), *args, "--out", str(tmp_path / "x")]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_default_steps_follow_the_reference_rule(zoo):
    """Without ``steps``, a run takes the reference code's epochs × min(50, batches of the smallest task's
    unlabeled set) (TARA.md §6.4): 80 on the demo zoos' 256 inputs per task, 250 once every task has ≥ 800."""
    from tara_core.optimize import reference_steps

    assert reference_steps([256] * 6, 16, 5) == 80
    assert reference_steps([1000, 800], 16, 5) == 250
    assert reference_steps([5, 800], 16, 10) == 10  # ⌈5 / 16⌉ = 1 batch per epoch
    data = MergeData.from_zoo(zoo)
    expected = reference_steps([len(v) for v in data.val], 4, 2)
    res = optimize(data, zoo.adapters, "tara-b", config={"batch_size": 4, "epochs": 2})
    assert res.steps_run == expected == res.config["steps"] and len(res.history) == expected
    assert optimize(data, zoo.adapters, "tara-b", config={"batch_size": 4, "steps": 3}).steps_run == 3
    with pytest.raises(MergeError, match="steps"):
        optimize(data, zoo.adapters, "tara-b", config={"steps": "many"})


def test_ta_kl_start_is_the_ta_lambda_closest_to_the_experts(zoo):
    """``start=ta-kl`` starts φ ≡ λ at the TA λ of the grid whose merge is closest (mean KL over tasks, first
    val rows) to each adapter's own predictions: checked against TA merges and the experts computed through the
    evaluation path, independently of the optimizer's factored forward."""
    from tara_core.evaluate import merged_overrides, predict_logits
    from tara_core.methods import merge
    from tara_core.objective import kl_to_teacher
    from tara_core.optimize import TA_KL_GRID

    data = MergeData.from_zoo(zoo)
    res = optimize(data, zoo.adapters, "tara-b", config={"start": "ta-kl", "steps": 0})
    chosen = res.config["phi_init"]
    assert data.teachers is None  # the entropy loss needs no experts: only the scored rows were predicted, not kept
    rows = min(64, min(len(v) for v in data.val))
    n = len(zoo.task_names)
    experts = [torch.softmax(predict_logits(zoo, i, zoo.data[i].val[:rows],
                                            merged_overrides(zoo, merge(zoo.adapters.subset([i]), "cat"))), -1)
               for i in range(n)]
    reference = {}
    for lam in TA_KL_GRID:
        ov = merged_overrides(zoo, merge(zoo.adapters, "ta", **{"lambda": lam}))
        reference[lam] = sum(float(kl_to_teacher(predict_logits(zoo, i, zoo.data[i].val[:rows], ov), experts[i]).mean())
                             for i in range(n)) / n
    assert reference[chosen] <= min(reference.values()) + 1e-5
    assert dict(res.config["start_kl"]) == pytest.approx(reference, rel=1e-4, abs=1e-6)
    assert all(torch.allclose(v, torch.full_like(v, chosen)) for v in res.phi.values())  # φ ≡ λ, no steps taken
    fixed = optimize(data, zoo.adapters, "tara-b", config={"steps": 0})
    assert fixed.config["phi_init"] == 0.4 and "start_kl" not in fixed.config  # the paper's start by default


def test_kl_loss_from_the_ta_kl_start_predicts_the_experts_once_and_reuses_the_start_losses(zoo, monkeypatch):
    """With ``loss=kl`` and ``start=ta-kl`` the experts' predictions are computed once on every row (the start
    scores its first rows with them) and the ``ta`` gap scale is the start's KL at the chosen λ: the same numbers
    as measuring it again."""
    import tara_core.optimize as opt

    calls = []
    real = opt.expert_probabilities
    monkeypatch.setattr(opt, "expert_probabilities", lambda *a, **k: calls.append(k.get("rows")) or real(*a, **k))
    data = MergeData.from_zoo(zoo)
    res = optimize(data, zoo.adapters, "tara-b", config={"start": "ta-kl", "loss": "kl", "gap": "ta", "steps": 1})
    assert calls == [None] and data.teachers is not None  # once, on every row
    chosen = res.config["phi_init"]
    cfg = opt.parse_config({"loss": "kl", "gap": "ta", "phi_init": chosen})
    _, scale = opt.objective_terms(data, cfg, res.param, zoo.adapters)  # measured again at φ ≡ chosen λ
    _, reused = opt.objective_terms(data, cfg, res.param, zoo.adapters,
                                    opt.ta_kl_losses(data, res.param, zoo.adapters)[chosen])
    torch.testing.assert_close(reused, scale)
