"""Screenshots of every dashboard page on a demo zoo, for the README (real server, Debian's Chromium).

    .venv/bin/python scripts/screenshots.py --zoo demo-text --out docs/screenshots
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from browser import chromium_page, goto_page, streamlit_server, wait_idle  # noqa: E402

PAGES = [("Adapters", "Adapters ·"), ("Merge", "average normalized accuracy"), ("Coverage", "rank-1 stack / per-task sum (all modules)"),
         ("Anisotropy", "ξ over preference pairs"), ("Pareto", "accuracy (%)"), ("Compare", "Compare methods"),
         ("OSRM", "OSRM: orthogonal-subspace initialization")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="demo-text")
    ap.add_argument("--out", default="docs/screenshots")
    ap.add_argument("--pages", default=",".join(p for p, _ in PAGES))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = args.pages.split(",")
    with streamlit_server({"TARA_DEFAULT_ZOO": args.zoo}, timeout=300) as url, chromium_page(1500, 1100) as page:
        page.goto(url)
        page.get_by_text("Adapters ·").wait_for(timeout=300_000)
        for title, marker in PAGES:
            if title not in wanted:
                continue
            goto_page(page, title)
            page.get_by_text(marker).first.wait_for(timeout=900_000)
            wait_idle(page, 900_000)
            page.wait_for_timeout(1500)  # let plotly finish drawing
            page.screenshot(path=str(out / f"{title.lower()}.png"), full_page=True)
            print(f"saved {out / (title.lower() + '.png')}")


if __name__ == "__main__":
    main()
