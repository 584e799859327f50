"""Screenshots of the leaderboard site and the episode viewer in headless Chromium, for the docs.

Builds the site from a folder of results (nothing is rerun), opens the
overview, one task page and one viewer page (its first episode expanded),
checks that no element runs past the page or has clipped text, and writes
PNGs.

    .venv/bin/python benchmarks/site_screenshots.py [RESULTS_DIR] [-o docs/img] [--task steerability]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from talkwalk_bench import leaderboard as lb
    from talkwalk_bench.browser import Browser
    from talkwalk_bench.site import build_site, page_name, viewer_name

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="?", default="results")
    p.add_argument("-o", "--out", default="docs/img")
    p.add_argument("--task", default="steerability")
    p.add_argument("--site", default=None, help="build the site here (default a temporary folder)")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(a.site or Path(tmp) / "site")
        results, _ = lb.collect([Path(a.results)])
        boards = lb.build(results)
        build_site(boards, site)
        board = next(b for b in boards if b.task == a.task)
        row = next(r for r in board.rows if not r.oracle)
        pages = [("site_overview.png", site / "index.html", None, 1500),
                 (f"site_{a.task}.png", site / page_name(f"{board.task}-{board.dataset}"), None, 1700),
                 ("viewer.png", site / viewer_name(board, row.results[0][0]),
                  "document.querySelector('details.ep').open = true", 1900)]
        problems = []
        with Browser(Path(tmp) / "profile", width=1400, height=1000) as b:
            for name, page, script, height in pages:
                b.open(page)
                if script:
                    b.eval(script)
                problems += [f"{page.name}: {e}" for e in b.overflowing()]
                b.screenshot(out / name, height=height)
                print(out / name)
    for line in problems:
        print(f"layout: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
