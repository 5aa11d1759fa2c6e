"""Two-task fronts: non-dominance, reference points, and identical tables across execution backends."""
import numpy as np
import pandas as pd
import pytest

from tara_core.cli import main
from tara_core.pareto import (emphasis_rhos, grid, non_dominated, pareto_front, preference_sensitivity, sensitivity_summary,
                              steering, steering_summary)
from tara_core.zoo import open_zoo
from zoo_fixture import build_tiny_zoo


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return open_zoo(build_tiny_zoo(tmp_path_factory.mktemp("pareto")))


def test_grid_and_non_dominated():
    assert grid(3) == [1.0, 0.5, 0.0]
    with pytest.raises(ValueError, match="at least 2"):
        grid(1)
    a, b = [90, 80, 70, 60, 85], [10, 50, 60, 40, 20]
    assert non_dominated(a, b) == [True, True, True, False, True]
    assert non_dominated([1, 1], [2, 2]) == [True, True]  # ties do not dominate each other


def _front(zoo, backend, progress=None):
    return pareto_front(zoo, (0, 2), methods=("ta", "ties", "tara-b"), points=3, steps=3, warm_steps=2,
                        backend=backend, workers=2, progress=progress)


def test_front_is_non_dominated_and_has_references(zoo):
    df = _front(zoo, "local")
    assert set(df.method) == {"ta", "ties", "tara-b", "individual:task0", "individual:task2"}
    assert (df[df.method == "ta"]["t"].tolist()) == [1.0, 0.5, 0.0]
    front = df[df.on_global_front]
    for _, p in front.iterrows():
        assert not ((df.acc_a >= p.acc_a) & (df.acc_b >= p.acc_b) & ((df.acc_a > p.acc_a) | (df.acc_b > p.acc_b))).any()
    for m, g in df.groupby("method"):  # each method's best point on either task is on its own front
        for col in ("acc_a", "acc_b"):
            best = g[g[col] == g[col].max()]
            assert best.on_front.any(), (m, col)
    # the best point on each axis over everything is on the global front
    assert df[df.acc_a == df.acc_a.max()].on_global_front.any()
    assert df[df.acc_b == df.acc_b.max()].on_global_front.any()
    tara = df[df.method == "tara-b"]
    assert tara.warm.tolist() == [False, True, True]


@pytest.mark.parametrize("backend", ["process", "ray"])
def test_backends_give_identical_tables(zoo, backend):
    cols = ["method", "t", "acc_a", "acc_b", "on_front", "on_global_front"]
    seen = {"local": [], backend: []}
    local = _front(zoo, "local", lambda done, total: seen["local"].append((done, total)))[cols]
    other = _front(zoo, backend, lambda done, total: seen[backend].append((done, total)))[cols]
    pd.testing.assert_frame_equal(local.reset_index(drop=True), other.reset_index(drop=True))
    assert seen["local"] == [(k, 9) for k in range(1, 10)]  # every point of the 3 chains, in this process
    assert sorted(seen[backend]) == [(3, 9), (6, 9), (9, 9)]  # one report per finished chain


def test_bad_front_requests(zoo):
    with pytest.raises(ValueError, match="two different tasks"):
        pareto_front(zoo, (1, 1), methods=("ta",), points=3, backend="local")
    with pytest.raises(ValueError, match="unknown backend"):
        pareto_front(zoo, (0, 1), methods=("ta", "ties"), points=3, backend="mpi")
    with pytest.raises(Exception, match="unknown method"):
        pareto_front(zoo, (0, 1), methods=("nope",), points=3, backend="local")


def test_preference_sensitivity_rows(zoo):
    df = preference_sensitivity(zoo, methods=("tara-b",), draws=2, steps=2)
    assert len(df) == 2 * len(zoo.task_names)
    assert np.allclose(df.groupby("draw")["rho_task"].sum(), 1.0)


def test_sensitivity_summary_by_hand():
    rows = pd.DataFrame({"method": ["m"] * 3, "task": ["a"] * 3, "rho_task": [0.1, 0.5, 0.9],
                         "accuracy": [60.0, 70.0, 80.0], "draw": [0, 1, 2]})
    (row,) = sensitivity_summary(rows).to_dict("records")
    assert (row["min"], row["max"], row["spread"]) == (60.0, 80.0, 20.0)
    assert row["std"] == pytest.approx(10.0)
    assert row["corr(rho, acc)"] == pytest.approx(1.0)


def test_sensitivity_cli(zoo, tmp_path):
    out = tmp_path / "sens.csv"
    assert main(["sensitivity", "--zoo", str(zoo.folder), "--methods", "tara-b", "--draws", "2", "--steps", "2",
                 "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert set(df.columns) >= {"method", "draw", "task", "rho_task", "accuracy"} and len(df) == 2 * len(zoo.task_names)
    assert main(["sensitivity", "--zoo", str(zoo.folder), "--methods", "ta", "--out", str(out)]) == 2


def test_bf16_front_matches_fp32_front(zoo):
    kwargs = dict(methods=("ta", "tara-b"), points=3, steps=2, warm_steps=1, backend="local")
    fp32 = pareto_front(zoo, (0, 1), **kwargs)
    bf16 = pareto_front(zoo, (0, 1), bf16=True, **kwargs)
    assert list(bf16["method"]) == list(fp32["method"]) and list(bf16["t"]) == list(fp32["t"])
    # 20 test examples per task: a flipped prediction is 5 points
    assert (bf16[["acc_a", "acc_b"]] - fp32[["acc_a", "acc_b"]]).abs().max().max() <= 10.0


def test_steering_summary_by_hand():
    """Two tasks a, b: uniform 80 / 60; emphasizing a gives 90 / 50, emphasizing b gives 70 / 64."""
    table = {"uniform": (80, 60), "a": (90, 50), "b": (70, 64)}
    rows = pd.DataFrame([{"method": "m", "emphasized": e, "task": t, "normalized_accuracy": v}
                         for e, vals in table.items() for t, v in zip("ab", vals)])
    out = steering_summary(rows).iloc[0]
    assert out["gain a"] == 10 and out["gain b"] == 4 and out["steer"] == 7 and out["tasks gaining"] == 2
    assert out["uniform average"] == 70
    assert out["average change"] == pytest.approx(((70 - 70) + (67 - 70)) / 2)
    assert out["smallest |average change|"] == 0


def test_emphasis_zero_drops_each_task_and_ta_follows_its_weights(zoo):
    assert emphasis_rhos(3, 0.0)[1] == (0, [0.0, 0.5, 0.5])
    rows = steering(zoo, "ta", emphasis=0.0)
    assert set(rows.emphasized) == {"uniform", *zoo.task_names}
    # TA with task weights N·ρ: dropping a task is TA of the other adapters at weight N / (N − 1)
    from tara_core.evaluate import evaluate
    from tara_core.methods import merge

    n = len(zoo.task_names)
    dropped = merge(zoo.adapters, "ta", weights=[0.0] + [n / (n - 1)] * (n - 1))
    acc = evaluate(zoo, dropped)
    got = rows[rows.emphasized == zoo.task_names[0]].set_index("task")["accuracy"]
    assert all(got[t] == pytest.approx(acc[t]) for t in zoo.task_names)
