"""Start the real dashboard server and drive it in Debian's Chromium through Playwright (tests and bench)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(env_extra: dict[str, str] | None = None, timeout: float = 120, script: str = "dashboard.py"):
    """``streamlit run dashboard.py`` (the README's command; ``script="app.py"``: the plain script, without the
    server-start imports) on a free localhost port; yields the base URL once the server answers; stops it after."""
    port = free_port()
    env = {**os.environ, **(env_extra or {})}
    log = open(ROOT / "test-output" / f"streamlit-{port}.log", "w") if (ROOT / "test-output").is_dir() else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / script), "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start (exit {proc.poll()})")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000):
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        raise RuntimeError("Debian's chromium is not installed (apt-get install -y chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def goto_page(page, title: str) -> None:
    """Click a page in the sidebar navigation."""
    page.get_by_role("link", name=title).first.click()


def wait_idle(page, timeout: float = 120_000, settle_ms: int = 1000) -> None:
    """Wait until Streamlit has finished the current run (no 'Running...' status widget).

    ``settle_ms`` first gives a just-triggered rerun time to show its running indicator; pass 0 when the
    caller already saw the rerun's output change."""
    page.wait_for_timeout(settle_ms)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)


def move_slider(page, label: str, presses: int, key: str = "ArrowLeft") -> None:
    """Move a Streamlit slider with the keyboard (release = the last key press)."""
    thumb = page.get_by_role("slider", name=label).first
    thumb.focus()
    for _ in range(presses):
        thumb.press(key)


def wait_for_new_text(page, prefix: str, old: str, timeout: float = 300_000) -> None:
    """Wait until an element whose text starts with ``prefix`` shows something other than ``old``."""
    page.wait_for_function(
        "([prefix, old]) => [...document.querySelectorAll('p,div,span')].some(e => e.innerText && "
        "e.innerText.startsWith(prefix) && e.innerText !== old)", arg=[prefix, old], timeout=timeout)


def metric_value(page, label: str) -> float:
    """The number shown by the st.metric labelled ``label``."""
    import re

    box = page.locator("[data-testid=stMetric]", has_text=label).first
    text = box.locator("[data-testid=stMetricValue]").inner_text()
    return float(re.search(r"-?[0-9]+(?:\.[0-9]+)?", text).group(0))
