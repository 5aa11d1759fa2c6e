"""OSRM initialization and interference against dense numpy references and synthetic subspaces."""
import numpy as np
import pytest
import torch

from tara_core.osrm import (SecondMoment, collect_second_moments, input_interference, osrm_init,
                            output_interference, pooled_moment)
from tara_core.zoo import open_zoo
from zoo_fixture import build_tiny_zoo


def test_init_rows_are_orthonormal_smallest_eigenvectors():
    rng = np.random.default_rng(0)
    H = rng.normal(size=(200, 12)) @ np.diag(np.linspace(3, 0.1, 12))
    C = H.T @ H / len(H)
    A = osrm_init(torch.from_numpy(C), 4).numpy()
    np.testing.assert_allclose(A @ A.T, np.eye(4), atol=1e-12)
    w, V = np.linalg.eigh(C)
    P_ref = V[:, :4] @ V[:, :4].T  # projector on the smallest-eigenvalue eigenspace (dense numpy reference)
    np.testing.assert_allclose(A.T @ A, P_ref, atol=1e-10)
    with pytest.raises(ValueError, match="rank"):
        osrm_init(torch.from_numpy(C), 13)


def test_init_is_orthogonal_to_other_tasks_subspace():
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(16, 5)))[0]  # the other tasks live in a known 5-dim subspace
    others = [SecondMoment(torch.zeros(16, 16, dtype=torch.float64)) for _ in range(2)]
    for m in others:
        m.add(torch.from_numpy(rng.normal(size=(64, 5)) @ basis.T))
    A = osrm_init(pooled_moment(others), 8).numpy()
    np.testing.assert_allclose(A @ basis, 0, atol=1e-10)
    assert input_interference(torch.from_numpy(A), others[0].S) < 1e-8
    random_A = torch.from_numpy(np.linalg.qr(rng.normal(size=(16, 8)))[0].T)
    assert input_interference(random_A, others[0].S) > 0.1


def test_streamed_second_moment_equals_batch_one():
    X = torch.randn(100, 7, dtype=torch.float64)
    m = SecondMoment(torch.zeros(7, 7, dtype=torch.float64))
    for chunk in X.split(13):
        m.add(chunk)
    torch.testing.assert_close(m.S, X.T @ X)
    assert m.n == 100
    torch.testing.assert_close(m.mean(), X.T @ X / 100)


