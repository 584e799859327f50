"""Plots of leaderboards with matplotlib: inline SVG for the site, PNG for the docs.

- forest: every system's main score with its 95 % CI (and chance level);
- steerability against ranking: the trade-off the benchmark exists to show;
- constraint following per request kind beside each system's own chance level;
- controllable diversity gradient; latency CDF; conversation success by turn.

Every system has one colour and one marker everywhere (``palette``); legends
sit outside the axes and figures are saved with a tight bounding box, so no
label is clipped. ``python -m talkwalk_bench.plots RESULTS_DIR OUT_DIR`` writes
the PNGs the docs show, from committed results (nothing is rerun).
"""

from __future__ import annotations

import argparse
import io
import math
import re
from pathlib import Path

import numpy as np

from talkwalk_bench.leaderboard import Board
from talkwalk_bench.metric_info import info
from talkwalk_bench.palette import markers_for
from talkwalk_bench.results import episodes_path, read_episodes

GRADIENT = [("ild/stay_close", "stay close"), ("ild/neutral", "neutral"), ("ild/more_variety", "more variety")]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none",
                         "svg.hashsalt": "talkwalk-bench"})
    return plt


def to_svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    _plt().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight", metadata={"Software": None} if path.suffix == ".png" else {"Date": None})
    _plt().close(fig)
    return path


def _style(colours: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    return colours, markers_for(list(colours))


def _axis_label(metric: str) -> str:
    mi = info(metric)
    return f"{metric} ({mi.arrow} {mi.direction_text})"


def forest(board: Board, colours: dict[str, str]):
    """Main score of every system with its 95 % CI, best at the top; oracle rows hollow; chance as a dashed line."""
    plt = _plt()
    col, mark = _style(colours)
    rows = [r for r in board.rows if (r.metrics.get(board.main_score) or {}).get("value") is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 0.36 * len(rows) + 1.0))
    for y, r in enumerate(reversed(rows)):
        m = r.metrics[board.main_score]
        lo, hi = m.get("ci_low"), m.get("ci_high")
        c = col.get(r.system, "#444")
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [y, y], color=c, lw=2)
        ax.plot([m["value"]], [y], marker=mark.get(r.system, "o"), color=c, ms=7, mfc="white" if r.oracle else c, ls="none")
        if m.get("seed_sd"):
            ax.plot([m["value"] - m["seed_sd"], m["value"] + m["seed_sd"]], [y + 0.22, y + 0.22], color=c, lw=1, alpha=0.7)
    chance = next((r.metrics[board.main_score].get("chance") for r in rows if r.metrics[board.main_score].get("chance") is not None), None)
    if chance is not None:
        ax.axvline(chance, color="#777", ls="--", lw=1)
        ax.text(chance, len(rows) - 0.4, " chance", color="#555", va="bottom", fontsize=8)
    ax.set_yticks(range(len(rows)), [r.system + (" (oracle)" if r.oracle else "") for r in reversed(rows)])
    ax.set_xlabel(_axis_label(board.main_score))
    ax.set_ylim(-0.7, len(rows) - 0.2)
    ax.grid(axis="x", alpha=0.3)
    return fig


