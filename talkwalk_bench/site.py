"""Static leaderboard site: an index and one page per task, self-contained (no network).

Each page has the sortable table (CIs drawn as bars, oracle rows apart), the
protocol and package versions, and where the data exist inline SVG plots:
for steering tasks a per-kind table (raw constraint following beside each
kind's own chance level, and the chance-normalised value) with each kind
plotted against its chance, and the controllable-diversity gradient
(intra-list diversity under "stay close", neutral, "more variety"); latency
distributions.
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


_KIND_PREFIX = "constraint_following@"


def _kind_metrics(board: Board) -> tuple[str, list[str]]:
    """The cutoff shown (10 when reported) and the request kinds that have a per-kind constraint-following value."""
    names = [m for m in board.metric_names if m.startswith(_KIND_PREFIX) and "/" in m]
    cuts = sorted({m[len(_KIND_PREFIX):].split("/", 1)[0] for m in names}, key=lambda c: (c != "10", c))
    if not cuts:
        return "", []
    cut = cuts[0]
    kinds = sorted({m.split("/", 1)[1] for m in names if m.startswith(f"{_KIND_PREFIX}{cut}/")})
    return cut, kinds


def _html_kinds(board: Board) -> str:
    """Per request kind: each system's raw constraint following beside its own chance level, and the normalised value."""
    cut, kinds = _kind_metrics(board)
    if not kinds:
        return ""
    rows = board.rows
    head = "".join(f"<th>{html.escape(r.system)}</th>" for r in rows)
    body = []
    for kind in kinds:
        cells = []
        for r in rows:
            m = r.metrics.get(f"{_KIND_PREFIX}{cut}/{kind}", {})
            norm = r.metrics.get(f"constraint_following_norm@{cut}/{kind}", {})
            if m.get("value") is None:
                cells.append("<td>n/a</td>")
                continue
            ch = m.get("chance")
            nv = norm.get("value")
            cells.append(f"<td data-v='{m['value']}'>{m['value']:.3f} <small>(chance {'' if ch is None else f'{ch:.3f}'}; "
                         f"n {m.get('n', '')})</small>{'' if nv is None else f'<br><b>{nv:+.3f}</b>'}</td>")
        body.append(f"<tr><td class='s'>{html.escape(kind)}</td>{''.join(cells)}</tr>")
    return (f"<h3>Constraint following per request kind (@{cut})</h3><p><small>Each cell: the raw share of the top-{cut} that "
            "satisfies the request, the chance level of that kind for that system's episodes (the share of the unseen "
            "catalog satisfying it; anchored kinds differ per system), n episodes, and in bold the chance-normalised value "
            "(0 = chance, 1 = every item satisfies, negative = below chance, floored at −1; docs/steering.md).</small></p>"
            f"<table class='lb kinds'><thead><tr><th>kind</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _svg_kinds(board: Board) -> str:
    """Each kind's constraint following against its chance level, one colour per system; the diagonal is chance."""
    cut, kinds = _kind_metrics(board)
    pts = []
    for i, r in enumerate(board.rows):
        for kind in kinds:
            m = r.metrics.get(f"{_KIND_PREFIX}{cut}/{kind}", {})
            if m.get("value") is not None and m.get("chance") is not None:
                pts.append((i, r.system, kind, float(m["chance"]), float(m["value"])))
    if not pts:
        return ""
    w = h = 420
    pad = 46

    def x(v: float) -> float:
        return pad + v * (w - 2 * pad)

    def y(v: float) -> float:
        return h - pad - v * (h - 2 * pad)

    parts = [f"<svg class='plot' id='kinds-plot' width='{w + 150}' height='{h}' xmlns='http://www.w3.org/2000/svg' role='img'>",
             "<title>Constraint following per request kind against its chance level</title>",
             f"<rect x='{pad}' y='{pad}' width='{w - 2 * pad}' height='{h - 2 * pad}' fill='none' stroke='#999'/>",
             f"<line x1='{x(0)}' y1='{y(0)}' x2='{x(1)}' y2='{y(1)}' stroke='#bbb' stroke-dasharray='4 3'/>",
             f"<text x='{x(0.62):.0f}' y='{y(0.55):.0f}' font-size='10' fill='#888'>chance</text>",
             f"<text x='{w / 2:.0f}' y='{h - 8}' font-size='11' text-anchor='middle'>chance level of the kind</text>",
             f"<text x='12' y='{h / 2:.0f}' font-size='11' text-anchor='middle' transform='rotate(-90 12 {h / 2:.0f})'>"
             f"constraint following@{cut}</text>"]
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f"<text x='{x(t):.0f}' y='{h - pad + 14}' font-size='10' text-anchor='middle'>{t:g}</text>")
        parts.append(f"<text x='{pad - 4}' y='{y(t) + 4:.0f}' font-size='10' text-anchor='end'>{t:g}</text>")
    for i, system, kind, c, v in pts:
        col = PALETTE[i % len(PALETTE)]
        parts.append(f"<circle cx='{x(c):.1f}' cy='{y(v):.1f}' r='4' fill='{col}' opacity='.8'>"
                     f"<title>{html.escape(system)} · {html.escape(kind)}: {v:.3f} (chance {c:.3f})</title></circle>")
    for i, r in enumerate(board.rows):
        parts.append(f"<text x='{w + 4}' y='{pad + 14 * i:.0f}' font-size='10' fill='{PALETTE[i % len(PALETTE)]}'>"
                     f"{html.escape(r.system)}</text>")
    parts.append("</svg>")
    return ("<h3>Per kind against chance</h3><p><small>One point per system and request kind (hover for the kind): "
            "above the diagonal the system follows the kind better than a list drawn without regard to the request.</small></p>"
            + "".join(parts))


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
        plots = _html_kinds(b) + _svg_kinds(b) + _svg_gradient(b) + _svg_latency(b)
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
