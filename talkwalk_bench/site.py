"""Static leaderboard site from templates: a cross-task overview, one page per task, an episode viewer per result.

Every page is one self-contained file that works offline. Task pages carry
the full table (metric columns in groups that can be hidden, an arrow and a
definition on every header, CI bars scaled per column, ±sd across seeds,
best value per column in bold, a search box), links from every row to the
result JSON, its episodes and the episode viewer page, the per-kind table
of steering tasks and the plots (matplotlib, inline SVG).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talkwalk_bench.leaderboard import (
    Board,
    Row,
    _chance_row,
    _columns,
    _greyed,
    _has_judge,
    calibration_text,
)
from talkwalk_bench.metric_info import MetricInfo, group, info
from talkwalk_bench.results import atomic_write_text, episodes_path
from talkwalk_bench.templating import render

SITE_EPISODES = 10  # episodes per viewer page on the site (the full set: `talkwalk-bench view`)
_KIND_PREFIX = "constraint_following@"


def page_name(task: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", task) + ".html"


def fmt(v: float | None) -> str:
    """A value with as many decimals as its size needs (0.1234, 12.35, 189.2)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    a = abs(v)
    return f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 10 else f"{v:.4f}"


@dataclass
class Cell:
    value: float | None
    text: str
    ci: str = ""
    sd: str = ""
    reason: str = ""
    bar: tuple[float, float, float] | None = None  # CI left %, CI width %, value %
    best: bool = False
    n: Any = None
    greyed: str | None = None  # a judge column whose judge is uncalibrated or no better than chance


@dataclass
class Column:
    name: str
    info: MetricInfo
    group: str
    doc_href: str = ""


@dataclass
class RowView:
    row: Row
    cells: list[Cell]
    links: list[tuple[str, str]] = field(default_factory=list)  # (label, href)
    view_href: str = ""


def _ordered_columns(board: Board) -> list[str]:
    """Main score first, then the other headline metrics grouped by family; per-kind values have their own table."""
    per_kind = (_KIND_PREFIX, "constraint_following_norm@")
    cols = [c for c in _columns(board, 10**6) if c == board.main_score or not (c.startswith(per_kind) and "/" in c)]
    order = ["following the request", "steering effects", "relevance", "diversity and exposure", "conversation", "speed",
             "id validity", "LLM judge", "other"]
    rest = sorted((c for c in cols if c != board.main_score), key=lambda c: (order.index(group(c)), cols.index(c)))
    return [board.main_score] + rest


def _cells(board: Board, cols: list[str]) -> dict[str, list[Cell]]:
    """Per column, one cell per row: text, CI, seed sd and a bar on that column's own scale."""
    out: dict[str, list[Cell]] = {}
    for c in cols:
        ms = [r.metrics.get(c) or {} for r in board.rows]
        lows = [m.get("ci_low") if m.get("ci_low") is not None else m.get("value") for m in ms]
        highs = [m.get("ci_high") if m.get("ci_high") is not None else m.get("value") for m in ms]
        chance = [m.get("chance") for m in ms if m.get("chance") is not None]
        known = [x for x in lows + highs + chance if x is not None and math.isfinite(x)]
        lo, hi = (min(known), max(known)) if known else (0.0, 1.0)
        lo = min(lo, 0.0) if lo >= 0 or hi <= 0 else lo
        span = (hi - lo) or 1.0
        direction = info(c).direction
        ranked_vals = [m["value"] for r, m in zip(board.rows, ms, strict=True) if not r.oracle and m.get("value") is not None]
        best = (max(ranked_vals) if direction == "higher" else min(ranked_vals)) if ranked_vals and direction != "none" else None
        cells = []
        for r, m in zip(board.rows, ms, strict=True):
            v = m.get("value")
            if v is None:
                cells.append(Cell(value=None, text="n/a", reason=m.get("reason") or "not reported"))
                continue
            a, b = m.get("ci_low"), m.get("ci_high")
            bar = None
            if a is not None and b is not None:
                pa, pb, pv = (max(0.0, min(100.0, (x - lo) / span * 100)) for x in (a, b, v))
                bar = (pa, max(0.6, pb - pa), pv)
            cells.append(Cell(value=v, text=fmt(v), ci=f"[{fmt(a)}, {fmt(b)}]" if a is not None and b is not None and a != b else "",
                              sd=(f"±{fmt(m['seed_sd'])} sd over {m.get('seeds')} seeds; CI: {m.get('ci_method') or 'n/a'}"
                                  if m.get("seed_sd") else ""),
                              bar=bar, best=best is not None and v == best and not r.oracle and not _greyed(m), n=m.get("n"),
                              greyed=_greyed(m)))
        out[c] = cells
    return out


