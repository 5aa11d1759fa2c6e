"""Load check of the real server: several browser sessions move ρ sliders on the Merge page at once.

Starts ``streamlit run app.py`` on the chosen zoo, opens ``--sessions`` Chromium contexts (separate Streamlit
sessions) on the Merge page and, for ``--seconds``, has each press random arrow keys on random ρ sliders
(seeded per session). Then, per session: exceptions shown on the page, the ρ it ended at, the "average
normalized accuracy" it shows, and the same number replayed solo in this process (the preference model's φ at
that ρ, evaluated on the same test examples) — the two must agree exactly. Server log tracebacks are counted.

    .venv/bin/python bench/bench_sessions.py --zoo demo-text --sessions 4 --seconds 60
"""
from __future__ import annotations

import argparse
import random
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from browser import CHROMIUM_ARGS, ROOT, goto_page, metric_value, streamlit_server, wait_idle  # noqa: E402


def rho_sliders(page):
    """The sidebar's ρ sliders (one per selected task)."""
    return page.locator("[data-testid=stSidebar]").get_by_role("slider").all()


def slider_values(page) -> dict[str, float]:
    """Each ρ slider's value, read from the slider's own value label (aria-valuenow can be missing while
    Streamlit redraws the widget)."""
    out = {}
    for s in rho_sliders(page):
        value = s.get_attribute("aria-valuenow") or s.get_attribute("aria-valuetext") or s.inner_text()
        out[s.get_attribute("aria-label")] = float(value)
    return out


def solo_replay(zoo_name: str, rho_raw: list[float], limit: int) -> float:
    """The Merge page's average normalized accuracy at this ρ, computed here without the server."""
    from tara_core.evaluate import evaluate, individual_accuracies
    from tara_core.run import run_method
    from tara_core.zoo import open_zoo

    zoo = open_zoo(zoo_name)
    total = sum(rho_raw)
    n = len(rho_raw)
    rho = [round(r / total, 6) for r in rho_raw] if total > 0 else [round(1 / n, 6)] * n
    result, _ = run_method(zoo, "tara-b-pareto", None, rho=rho)
    acc = evaluate(zoo, result, limit=limit)
    ind = individual_accuracies(zoo, limit=limit)
    return sum(100 * acc[t] / ind[t] for t in zoo.task_names) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="demo-text")
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    console = Console()
    log_dir = ROOT / "test-output"
    log_dir.mkdir(exist_ok=True)
    rows = []
    with streamlit_server({"TARA_DEFAULT_ZOO": args.zoo}, timeout=300) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        pages = [browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in range(args.sessions)]
        for page in pages:
            page.goto(url)
            page.get_by_text("Adapters ·").wait_for(timeout=300_000)
            goto_page(page, "Merge")
        for page in pages:
            page.get_by_text("average normalized accuracy").wait_for(timeout=600_000)
        rngs = [random.Random(k) for k in range(args.sessions)]
        moves = [0] * args.sessions
        end = time.time() + args.seconds
        while time.time() < end:
            for k, page in enumerate(pages):
                sliders = rho_sliders(page)
                thumb = sliders[rngs[k].randrange(len(sliders))]
                thumb.focus()
                thumb.press(rngs[k].choice(["ArrowLeft", "ArrowRight", "ArrowLeft", "Home", "End"]))
                moves[k] += 1
        for k, page in enumerate(pages):
            wait_idle(page, 600_000)
            exceptions = page.locator("[data-testid=stException]").count()
            values = slider_values(page)
            shown = metric_value(page, "average normalized accuracy")
            from tara_core.firstview import DEFAULTS

            limit = DEFAULTS["merge"]["limit"]  # the Merge page's default, which the sessions keep
            replay = solo_replay(args.zoo, list(values.values()), limit)
            rows.append({"session": k, "moves": moves[k], "exceptions": exceptions, "shown": shown,
                         "replay": replay, "rho": values})
        browser.close()
    logs = sorted(log_dir.glob("streamlit-*.log"), key=lambda f: f.stat().st_mtime)
    tracebacks = len(re.findall("Traceback", logs[-1].read_text())) if logs else 0
    table = Table(title=f"{args.zoo}: {args.sessions} sessions moving sliders for {args.seconds:.0f} s "
                        f"(server tracebacks: {tracebacks})")
    for col in ("session", "slider presses", "exceptions on page", "shown avg (%)", "solo replay (%)", "equal"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["session"]), str(r["moves"]), str(r["exceptions"]), f"{r['shown']:.1f}",
                      f"{r['replay']:.1f}", "yes" if abs(r["shown"] - r["replay"]) < 0.05 else "NO")
    console.print(table)


if __name__ == "__main__":
    main()