def kinds_vs_chance(board: Board, colours: dict[str, str]):
    """One panel per request kind: each system's constraint following (CI) and, as a grey bar, its own chance level."""
    from talkwalk_bench.site import _kind_metrics

    cut, kinds = _kind_metrics(board)
    if not kinds:
        return None
    plt = _plt()
    col, mark = _style(colours)
    rows = board.rows
    ncols = min(4, len(kinds))
    nrows = math.ceil(len(kinds) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols + 1.4, 0.22 * len(rows) * nrows + 0.9 * nrows), sharey=True,
                             squeeze=False)
    for ax, kind in zip(axes.flat, kinds, strict=False):
        for y, r in enumerate(reversed(rows)):
            m = r.metrics.get(f"constraint_following@{cut}/{kind}", {})
            if m.get("value") is None:
                continue
            c = col.get(r.system, "#444")
            if m.get("chance") is not None:
                ax.plot([m["chance"]], [y], marker="|", color="#888", ms=10, mew=2)
            if m.get("ci_low") is not None:
                ax.plot([m["ci_low"], m["ci_high"]], [y, y], color=c, lw=1.5)
            ax.plot([m["value"]], [y], marker=mark.get(r.system, "o"), color=c, ms=5, mfc="white" if r.oracle else c)
        ax.set_title(kind, fontsize=9)
        ax.set_xlim(-0.02, 1.02)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes.flat[len(kinds):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_yticks(range(len(rows)), [r.system for r in reversed(rows)])
    fig.supxlabel(f"constraint_following@{cut}: share of the top {cut} satisfying the request (grey bar: that system's chance level)",
                  fontsize=9)
    fig.tight_layout()
    return fig


def gradient(board: Board, colours: dict[str, str]):
    """Intra-list diversity after 'stay close', no request and 'more variety', one line per system."""
    rows = [r for r in board.rows if all((r.metrics.get(k) or {}).get("value") is not None for k, _ in GRADIENT)]
    if not rows:
        return None
    plt = _plt()
    col, mark = _style(colours)
    fig, ax = plt.subplots(figsize=(6.8, 4.0))
    for r in rows:
        c = col.get(r.system, "#444")
        vals = [r.metrics[k]["value"] for k, _ in GRADIENT]
        lo = [r.metrics[k]["value"] - (r.metrics[k].get("ci_low") or r.metrics[k]["value"]) for k, _ in GRADIENT]
        hi = [(r.metrics[k].get("ci_high") or r.metrics[k]["value"]) - r.metrics[k]["value"] for k, _ in GRADIENT]
        ax.errorbar(range(3), vals, yerr=[lo, hi], color=c, marker=mark.get(r.system, "o"), capsize=2, lw=1.5, label=r.system)
    ax.set_xticks(range(3), [label for _, label in GRADIENT])
    ax.set_ylabel("intra-list diversity (ILD@K)")
    ax.set_xlim(-0.3, 2.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _latencies(board: Board) -> dict[str, np.ndarray]:
    out = {}
    for r in board.rows:
        path = r.results[0][0]
        secs = [rec["seconds"] for rec in read_episodes(episodes_path(path))
                if rec.get("status") == "ok" and rec.get("kind", "single") == "single" and isinstance(rec.get("seconds"), (int, float))]
        if secs:
            out[r.system] = np.sort(np.asarray(secs) * 1000.0)
    return out


def latency_cdf(board: Board, colours: dict[str, str]):
    """Empirical CDF of single-request latency (ms, log scale), one line per system; p50/p95/p99 as guides."""
    lat = _latencies(board)
    if not lat:
        return None
    plt = _plt()
    col, mark = _style(colours)
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    for system, v in sorted(lat.items(), key=lambda kv: np.median(kv[1])):
        y = np.arange(1, len(v) + 1) / len(v)
        ax.step(v, y, where="post", color=col.get(system, "#444"), lw=1.6,
                label=f"{system} (p50 {np.percentile(v, 50):.3g} ms, p99 {np.percentile(v, 99):.3g} ms)")
        ax.plot([np.percentile(v, 50)], [0.5], marker=mark.get(system, "o"), color=col.get(system, "#444"), ms=5)
    for q in (0.5, 0.95, 0.99):
        ax.axhline(q, color="#bbb", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("latency per single request, ms (log scale; lower is better)")
    ax.set_ylabel("share of requests at most this slow")
    ax.set_ylim(0, 1.01)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(alpha=0.3)
    return fig


def success_by_turn(board: Board, colours: dict[str, str]):
    """Conversation: share of users who accepted an item by each turn (from the results' ``extras.success_by_turn``)."""
    curves = {}
    for r in board.rows:
        sbt = (r.results[0][1].extras or {}).get("success_by_turn") or {}
        c = sbt.get("critiques") if isinstance(sbt, dict) else sbt
        if c:
            curves[r.system] = np.asarray(c, dtype=float)
    if not curves:
        return None
    plt = _plt()
    col, mark = _style(colours)
    fig, ax = plt.subplots(figsize=(6.8, 4.0))
    for system, c in sorted(curves.items(), key=lambda kv: -kv[1][-1]):
        ax.plot(range(1, len(c) + 1), c, color=col.get(system, "#444"), marker=mark.get(system, "o"), ms=4, label=system)
    ax.set_xlabel("turn")
    ax.set_ylabel("share of users satisfied by this turn")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(alpha=0.3)
    return fig


def _pick(boards: list[Board], family_words: tuple[str, ...]) -> Board | None:
    return next((b for b in boards if any(b.task.startswith(w) for w in family_words)), None)


def tradeoff(boards: list[Board], colours: dict[str, str], ranking_metric: str = "nDCG@10"):
    """Steerability main score against ranking quality, with both CIs: systems that do both sit top right."""
    steer, rank = _pick(boards, ("steerability",)), _pick(boards, ("ranking",))
    if steer is None or rank is None:
        return None
    plt = _plt()
    col, mark = _style(colours)
    pts = []
    for r in steer.rows:
        rr = next((x for x in rank.rows if x.system == r.system), None)
        ys, xs = r.metrics.get(steer.main_score) or {}, (rr.metrics.get(ranking_metric) or {}) if rr else {}
        if ys.get("value") is not None and xs.get("value") is not None:
            pts.append((r.system, xs, ys, r.oracle))
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    for system, x, y, oracle in pts:
        c = col.get(system, "#444")
        xerr = [[x["value"] - x["ci_low"]], [x["ci_high"] - x["value"]]] if x.get("ci_low") is not None else None
        yerr = [[y["value"] - y["ci_low"]], [y["ci_high"] - y["value"]]] if y.get("ci_low") is not None else None
        ax.errorbar([x["value"]], [y["value"]], xerr=xerr, yerr=yerr, color=c, marker=mark.get(system, "o"), ms=7,
                    mfc="white" if oracle else c, capsize=2, lw=1.2, ls="none", label=system + (" (oracle)" if oracle else ""))
    chance = next((p[2].get("chance") for p in pts if p[2].get("chance") is not None), None)
    if chance is not None:
        ax.axhline(chance, color="#777", ls="--", lw=1)
        ax.annotate("chance", (ax.get_xlim()[1], chance), ha="right", va="bottom", fontsize=8, color="#555")
    ax.set_xlabel(f"ranking: {_axis_label(ranking_metric)}")
    ax.set_ylabel(f"steering: {steer.main_score}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(alpha=0.3)
    return fig


def overview_forest(boards: list[Board], colours: dict[str, str]):
    """Main score per task (one panel each) with CIs: the cross-task overview at a glance."""
    boards = [b for b in boards if any((r.metrics.get(b.main_score) or {}).get("value") is not None for r in b.rows)]
    if not boards:
        return None
    plt = _plt()
    col, mark = _style(colours)
    systems = list(colours)
    ncols = min(3, len(boards))
    nrows = math.ceil(len(boards) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.0 * ncols + 1.5, 0.24 * len(systems) * nrows + 1.0 * nrows), squeeze=False,
                             sharey=True)
    for ax, b in zip(axes.flat, boards, strict=False):
        for r in b.rows:
            m = r.metrics.get(b.main_score) or {}
            if m.get("value") is None:
                continue
            y = len(systems) - 1 - systems.index(r.system)
            c = col.get(r.system, "#444")
            if m.get("ci_low") is not None:
                ax.plot([m["ci_low"], m["ci_high"]], [y, y], color=c, lw=1.5)
            ax.plot([m["value"]], [y], marker=mark.get(r.system, "o"), color=c, mfc="white" if r.oracle else c, ms=5)
        vals = [m["value"] for r in b.rows if (m := r.metrics.get(b.main_score) or {}).get("value") is not None]
        if vals and min(vals) > 0 and max(vals) / min(vals) > 50:
            ax.set_xscale("log")  # latency: 0.005 ms next to 189 ms
        ax.set_title(f"{b.task}: {b.main_score} {info(b.main_score).arrow}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes.flat[len(boards):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_yticks(range(len(systems)), list(reversed(systems)))
    fig.tight_layout()
    return fig


BOARD_FIGURES = [
    ("forest", "Main score with 95 % CI", forest,
     "Each system's main score (dot) and 95 % bootstrap CI (line); a thin line above is ±1 sd across seeds; hollow: oracle (a ceiling)."),
    ("kinds-plot", "Constraint following per request kind against chance", kinds_vs_chance,
     "One panel per request kind: the share of the top K that satisfies the request, with its CI, beside that system's own "
     "chance level (grey bar: a list drawn without regard to the request). Right of the bar is better than chance."),
    ("gradient-plot", "Controllable diversity gradient", gradient,
     "Intra-list diversity (mean, 95 % CI) when the user asks to stay close, says nothing, or asks for more variety; "
     "a steerable system rises left to right."),
    ("latency-plot", "Latency CDF", latency_cdf,
     "Share of single requests (after warm-up) served within a given time; further left is faster; dotted guides at 50, 95, 99 %."),
    ("success-plot", "Conversation success by turn", success_by_turn,
     "Share of simulated users who accepted an item by each turn, with the critiques; higher and earlier is better."),
]


def board_figures(board: Board, colours: dict[str, str]) -> list[dict[str, str]]:
    out = []
    for fid, title, fn, caption in BOARD_FIGURES:
        fig = fn(board, colours)
        if fig is not None:
            out.append({"id": fid, "title": title, "caption": caption, "svg": to_svg(fig)})
    return out


def overview_figures(boards: list[Board], colours: dict[str, str]) -> list[dict[str, str]]:
    out = []
    fig = tradeoff(boards, colours)
    if fig is not None:
        out.append({"id": "tradeoff-plot", "title": "Steerability against ranking", "svg": to_svg(fig),
                    "caption": "Each system's steering main score against its ranking nDCG@10, both with 95 % CIs. "
                               "The benchmark's question: which systems follow plain-English requests without losing ranking quality."})
    fig = overview_forest(boards, colours)
    if fig is not None:
        out.append({"id": "overview-forest", "title": "Main score per task", "svg": to_svg(fig),
                    "caption": "Every task's main score per system with its 95 % CI; hollow markers are oracles."})
    return out


def write_docs_figures(results: Path, out_dir: Path) -> list[Path]:
    """PNG figures for the docs from a folder of results (no run is repeated)."""
    from talkwalk_bench import leaderboard as lb
    from talkwalk_bench.site import system_colours

    found, _ = lb.collect([Path(results)])
    boards = lb.build(found)
    colours = system_colours(boards)
    written = []
    fig = tradeoff(boards, colours)
    if fig is not None:
        written.append(save(fig, out_dir / "steerability_vs_ranking.png"))
    fig = overview_forest(boards, colours)
    if fig is not None:
        written.append(save(fig, out_dir / "main_scores_forest.png"))
    for b in boards:
        for fid, _, fn, _ in BOARD_FIGURES:
            if fid == "forest" or (fid == "success-plot"):
                continue  # the overview forest covers every task; conversation_success_by_turn.py draws the richer curve
            fig = fn(b, colours)
            if fig is not None:
                name = re.sub(r"[^a-z0-9]+", "_", f"{b.task}_{fid.replace('-plot', '')}".lower())
                written.append(save(fig, out_dir / f"{name}.png"))
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m talkwalk_bench.plots", description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="?", default="results", help="folder of result files (default results)")
    p.add_argument("out", nargs="?", default="docs/img", help="folder for the PNGs (default docs/img)")
    a = p.parse_args(argv)
    for path in write_docs_figures(Path(a.results), Path(a.out)):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

