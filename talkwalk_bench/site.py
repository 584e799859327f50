"""Static leaderboard site: an index and one page per task, self-contained (no network).

Each page has the sortable table (CIs drawn as bars, oracle rows apart), the
protocol and package versions, and where the data exist inline SVG plots:
the controllable-diversity gradient of steering tasks (intra-list diversity
under "stay close", neutral, "more variety") and latency distributions.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np

from talkwalk_bench.leaderboard import _CSS, _JS, Board, to_html
from talkwalk_bench.results import atomic_write_text, episodes_path, read_episodes

PALETTE = ["#4a7bd0", "#d0654a", "#4aa86b", "#a04ad0", "#d0a64a", "#4ac3d0", "#7a7a7a", "#d04a8c"]
GRADIENT = [("ild/stay_close", "stay close"), ("ild/neutral", "neutral"), ("ild/more_variety", "more variety")]


def page_name(task: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", task) + ".html"


def _svg_gradient(board: Board) -> str:
    rows = [r for r in board.rows if all(r.metrics.get(k, {}).get("value") is not None for k, _ in GRADIENT)]
    if not rows:
        return ""
    w, h, pad = 640, 260, 40
    vals = [r.metrics[k]["value"] for r in rows for k, _ in GRADIENT]
    lo, hi = min(vals), max(vals)
    lo, hi = (lo - 0.05, hi + 0.05) if hi > lo else (lo - 0.5, hi + 0.5)

    def y(v: float) -> float:
        return h - pad - (v - lo) / (hi - lo) * (h - 2 * pad)

    xs = [pad + 30 + i * (w - 2 * pad - 160) / (len(GRADIENT) - 1) for i in range(len(GRADIENT))]
    label_ys: list[float] = []
    parts = [f"<svg class='plot' id='gradient-plot' width='{w}' height='{h}' xmlns='http://www.w3.org/2000/svg' role='img'>",
             "<title>Intra-list diversity under each diversity request</title>",
             f"<line x1='{pad}' y1='{h - pad}' x2='{w - pad}' y2='{h - pad}' stroke='#999'/>",
             f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{h - pad}' stroke='#999'/>",
             f"<text x='{pad}' y='{pad - 10}' font-size='11'>ILD@K</text>"]
    for x, (_, label) in zip(xs, GRADIENT, strict=True):
        parts.append(f"<text x='{x:.0f}' y='{h - pad + 16}' font-size='11' text-anchor='middle'>{label}</text>")
    for t in np.linspace(lo, hi, 4):
        parts.append(f"<text x='{pad - 4}' y='{y(t) + 4:.0f}' font-size='10' text-anchor='end'>{t:.2f}</text>")
    for i, r in enumerate(rows):
        c = PALETTE[i % len(PALETTE)]
        pts = [(x, y(r.metrics[k]["value"])) for x, (k, _) in zip(xs, GRADIENT, strict=True)]
        parts.append(f"<polyline fill='none' stroke='{c}' stroke-width='2' points='{' '.join(f'{a:.1f},{b:.1f}' for a, b in pts)}'/>")
        for (k, _), (a, b) in zip(GRADIENT, pts, strict=True):
            m = r.metrics[k]
            if m.get("ci_low") is not None:
                parts.append(f"<line x1='{a:.1f}' x2='{a:.1f}' y1='{y(m['ci_low']):.1f}' y2='{y(m['ci_high']):.1f}' stroke='{c}'/>")
            parts.append(f"<circle cx='{a:.1f}' cy='{b:.1f}' r='3' fill='{c}'/>")
        ly = pts[-1][1] + 4
        while any(abs(ly - other) < 11 for other in label_ys):
            ly += 11  # keep labels of overlapping lines readable
        label_ys.append(ly)
        parts.append(f"<text x='{xs[-1] + 10:.0f}' y='{ly:.0f}' font-size='10' fill='{c}'>{html.escape(r.system)}</text>")
    parts.append("</svg>")
    return ("<h3>Controllable diversity gradient</h3><p><small>Intra-list diversity (mean, 95 % CI) when the user asks to stay close, "
            "says nothing, or asks for more variety; a steerable system rises left to right.</small></p>" + "".join(parts))


def _latencies(board: Board) -> dict[str, np.ndarray]:
    out = {}
    for r in board.rows:
        path, res = r.results[0]
        secs = [rec["seconds"] for rec in read_episodes(episodes_path(path))
                if rec.get("status") == "ok" and rec.get("kind", "single") == "single" and isinstance(rec.get("seconds"), (int, float))]
        if secs:
            out[r.system] = np.asarray(secs) * 1000.0
    return out


def _svg_latency(board: Board) -> str:
    lat = _latencies(board)
    if not lat:
        return ""
    w, row_h, pad = 560, 34, 110
    h = 40 + row_h * len(lat)
    allv = np.concatenate(list(lat.values()))
    lo, hi = np.log10(max(allv.min(), 1e-4)), np.log10(max(allv.max(), 1e-3))
    hi = hi if hi > lo else lo + 1

    def x(v: float) -> float:
        return pad + (np.log10(max(v, 1e-4)) - lo) / (hi - lo) * (w - pad - 20)

    parts = [f"<svg class='plot' id='latency-plot' width='{w}' height='{h}' xmlns='http://www.w3.org/2000/svg' role='img'>",
             "<title>Single-request latency distribution (ms, log scale)</title>"]
    for i, (name, v) in enumerate(lat.items()):
        cy = 20 + i * row_h + row_h / 2
        p5, p25, p50, p75, p95, p99 = np.percentile(v, [5, 25, 50, 75, 95, 99])
        c = PALETTE[i % len(PALETTE)]
        parts.append(f"<text x='{pad - 8}' y='{cy + 4:.0f}' font-size='11' text-anchor='end'>{html.escape(name)}</text>")
        parts.append(f"<line x1='{x(p5):.1f}' x2='{x(p95):.1f}' y1='{cy}' y2='{cy}' stroke='{c}'/>")
        parts.append(f"<rect x='{x(p25):.1f}' y='{cy - 8}' width='{max(1.0, x(p75) - x(p25)):.1f}' height='16' fill='{c}' opacity='.35' stroke='{c}'/>")
        parts.append(f"<line x1='{x(p50):.1f}' x2='{x(p50):.1f}' y1='{cy - 9}' y2='{cy + 9}' stroke='#000' stroke-width='2'/>")
        parts.append(f"<circle cx='{x(p99):.1f}' cy='{cy}' r='2.5' fill='{c}'/>")
    for t in range(int(np.floor(lo)), int(np.ceil(hi)) + 1):
        parts.append(f"<text x='{x(10.0 ** t):.1f}' y='{h - 4}' font-size='10' text-anchor='middle'>{10.0 ** t:g} ms</text>")
    parts.append("</svg>")
    return ("<h3>Latency distribution</h3><p><small>Per single request after warm-up: box = 25th-75th percentile, "
            "bar = median, whiskers 5th-95th, dot = 99th; log scale.</small></p>" + "".join(parts))


def build_site(boards: list[Board], out_dir: Path, title: str = "talkwalk-bench leaderboard") -> list[Path]:
    out_dir = Path(out_dir)
    written = []
    links = []
    for b in boards:
        name = page_name(f"{b.task}-{b.dataset}")
        page = to_html([b], title=f"{b.task} ({b.dataset})")
        plots = _svg_gradient(b) + _svg_latency(b)
        nav = "<p><a href='index.html'>&larr; all tasks</a></p>"
        page = page.replace("<body>", f"<body>{nav}", 1).replace("<script>", f"{plots}<script>", 1)
        atomic_write_text(out_dir / name, page)
        written.append(out_dir / name)
        ranked = [r for r in b.rows if r.rank == 1]
        best = f"best: {html.escape(ranked[0].system)}" if ranked else ""
        links.append(f"<li><a href='{name}'>{html.escape(b.task)}</a> <small>({html.escape(b.dataset)}; {len(b.rows)} systems; main score "
                     f"{html.escape(b.main_score)}; {best})</small></li>")
    index = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
             f"<h1>{html.escape(title)}</h1><ul>{''.join(links)}</ul><script>{_JS}</script></body></html>")
    atomic_write_text(out_dir / "index.html", index)
    written.append(out_dir / "index.html")
    return written