def _rel(target: Path, base: Path) -> str:
    return os.path.relpath(Path(target).resolve(), Path(base).resolve()).replace(os.sep, "/")


def docs_href(base: Path | None) -> str:
    """The project's docs folder relative to ``base`` (where a page is written), "" when there is none."""
    from talkwalk_bench.paths import PROJECT_DIR

    docs = PROJECT_DIR / "docs"
    return _rel(docs, base) if base is not None and docs.is_dir() else ""


def viewer_name(board: Board, path: Path) -> str:
    return f"episodes/{page_name(f'{board.task}-{board.dataset}')[:-5]}/{page_name(path.stem)}"


def board_view(board: Board, base: Path | None = None, viewers: bool = False) -> dict[str, Any]:
    """Everything a template needs for one task table; links are relative to ``base`` (omitted without it)."""
    cols = _ordered_columns(board)
    cells = _cells(board, cols)
    docs = docs_href(base)
    columns = [Column(name=c, info=info(c), group=group(c), doc_href=f"{docs}/{info(c).doc}" if docs and info(c).doc else "")
               for c in cols]
    groups: list[tuple[str, int]] = []
    for col in columns:
        if groups and groups[-1][0] == col.group:
            groups[-1] = (col.group, groups[-1][1] + 1)
        else:
            groups.append((col.group, 1))
    rows = []
    for i, r in enumerate(board.rows):
        links, view = [], ""
        if base is not None:
            for path, res in r.results:
                tag = f"s{res.seed}" if len(r.results) > 1 else ""
                links.append((f"json{tag and ' ' + tag}", _rel(path, base)))
                if episodes_path(path).exists():
                    links.append((f"jsonl{tag and ' ' + tag}", _rel(episodes_path(path), base)))
            if viewers and episodes_path(r.results[0][0]).exists():
                view = viewer_name(board, r.results[0][0])
        rows.append(RowView(row=r, cells=[cells[c][i] for c in cols], links=links, view_href=view))
    chance = _chance_row(board, cols)
    judged = _has_judge(board, cols)
    calibration = [calibration_text(r.judge_calibration) or "no judge" for r in board.rows] if judged else []
    return {"board": board, "columns": columns, "marks": marks_view(board), "calibration": calibration, "groups": groups, "rows": rows, "chance": chance,
            "main": info(board.main_score), "kinds": kinds_view(board), "paired_na": any(
                r.tied_with_best is None for r in board.rows if r.rank and r.rank > 1)}


def marks_view(board: Board) -> list[tuple[str, list[str]]]:
    """(what, systems) for every stale / mixed / dirty reason and every note, rows with one reason together."""
    groups: dict[str, list[str]] = {}
    for r in board.rows:
        for what in ([f"stale ({r.stale})"] if r.stale else []) + ([f"mixed ({r.mixed})"] if r.mixed else []) + \
                ([f"dirty (made with uncommitted or untracked {', '.join(r.dirty[:3])}{' and more' if len(r.dirty) > 3 else ''})"]
                 if r.dirty else []) + ([r.note] if r.note else []):
            groups.setdefault(what, []).append(r.system)
    return list(groups.items())


def _kind_metrics(board: Board) -> tuple[str, list[str]]:
    """The cutoff shown (10 when reported) and the request kinds that have a per-kind constraint-following value."""
    names = [m for m in board.metric_names if m.startswith(_KIND_PREFIX) and "/" in m]
    cuts = sorted({m[len(_KIND_PREFIX):].split("/", 1)[0] for m in names}, key=lambda c: (c != "10", c))
    if not cuts:
        return "", []
    cut = cuts[0]
    kinds = sorted({m.split("/", 1)[1] for m in names if m.startswith(f"{_KIND_PREFIX}{cut}/")})
    return cut, kinds


