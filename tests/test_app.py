"""Dashboard pages in Streamlit's AppTest, on the tiny zoo (fast) selected through the sidebar."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

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