def test_interference_formulas_match_dense():
    g = torch.Generator().manual_seed(0)
    H = torch.randn(30, 9, generator=g, dtype=torch.float64)
    At, Bt = torch.randn(3, 9, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    Aj, Bj = torch.randn(3, 9, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    S = H.T @ H
    assert input_interference(At, S) == pytest.approx(float((At @ H.T).norm() / (At.norm() * H.norm())))
    assert output_interference(Bt, At, Bj, Aj, S) == pytest.approx(
        float((Bt @ At @ H.T).norm() / (Bj @ Aj @ H.T).norm()))


def test_collected_moments_match_hooked_inputs_and_skip_padding(tmp_path):
    zoo = open_zoo(build_tiny_zoo(tmp_path))
    module = zoo.adapters.module_names[0]
    inputs = zoo.data[0].val[:6]
    streamed = collect_second_moments(zoo.backbone, inputs, [module], batch_size=4)[module]
    from tara_core.diagnostics import collect_inputs

    X = collect_inputs(zoo.backbone, inputs, [module])[module].double()  # one batch, padding removed
    assert streamed.n == X.shape[0]
    torch.testing.assert_close(streamed.S, X.T @ X, rtol=1e-5, atol=1e-6)


def test_osrm_finetune_saves_adapters_peft_loads(tmp_path):
    from peft import PeftModel

    from tara_core.recipes.demo_text import finetune_lora

    zoo = open_zoo(build_tiny_zoo(tmp_path / "z"))
    enc = zoo.backbone
    modules = zoo.adapters.module_names
    moments = collect_second_moments(enc, zoo.data[1].val, modules)
    init = {m: osrm_init(moments[m].mean(), 2).float() for m in modules}
    cfg = dict(r=2, alpha=4, target_modules=sorted({m.split(".")[-1] for m in modules}), lr=1e-3, steps=0,
               batch_size=4, logit_scale=1.0)
    model = finetune_lora(enc, zoo.heads[0].weight, zoo.data[0].val, [0] * len(zoo.data[0].val), cfg, seed=0,
                          log=lambda *_: None, init_A=init)
    model.save_pretrained(tmp_path / "osrm0")
    import copy

    loaded = PeftModel.from_pretrained(copy.deepcopy(enc.model), tmp_path / "osrm0")
    for m in modules:
        A = loaded.base_model.model.get_submodule(m).lora_A["default"].weight
        torch.testing.assert_close(A, init[m])


def test_build_osrm_zoo_end_to_end(tmp_path):
    from tara_core.cli import main
    from tara_core.recipes.osrm import build_osrm_zoo, interference_report

    std = build_tiny_zoo(tmp_path)
    target = build_osrm_zoo(str(std), tmp_path, samples=8, log=lambda *a: None)
    osrm = open_zoo(target)  # hashes, accuracies and anchors recorded
    assert osrm.name == "tiny-text-osrm" and osrm.task_names == ["task0", "task1", "task2"]
    assert all(t.individual_accuracy is not None and t.anchor_entropy is not None for t in osrm.manifest.tasks)
    assert main(["zoo", "verify", str(target)]) == 0
    report = interference_report(str(std), str(target), samples=8)
    init = report[(report.adapters == "osrm") & (report.stage == "initialization")]
    std_init = report[(report.adapters == "standard") & (report.stage == "initialization")]
    assert init.input_interference.mean() < std_init.input_interference.mean()
    assert set(report.stage) == {"initialization", "after fine-tuning"}


def test_frozen_A_keeps_osrm_initialization_through_fine_tuning(tmp_path):
    """--freeze-a trains B alone: every saved A is OSRM's initialization, B has moved, and the input
    interference after fine-tuning equals the one at initialization."""
    from tara_core.recipes.osrm import build_osrm_zoo, interference_report

    std = build_tiny_zoo(tmp_path)
    target = build_osrm_zoo(str(std), tmp_path, samples=8, log=lambda *a: None, freeze_A=True)
    frozen = open_zoo(target)
    assert frozen.name == "tiny-text-osrm-frozen" and frozen.manifest.build["osrm"]["freeze_A"] is True
    standard = open_zoo(std)
    modules = standard.adapters.module_names
    moments = [collect_second_moments(standard.backbone, d.val[:8], modules) for d in standard.data]
    for t, adapter in enumerate(frozen.adapters.adapters):
        others = [k for k in range(len(moments)) if k != t]
        for m in modules:
            init = osrm_init(pooled_moment([moments[k][m] for k in others]), adapter.ranks[m]).float()
            torch.testing.assert_close(adapter.modules[m].A.float(), init, rtol=1e-5, atol=1e-6)
            assert adapter.modules[m].B.abs().max() > 0
    report = interference_report(str(std), frozen, samples=8, label="osrm, A frozen")
    rows = report[report.adapters == "osrm, A frozen"]
    by_stage = rows.groupby("stage").input_interference.mean()
    assert abs(by_stage["after fine-tuning"] - by_stage["initialization"]) < 1e-6


def test_shared_init_twin_starts_every_task_from_one_A(tmp_path):
    """The shared-init twin fine-tunes every task from the same random A: its adapters' A are much closer to
    each other than the standard zoo's (each task drawn from its own seed)."""
    from tara_core.recipes.osrm import build_shared_init_zoo

    import hashlib
    import json

    from tara_core.zoo import write_manifest

    std = build_tiny_zoo(tmp_path)
    manifest = json.loads((std / "zoo.json").read_text())
    for rel in ("results/evaluation-0123456789abcdef.json", "preference/tara-b.json"):  # computed from its adapters
        (std / rel).parent.mkdir(exist_ok=True)
        (std / rel).write_text("{}")
        manifest["files"][rel] = hashlib.sha256(b"{}").hexdigest()
    write_manifest(std, manifest)
    assert "preference/tara-b.json" in open_zoo(std).manifest.files
    twin = open_zoo(build_shared_init_zoo(str(std), tmp_path, log=lambda *a: None))
    assert twin.name == "tiny-text-shared-init" and twin.task_names == open_zoo(std).task_names
    assert not any(f.startswith(("results/", "preference/")) for f in twin.manifest.files)  # not the standard's

    def spread(zoo) -> float:  # mean distance between two tasks' A, over modules and task pairs
        ads = zoo.adapters.adapters
        gaps = []
        for i, a in enumerate(ads):
            for b in ads[i + 1:]:
                for m in a.modules:
                    r = min(a.ranks[m], b.ranks[m])  # the rows both have (ranks differ in the tiny zoo)
                    gaps.append(float((a.modules[m].A[:r] - b.modules[m].A[:r]).norm() / a.modules[m].A[:r].norm()))
        return sum(gaps) / len(gaps)

    assert spread(twin) < 0.5 * spread(open_zoo(std))


def test_rank_twin_retrains_every_adapter_at_the_new_rank_with_the_same_scale(tmp_path):
    from tara_core.recipes.osrm import build_rank_zoo

    std = open_zoo(build_tiny_zoo(tmp_path))
    twin = open_zoo(build_rank_zoo(str(std.folder), tmp_path, rank=3, log=lambda *a: None))
    assert twin.name == "tiny-text-r3" and twin.task_names == std.task_names and twin.manifest.lora["r"] == 3
    for a, b in zip(std.adapters.adapters, twin.adapters.adapters):
        assert set(b.ranks.values()) == {3} and set(a.ranks.values()) != {3}
        assert b.config["lora_alpha"] / 3 == pytest.approx(a.config["lora_alpha"] / a.config["r"])  # α / r kept
        assert all(m.B.abs().max() > 0 for m in b.modules.values())  # fine-tuned
    assert all(t.individual_accuracy is not None for t in twin.manifest.tasks)  # measured on the new adapters
