"""Dashboard pages in Streamlit's AppTest, on the tiny zoo (fast) selected through the sidebar."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tara_core.precision import bf16_is_native
from zoo_fixture import build_tiny_zoo

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(scope="module")
def zoo_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("appzoos")
    build_tiny_zoo(root)
    old = os.environ.get("TARA_ZOO_PATH")
    os.environ["TARA_ZOO_PATH"] = str(root)
    yield root
    if old is None:
        os.environ.pop("TARA_ZOO_PATH")
    else:
        os.environ["TARA_ZOO_PATH"] = old


def _app(page: str | None = None, **state) -> AppTest:
    """The app on the tiny zoo; ``switch_page`` runs a page script directly (without the router), so the
    sidebar's keyed values are given through session state as the router would have set them."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["zoo"] = "tiny-text"
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    return at


def test_adapters_page(zoo_env):
    at = _app()
    assert not at.exception
    assert at.title[0].value.startswith("Adapters")
    assert list(at.dataframe[0].value["classes"]) == [2, 3, 4]
    at.multiselect(key="tasks").set_value(["task0", "task2"]).run()  # the sidebar drives the page
    assert list(at.dataframe[0].value["classes"]) == [2, 4]


def test_compare_page(zoo_env):
    at = _app("pages/compare.py")
    assert not at.exception
    assert at.title[0].value == "Compare methods"
    table = at.dataframe[0].value
    assert {"ta", "ties"} <= set(table.index)


def test_methods_page(zoo_env):
    at = _app("pages/methods.py")
    assert not at.exception
    assert "lora-lego" in set(at.dataframe[0].value["method"])


def test_one_task_shows_friendly_message(zoo_env):
    at = _app("pages/compare.py", tasks=["task0"])
    assert not at.exception
    assert any("at least two tasks" in i.value for i in at.info)


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def test_merge_page_slider_reoptimizes_warm(zoo_env):
    at = _app("pages/merge.py", method="tara-b", cold_steps=20, warm_steps=20, eval_limit=20)
    assert not at.exception, at.exception
    assert at.title[0].value == "Merge · tara-b"
    weighted = _metric(at, "ρ-weighted normalized accuracy")
    assert any("20 cold steps" in c.value for c in at.caption)
    # move the sliders: all weight on task2
    at.session_state["rho_task0"] = 0.0
    at.session_state["rho_task1"] = 0.0
    at.run()
    assert not at.exception, at.exception
    assert _metric(at, "ρ-weighted normalized accuracy") != weighted
    assert any("20 warm steps" in c.value for c in at.caption)
    assert any("ρ = (0.00, 0.00, 1.00)" in c.value for c in at.caption)


def test_merge_page_preference_model_follows_the_sliders(zoo_env):
    at = _app("pages/merge.py", eval_preview=10, eval_limit=20)
    assert not at.exception, at.exception
    assert at.title[0].value == "Merge · tara-b-pareto"  # the default method
    assert any("from the preference model" in c.value for c in at.caption)
    assert any("On the first 20 test examples per task" == c.value for c in at.caption)
    phis = {}
    for rho0 in (1.0, 0.0):
        at.session_state["rho_task0"] = rho0
        at.run()
        assert not at.exception, at.exception
        phis[rho0] = at.session_state["current_merge"]["merge"].coefficients
    assert any(not torch.equal(phis[1.0][k], phis[0.0][k]) for k in phis[1.0])
    # the moved task is shown with its change from uniform ρ, computed on the same examples
    moved = next(m for m in at.metric if m.label == "task0 (ρ = 0.00)")
    assert moved.delta.endswith("vs uniform ρ") and -100 <= float(moved.delta.split()[0]) <= 100
    # refine this ρ explicitly: per-ρ steps from φ(ρ)
    at.session_state["refine_steps"] = 2
    at.button(key="refine").click().run()
    assert not at.exception, at.exception
    assert any("+ 2 refine steps" in c.value for c in at.caption)
    # the download is prepared for this ρ and never served for another
    at.button(key="prep_download").click().run()
    assert at.get("download_button")
    at.session_state["rho_task0"] = 0.5
    at.run()
    assert not at.exception, at.exception
    assert not at.get("download_button")


