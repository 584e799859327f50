"""Plots from committed results: one distinct colour per system, a true CDF, the trade-off with both CIs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from talkwalk_bench import leaderboard as lb  # noqa: E402
from talkwalk_bench import plots  # noqa: E402
from talkwalk_bench.site import system_colours  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "results"
SYSTEMS = ("popularity", "random", "contrastive")


@pytest.fixture(scope="module")
def boards():
    files = [ROOT / task / f"{s}__ml-100k__seed0.json" for task in ("ranking", "steerability", "latency") for s in SYSTEMS]
    results, _ = lb.collect([f for f in files if f.exists()])
    return lb.build(results)


def _board(boards, task):
    return next(b for b in boards if b.task == task)


def test_latency_cdf_rises_to_one_and_each_system_has_its_own_colour(boards):
    colours = system_colours(boards)
    fig = plots.latency_cdf(_board(boards, "latency"), colours)
    lines = [ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata()) > 10]
    assert len(lines) == len(SYSTEMS)
    for ln in lines:
        y = np.asarray(ln.get_ydata())
        assert np.all(np.diff(y) >= 0) and y[-1] == pytest.approx(1.0)
    assert len({ln.get_color() for ln in lines}) == len(SYSTEMS)
    assert fig.axes[0].get_xscale() == "log"


def test_tradeoff_places_each_system_at_its_ranking_and_steering_scores(boards):
    colours = system_colours(boards)
    fig = plots.tradeoff(boards, colours)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    rank, steer = _board(boards, "ranking"), _board(boards, "steerability")

    def value(board, s, metric):
        row = next((r for r in board.rows if r.system == s), None)
        return None if row is None else (row.metrics.get(metric) or {}).get("value")

    # every system with both scores, and only those (a result of an older metric version lacks the main score)
    both = [s for s in SYSTEMS if value(rank, s, "nDCG@10") is not None and value(steer, s, steer.main_score) is not None]
    assert len(both) >= 2 and sorted(labels) == sorted(both)
    points = {tuple(np.round(ln.get_xydata()[0], 6)) for ln in ax.get_lines() if len(ln.get_xdata()) == 1}
    for s in both:
        x = next(r for r in rank.rows if r.system == s).metrics["nDCG@10"]["value"]
        y = next(r for r in steer.rows if r.system == s).metrics[steer.main_score]["value"]
        assert (round(x, 6), round(y, 6)) in points


def test_board_figures_are_inline_svg_with_text_kept_as_text(boards):
    figs = plots.board_figures(_board(boards, "steerability"), system_colours(boards))
    ids = [f["id"] for f in figs]
    assert {"forest", "kinds-plot", "gradient-plot"} <= set(ids)
    for f in figs:
        assert f["svg"].startswith("<svg") and "<text" in f["svg"]  # labels searchable and never rasterised


def test_docs_figures_are_written_as_png(tmp_path):
    written = plots.write_docs_figures(ROOT / "latency", tmp_path)
    assert [p.name for p in written] == ["main_scores_forest.png", "latency_latency.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)