def kinds_view(board: Board) -> dict[str, Any] | None:
    """Per request kind and system: raw constraint following, that system's chance level, n and the normalised value."""
    cut, kinds = _kind_metrics(board)
    if not kinds:
        return None
    table = []
    for kind in kinds:
        cells = []
        for r in board.rows:
            m = r.metrics.get(f"{_KIND_PREFIX}{cut}/{kind}", {})
            norm = r.metrics.get(f"constraint_following_norm@{cut}/{kind}", {})
            cells.append(None if m.get("value") is None else {
                "value": m["value"], "chance": m.get("chance"), "n": m.get("n"), "norm": norm.get("value"),
                "above": m.get("chance") is not None and m.get("ci_low") is not None and m["ci_low"] > m["chance"]})
        table.append((kind, cells))
    return {"cut": cut, "kinds": kinds, "table": table}


def _plots(board: Board, colours: dict[str, str]) -> list[dict[str, str]]:
    try:
        from talkwalk_bench import plots
    except ImportError:  # matplotlib is an optional extra
        return []
    return plots.board_figures(board, colours)


def build_site(boards: list[Board], out_dir: Path, title: str = "talkwalk-bench leaderboard",
               episodes: int = SITE_EPISODES) -> list[Path]:
    """Write index.html, one page per task and (``episodes`` > 0) an episode viewer page per result."""
    from talkwalk_bench.viewer import build_view

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    colours = system_colours(boards)
    docs = docs_href(out_dir)
    tasks = []
    for b in boards:
        name = page_name(f"{b.task}-{b.dataset}")
        view = board_view(b, base=out_dir, viewers=episodes > 0)
        page = render("task.html.j2", title=f"{b.task} ({b.dataset})", site_title=title, t=view, plots=_plots(b, colours),
                      docs=docs, colours=colours, fmt=fmt)
        atomic_write_text(out_dir / name, page)
        written.append(out_dir / name)
        tasks.append((name, b, view))
        if episodes > 0:
            for r in b.rows:
                path = r.results[0][0]
                if not episodes_path(path).exists():
                    continue
                target = out_dir / viewer_name(b, path)
                back = _rel(out_dir / name, target.parent)
                links = {"back": back, "result": _rel(path, target.parent), "episodes": _rel(episodes_path(path), target.parent)}
                if docs:
                    from talkwalk_bench.viewer import doc_links

                    links.update(doc_links(path, lambda p, _t=target: _rel(p, _t.parent)))
                atomic_write_text(target, build_view(path, limit=episodes, links=links))
                written.append(target)
    systems = sorted({r.system for b in boards for r in b.rows}, key=lambda s: s.lower())
    overview = []
    for s in systems:
        cells = []
        for name, b, _ in tasks:
            r = next((r for r in b.rows if r.system == s), None)
            m = (r.metrics.get(b.main_score) or {}) if r else {}
            cells.append(None if r is None else {"text": fmt(m.get("value")), "rank": "oracle" if r.oracle else r.rank,
                                                  "marks": r.marks,
                                                  "best": r.rank == 1, "href": name, "ci": m.get("ci_low") is not None and
                                                  f"[{fmt(m.get('ci_low'))}, {fmt(m.get('ci_high'))}]" or ""})
        overview.append((s, cells))
    try:
        from talkwalk_bench import plots

        figures = plots.overview_figures(boards, colours)
    except ImportError:
        figures = []
    index = render("index.html.j2", title=title, tasks=tasks, overview=overview, docs=docs, plots=figures,
                   main_info={b.task: info(b.main_score) for _, b, _ in tasks}, colours=colours)
    atomic_write_text(out_dir / "index.html", index)
    written.append(out_dir / "index.html")
    return written


def system_colours(boards: list[Board]) -> dict[str, str]:
    """One colour per system, the same on every page and plot."""
    from talkwalk_bench.palette import colours_for

    return colours_for(sorted({r.system for b in boards for r in b.rows}, key=lambda s: s.lower()))


def render_boards(boards: list[Board], title: str) -> str:
    """All tables on one page (``leaderboard --format html --output FILE.html``), without per-result links."""
    return render("boards.html.j2", title=title, tables=[board_view(b) for b in boards], fmt=fmt)
