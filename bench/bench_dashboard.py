"""Time from a ρ slider release to the updated Merge page, in the real server and a real browser.

Starts ``streamlit run app.py`` on the chosen zoo (default demo-text), opens the Merge page in Debian's
Chromium (Playwright), and times:

* **cold**: first visit, φ optimized from φ = 0.4 (the page's "steps (first run)");
* **warm**: each slider release after that (one arrow-key step; φ warm-started, "steps (after a ρ move)"),
  until the caption under the Stop button shows the new ρ and Streamlit is idle (the accuracy bars and the
  φ map are drawn in the same run, before the caption's run ends).

    .venv/bin/python bench/bench_dashboard.py --zoo demo-text --moves 5
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from browser import chromium_page, goto_page, move_slider, streamlit_server, wait_idle  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="demo-text")
    ap.add_argument("--moves", type=int, default=5)
    ap.add_argument("--screenshot", help="save the Merge page after the last move to this PNG")
    args = ap.parse_args()
    console = Console()
    with streamlit_server({"TARA_DEFAULT_ZOO": args.zoo}, timeout=300) as url, chromium_page() as page:
        page.goto(url)
        page.get_by_text("Adapters ·").wait_for(timeout=300_000)
        wait_idle(page, 300_000)
        t0 = time.perf_counter()
        goto_page(page, "Merge")
        page.get_by_text("average normalized accuracy").wait_for(timeout=600_000)
        wait_idle(page, 600_000)
        cold = time.perf_counter() - t0
        first_task = page.get_by_role("slider").first.get_attribute("aria-label") or ""
        warm, server = [], []
        for k in range(args.moves):
            before = page.get_by_text("φ for ρ =").inner_text()
            t0 = time.perf_counter()
            move_slider(page, first_task, 1, "ArrowLeft" if k % 2 == 0 else "ArrowRight")
            page.wait_for_function(
                "(old) => [...document.querySelectorAll('p,div')].some(e => e.innerText && "
                "e.innerText.startsWith('φ for ρ =') && e.innerText !== old)", arg=before, timeout=300_000)
            wait_idle(page, 300_000, settle_ms=0)
            warm.append(time.perf_counter() - t0)
            caption = page.get_by_text("φ for ρ =").inner_text()
            server.append(float(re.search(r"in ([0-9.]+) s", caption).group(1)))
        if args.screenshot:
            page.screenshot(path=args.screenshot, full_page=True)
    table = Table(title=f"{args.zoo}: slider release → updated Merge page (real server, Chromium)")
    for col in ("case", "runs", "median s", "min s", "max s", "of which φ steps (server, median s)"):
        table.add_column(col, justify="right" if col != "case" else "left")
    table.add_row("cold (first visit, optimize from φ = 0.4)", "1", f"{cold:.2f}", f"{cold:.2f}", f"{cold:.2f}", "—")
    table.add_row("warm (slider moved, warm-started φ)", str(len(warm)), f"{statistics.median(warm):.2f}",
                  f"{min(warm):.2f}", f"{max(warm):.2f}", f"{statistics.median(server):.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
