"""The dashboard in the real server and a real browser: first view of every page, and ρ slider → new numbers.

Starts ``streamlit run app.py`` on the chosen zoo (default demo-text) and drives Debian's Chromium (Playwright):

* **first view**: for each page, the time from clicking it in the sidebar to its content being drawn (its
  marker text visible) and to Streamlit idle (the first page, Adapters, also includes opening the zoo);
* **slider**: on the Merge page (default method: the preference model), the first ρ slider is dragged to 0
  (End/Home keys: one release) and back to 1, ``--moves`` times; per release, the time until "average normalized
  accuracy" shows a new value (the quick estimate) and until the larger evaluation is drawn and Streamlit is
  idle, and how much the value moved; then ``--new-rho`` single arrow-key steps down from 1, each a ρ the
  warm server has not evaluated yet;
* **far**: ``--far`` mouse clicks on the first slider's track at 30 %, 70 %, 45 %, ... of its length: values
  between the prefetched ones (steps and ends), the time until the quick estimate is shown;
* **other clicks**: at the end, in a new session, ``--other-clicks`` mouse clicks mid-track on the other sliders
  (last first) from its first view, each put back at 1: the time until the quick estimate is shown;
* **rapid**: ``--rapid`` times, a step of the second slider (a new ρ), then 0.5 s after its quick estimate is
  shown (while the larger evaluation runs) the first slider to 0 or back to 1: the time until that second
  release's quick estimate is shown (a move must not wait for the previous move's larger evaluation).

The server gets an empty ``TARA_CACHE``: everything not shipped with the zoo is computed, as for a new user.

    .venv/bin/python bench/bench_dashboard.py --zoo demo-text --moves 3
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from browser import chromium_page, goto_page, metric_value, streamlit_server, wait_idle  # noqa: E402

PAGES = [("Merge", "average normalized accuracy"), ("Coverage", "rank-1 stack / per-task sum (all modules)"),
         ("Anisotropy", "ξ over preference pairs"), ("Pareto", "Hypervolume"), ("Compare", "Compare methods"),
         ("OSRM", "Interference per module"), ("Methods", "Methods")]
LABEL = "average normalized accuracy"
WEIGHTED = "ρ-weighted normalized accuracy"


def wait_metric_change(page, old: float, timeout: float = 300_000) -> None:
    page.wait_for_function(
        """([label, old]) => {
             const box = [...document.querySelectorAll('[data-testid=stMetric]')].find(e => e.innerText.includes(label));
             if (!box) return false;
             const v = box.querySelector('[data-testid=stMetricValue]');
             // a new value, or the quick estimate drawn with the same value (its caption says what follows)
             return v && (parseFloat(v.innerText) !== old || document.body.innerText.includes('computing on'));
           }""", arg=[LABEL, old], timeout=timeout)


def wait_computed(page, settle_ms: int = 1000) -> None:
    """Until the Merge page's larger evaluation is shown ("computing on …" gone) and Streamlit is idle
    (``settle_ms``: see ``wait_idle``)."""
    page.wait_for_function("() => !document.body.innerText.includes('computing on')", timeout=300_000)
    wait_idle(page, 300_000, settle_ms=settle_ms)


def main() -> None:
    from bench_preference import cpu_name
    from tara_core.precision import bf16_is_native

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="demo-text")
    ap.add_argument("--moves", type=int, default=3, help="drags of the first slider to 0 and back")
    ap.add_argument("--new-rho", type=int, default=3, help="then single steps of the first slider down from 1 "
                                                          "(0.95, 0.90, ...): each a ρ the server has not seen")
    ap.add_argument("--far", type=int, default=3, help="then mouse clicks on the first slider's track at values "
                                                       "nothing prefetched")
    ap.add_argument("--rapid", type=int, default=2, help="second releases during the previous move's larger "
                                                         "evaluation")
    ap.add_argument("--other-clicks", type=int, default=0, help="at the end, a new session's first view: mouse "
                                                               "clicks mid-track on other sliders (last first), each "
                                                               "then put back at 1")
    ap.add_argument("--script", default="dashboard.py", help="what `streamlit run` serves: dashboard.py (the "
                                                               "README's command) or app.py (no server-start imports)")
    ap.add_argument("--screenshot", help="save the Merge page after the last move to this PNG (and the Pareto, "
                                         "Coverage and Anisotropy first views next to it)")
    args = ap.parse_args()
    console = Console()
    views, moves, far, rapid, others = [], [], [], [], []
    cache = tempfile.mkdtemp(prefix="tara-bench-cache-")  # a new user's empty cache: only what the zoo ships
    started = time.perf_counter()
    with streamlit_server({"TARA_DEFAULT_ZOO": args.zoo, "TARA_CACHE": cache}, timeout=300, script=args.script) as url, \
            chromium_page() as page:
        views.append((f"(server start: `streamlit run {args.script}` until it answers)", time.perf_counter() - started))
        t0 = time.perf_counter()
        page.goto(url)
        page.get_by_text("Adapters ·").wait_for(timeout=300_000)
        wait_idle(page, 300_000)
        views.append(("Adapters (opens the zoo)", time.perf_counter() - t0))
        for title, marker in PAGES:
            t0 = time.perf_counter()
            goto_page(page, title)
            page.get_by_text(marker).first.wait_for(timeout=600_000)
            drawn = time.perf_counter() - t0
            wait_idle(page, 600_000)
            views.append((title, time.perf_counter() - t0, drawn))
            assert not page.locator("[data-testid=stException]").count(), title
            if args.screenshot and title in ("Pareto", "Coverage", "Anisotropy"):  # untimed, after the view
                page.screenshot(path=str(Path(args.screenshot).with_name(f"{title.lower()}.png")), full_page=True)
        goto_page(page, "Merge")
        page.get_by_text(LABEL).wait_for(timeout=600_000)
        wait_idle(page, 600_000)
        thumb = page.locator("[data-testid=stSidebar]").get_by_role("slider").first
        first_task = thumb.get_attribute("aria-label")
        releases = [("Home", "0") if k % 2 == 0 else ("End", "1") for k in range(2 * args.moves)]
        releases += [("ArrowLeft", f"{1 - 0.05 * (k + 1):.2f} (new ρ)") for k in range(args.new_rho)]
        for key, to in releases:
            old = metric_value(page, LABEL)
            old_weighted = metric_value(page, WEIGHTED)
            thumb.focus()
            t0 = time.perf_counter()
            thumb.press(key)
            wait_metric_change(page, old)
            shown = time.perf_counter() - t0
            quick = metric_value(page, LABEL)
            wait_computed(page, settle_ms=0)
            moves.append({"to": to, "shown": shown, "idle": time.perf_counter() - t0,
                          "change quick": quick - old, "change final": metric_value(page, LABEL) - old,
                          "weighted": metric_value(page, WEIGHTED) - old_weighted,
                          "task": metric_value(page, f"{first_task} (ρ =")})
        track = thumb.locator("xpath=../../..")  # the slider's horizontal track (Streamlit's react-aria slider)
        for frac in (0.3, 0.7, 0.45, 0.85, 0.15, 0.6)[:args.far]:
            old = metric_value(page, LABEL)
            box = track.bounding_box()
            t0 = time.perf_counter()
            page.mouse.click(box["x"] + frac * box["width"], box["y"] + box["height"] / 2)
            wait_metric_change(page, old)
            shown = time.perf_counter() - t0
            far.append({"to": f"{frac:.0%} of the track", "shown": shown})
            wait_computed(page, settle_ms=0)
        second = page.locator("[data-testid=stSidebar]").get_by_role("slider").nth(1)
        second_task = second.get_attribute("aria-label")
        for k in range(args.rapid):
            second.focus()
            second.press("ArrowLeft")  # a ρ never seen: its larger evaluation takes seconds
            page.get_by_text(f"{second_task} (ρ =").wait_for(timeout=300_000)
            page.wait_for_function("() => document.body.innerText.includes('computing on')", timeout=300_000)
            time.sleep(0.5)
            key = "Home" if k % 2 == 0 else "End"
            thumb.focus()
            t0 = time.perf_counter()
            thumb.press(key)
            page.get_by_text(f"{first_task} (ρ =").wait_for(timeout=300_000)
            rapid.append({"to": "0" if key == "Home" else "1", "shown": time.perf_counter() - t0})
            wait_computed(page)
        if args.screenshot:  # untimed: the first task dropped (ρ = 0), what a user sees after the drag
            thumb.focus()
            thumb.press("Home")
            wait_computed(page)
            page.screenshot(path=args.screenshot, full_page=True)
        if args.other_clicks:  # a new session: its first view, then clicks mid-track on other sliders
            page.goto(url)
            page.get_by_text("Adapters ·").wait_for(timeout=300_000)
            goto_page(page, "Merge")
            page.get_by_text(LABEL).wait_for(timeout=600_000)
            wait_idle(page, 600_000)
        sliders = page.locator("[data-testid=stSidebar]").get_by_role("slider")
        for k, frac in list(zip(range(sliders.count() - 1, 0, -1), (0.4, 0.75, 0.2)))[:args.other_clicks]:
            other = sliders.nth(k)  # a click mid-track on another slider, then back to 1
            name = other.get_attribute("aria-label")
            other.scroll_into_view_if_needed()
            box = other.locator("xpath=../../..").bounding_box()
            t0 = time.perf_counter()
            page.mouse.click(box["x"] + frac * box["width"], box["y"] + box["height"] / 2)
            page.get_by_text(f"{name} (ρ =").wait_for(timeout=300_000)  # the moved task's metric: its estimate
            others.append({"slider": name, "at": frac, "shown": time.perf_counter() - t0})
            wait_computed(page, settle_ms=0)
            other.focus()
            other.press("End")
            wait_computed(page, settle_ms=0)
    shutil.rmtree(cache, ignore_errors=True)
    where = f"{cpu_name()}, fp32 unless bf16 is native (native: {bf16_is_native('cpu')})"
    t1 = Table(title=f"{args.zoo}: first view of each page (real server, Chromium; {where})")
    t1.add_column("page")
    t1.add_column("seconds to idle", justify="right")
    t1.add_column("seconds to its content", justify="right")
    for title, s, *drawn in views:
        t1.add_row(title, f"{s:.2f}", f"{drawn[0]:.2f}" if drawn else "")
    console.print(t1)
    t2 = Table(title=f"{args.zoo}: first ρ slider dragged to 0 and back, then stepped down (one key release each)")
    for col in ("release", "new number shown s", "final drawn s", "Δ avg (quick estimate)", "Δ avg (final)",
                "Δ ρ-weighted avg (final)", "moved task (final, %)"):
        t2.add_column(col, justify="right")
    for m in moves:
        t2.add_row(f"→ {m['to']}", f"{m['shown']:.2f}", f"{m['idle']:.2f}", f"{m['change quick']:+.1f}",
                   f"{m['change final']:+.1f}", f"{m['weighted']:+.1f}", f"{m['task']:.1f}")
    t2.add_row("median", f"{statistics.median(m['shown'] for m in moves):.2f}",
               f"{statistics.median(m['idle'] for m in moves):.2f}", "", "", "", "")
    console.print(t2)
    if far:
        t4 = Table(title=f"{args.zoo}: mouse clicks on the first slider's track (values nothing prefetched)")
        t4.add_column("click at")
        t4.add_column("its quick estimate shown, s", justify="right")
        for m in far:
            t4.add_row(str(m["to"]), f"{m['shown']:.2f}")
        console.print(t4)
    if others:
        t5 = Table(title=f"{args.zoo}: from a new session's first view, a mouse click mid-track on another slider")
        for col in ("slider", "click at", "its quick estimate shown, s"):
            t5.add_column(col)
        for m in others:
            t5.add_row(m["slider"], f"{m['at']:.0%} of the track", f"{m['shown']:.2f}")
        console.print(t5)
    if rapid:
        t3 = Table(title=f"{args.zoo}: a release 0.5 s into the previous move's larger evaluation")
        t3.add_column("release (first slider, after a step of the second)")
        t3.add_column("its quick estimate shown, s", justify="right")
        for m in rapid:
            t3.add_row(f"→ {m['to']}", f"{m['shown']:.2f}")
        console.print(t3)


if __name__ == "__main__":
    main()
