"""The real server in a real browser: every page renders, a ρ slider re-optimizes, a corrupt upload is refused.

Screenshots (one per page) go to ``test-output/screenshots/``. Runs on the tiny zoo so CI stays fast; the
same flow on demo-text is ``bench/bench_dashboard.py``.
"""
from __future__ import annotations

import io
import shutil
import zipfile

import pytest

from browser import CHROMIUM_ARGS, ROOT, chromium_page, goto_page, move_slider, streamlit_server, wait_for_new_text, wait_idle
from zoo_fixture import build_tiny_zoo

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None,
                                reason="Debian's chromium is not installed (.ci/run installs it)")
SHOTS = ROOT / "test-output" / "screenshots"


def test_every_page_in_chromium(tmp_path):
    root = tmp_path / "zoos"
    build_tiny_zoo(root)
    SHOTS.mkdir(parents=True, exist_ok=True)
    env = {"TARA_ZOO_PATH": str(root), "TARA_DEFAULT_ZOO": "tiny-text"}
    with streamlit_server(env) as url, chromium_page() as page:
        page.goto(url)
        page.get_by_text("Adapters · tiny-text").wait_for(timeout=120_000)
        wait_idle(page)
        page.screenshot(path=str(SHOTS / "adapters.png"), full_page=True)

        # a corrupt upload gives a clear error and leaves the zoo table as it was
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("adapter_config.json", '{"peft_type": "LORA", "r": 4, "lora_alpha": 4}')
            zf.writestr("adapter_model.safetensors", b"\x00garbage")
        page.locator("input[type=file]").set_input_files(
            files=[{"name": "broken.zip", "mimeType": "application/zip", "buffer": buf.getvalue()}])
        page.get_by_text("Could not use these adapters").wait_for(timeout=60_000)
        assert page.get_by_text("Adapters · tiny-text").is_visible()

        goto_page(page, "Merge")
        page.get_by_text("average normalized accuracy").wait_for(timeout=120_000)
        wait_idle(page)
        before = page.get_by_text("φ for ρ =").inner_text()
        assert "from the preference model" in before
        move_slider(page, "task0", 10)
        wait_for_new_text(page, "φ for ρ =", before)
        wait_idle(page)
        after = page.get_by_text("φ for ρ =").inner_text()
        assert before != after
        page.screenshot(path=str(SHOTS / "merge.png"), full_page=True)

        for title, marker in [("Coverage", "rank-1 stack / per-task sum (all modules)"), ("Anisotropy", "ξ over preference pairs"),
                              ("Pareto", "Two-task Pareto fronts"), ("Compare", "Compare methods"),
                              ("Methods", "Methods")]:
            goto_page(page, title)
            page.get_by_text(marker).first.wait_for(timeout=180_000)
            wait_idle(page, timeout=180_000)
            assert not page.locator("[data-testid=stException]").count(), title
            page.screenshot(path=str(SHOTS / f"{title.lower()}.png"), full_page=True)
    assert {p.name for p in SHOTS.glob("*.png")} >= {"adapters.png", "merge.png", "coverage.png", "pareto.png"}


def test_concurrent_sessions_in_chromium(tmp_path):
    """Two browser sessions moving sliders on the Merge page of one server at the same time: no exception in
    either, and each shows the merge of its own ρ."""
    from browser import metric_value

    root = tmp_path / "zoos"
    build_tiny_zoo(root)
    env = {"TARA_ZOO_PATH": str(root), "TARA_DEFAULT_ZOO": "tiny-text"}
    from playwright.sync_api import sync_playwright

    with streamlit_server(env) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        try:
            pages = [browser.new_context().new_page() for _ in range(2)]
            for page in pages:
                page.goto(url)
                page.get_by_text("Adapters · tiny-text").wait_for(timeout=120_000)
                goto_page(page, "Merge")
            for page in pages:
                page.get_by_text("average normalized accuracy").wait_for(timeout=180_000)
            for _ in range(3):  # interleaved moves: the sessions' reruns overlap on the shared model
                for i, page in enumerate(pages):
                    move_slider(page, f"task{i}", 3)
            for page in pages:
                wait_idle(page, timeout=180_000)
                assert not page.locator("[data-testid=stException]").count()
                assert metric_value(page, "average normalized accuracy") > 0
            captions = [page.get_by_text("φ for ρ =").inner_text() for page in pages]
            assert captions[0] != captions[1]  # each session kept its own ρ
        finally:
            browser.close()