def test_merge_page_prefetches_the_likely_next_rhos(zoo_env, monkeypatch):
    """After drawing, the Merge page computes the quick estimate of every ρ one slider step away and of every
    slider at its ends into the disk cache: those are then read without merging, another ρ is not there."""
    from tara_core import firstview
    from tara_core.zoo import open_zoo
    import tara_core.run as run

    at = _app("pages/merge.py", eval_preview=10, eval_limit=20)
    assert not at.exception, at.exception
    assert not any("prefetching" in c.value for c in at.caption)  # its progress line is cleared at the end
    zoo = open_zoo("tiny-text")
    monkeypatch.setattr(run, "run_method", lambda *a, **k: (_ for _ in ()).throw(AssertionError("computed")))

    bf16 = at.toggle(key="merge_bf16").value  # on where bf16 is native (this zoo ships no first views)
    assert bf16 == bf16_is_native("cpu")

    def quick(raw):
        rho = [round(v / sum(raw), 6) for v in raw]
        return firstview.evaluation(zoo, "tara-b-pareto", {}, [0, 1, 2], rho=rho, limit=10, bf16=bf16)

    for raw in ((0.95, 1.0, 1.0), (1.0, 1.0, 0.95), (0.0, 1.0, 1.0), (1.0, 0.0, 1.0)):  # steps; tasks dropped
        assert quick(raw)["accuracy"]
    with pytest.raises(AssertionError, match="computed"):
        quick((0.3, 0.7, 1.0))  # no test moves the sliders here


@pytest.mark.parametrize("ships", [True, False])
def test_pages_start_in_fp32_on_a_zoo_that_ships_first_views(zoo_env, monkeypatch, ships):
    """Where bf16 is native the Merge and Pareto pages start in bf16, unless the zoo ships (fp32) first views:
    then they start in fp32, so those are read rather than recomputed in another precision."""
    import tara_core.firstview as firstview
    import tara_core.precision as precision

    monkeypatch.setattr(precision, "bf16_is_native", lambda device="cpu": True)
    monkeypatch.setattr(firstview, "ships_first_views", lambda zoo: ships)
    at = _app("pages/merge.py", eval_preview=5, eval_limit=20, merge_prefetch=False)
    assert not at.exception, at.exception
    assert at.toggle(key="merge_bf16").value is (not ships)
    if ships:  # the Pareto page's first view on the tiny zoo is a sweep: checked once
        at = _app("pages/pareto.py", pareto_points=3, pareto_steps=5, pareto_limit=20)
        assert not at.exception, at.exception
        assert at.toggle(key="pareto_bf16").value is False


def test_merge_page_data_free_method(zoo_env):
    at = _app("pages/merge.py", method="ties", eval_limit=20)
    assert not at.exception, at.exception
    assert any("data-free" in c.value for c in at.caption)


def test_coverage_page(zoo_env):
    at = _app("pages/coverage.py")
    assert not at.exception, at.exception
    assert at.title[0].value == "Subspace coverage"
    assert "erank_rank1_stack" in set(at.dataframe[0].value.index)
    shown = at.metric[0].value  # the ratio the caption reads out is the metric's
    assert any(c.value.startswith(f"At {shown} these adapters'") for c in at.caption)


def test_anisotropy_page(zoo_env):
    at = _app("pages/anisotropy.py", rho_task0=0.5)
    assert not at.exception, at.exception
    assert any(m.label.startswith("κ RAW") for m in at.metric)
    kappa = {m.label: float(m.value) for m in at.metric if m.label in ("κ ORTH", "κ RAW")}
    word = "better" if kappa["κ ORTH"] < kappa["κ RAW"] else "worse"
    assert any(c.value.startswith(f"κ(J) of all modules together: ORTH is {word}") for c in at.caption)


def test_pareto_page_redraws_for_new_pair(zoo_env):
    at = _app("pages/pareto.py", pareto_methods=["ta", "tara-b", "tara-b-pareto"], pareto_points=3, pareto_steps=5,
              pareto_limit=20)
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert set(table.method) >= {"ta", "tara-b", "tara-b-pareto", "individual:task0", "individual:task1"}
    assert any("Hypervolume" in c.value for c in at.caption)
    at.selectbox(key="pareto_b").set_value("task2").run()
    assert not at.exception, at.exception
    assert "individual:task2" in set(at.dataframe[0].value.method)


def test_pages_handle_one_task(zoo_env):
    for page in ("pages/merge.py", "pages/coverage.py", "pages/anisotropy.py", "pages/pareto.py"):
        at = _app(page, tasks=["task1"])
        assert not at.exception, (page, at.exception)
        assert at.info, page


def test_osrm_page_without_and_with_variant(zoo_env):
    at = _app("pages/osrm.py")
    assert not at.exception, at.exception
    assert any("No OSRM variant" in i.value for i in at.info)
    from tara_core.recipes.osrm import build_osrm_zoo

    build_osrm_zoo(str(zoo_env / "tiny-text"), zoo_env, samples=8, log=lambda *a: None)
    at = _app("pages/osrm.py")
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table.columns) == ["task", "standard (%)", "OSRM (%)"]


def test_compare_page_with_a_data_driven_method(zoo_env):
    at = _app("pages/compare.py", compare_methods=["ta", "tara-b"], compare_steps=3)
    assert not at.exception, at.exception
    assert {"ta", "tara-b"} <= set(at.dataframe[0].value.index)
