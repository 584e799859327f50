"""The static leaderboard site, opened in headless Chromium: the table renders and sorts on click."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from talkwalk_bench.browser import CHROMIUM
from talkwalk_bench.cli import main


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp("site")
    res = d / "results"
    for system in ("popularity", "random"):
        assert main(["run", "--system", system, "--task", "ranking", "--output", str(res / f"{system}.json"), "--no-progress"]) == 0
    for system in ("popularity", "random"):
        assert main(["run", "--system", system, "--task", "latency", "--output", str(res / f"lat-{system}.json"), "--no-progress"]) == 0
    out = d / "site"
    assert main(["leaderboard", str(res), "--format", "html", "--output", str(out)]) == 0
    return out


def test_site_pages_and_plots(site):
    assert (site / "index.html").exists()
    ranking = (site / "ranking-ml-100k.html").read_text()
    assert '<table class="lb">' in ranking and "Versions:" in ranking
    assert 'id="latency-plot"' in (site / "latency-ml-100k.html").read_text()
    assert not re.search(r"""(src|href|url\()\s*=?\s*["']?https?://""", ranking)  # self-contained: nothing fetched
    assert "<img" not in ranking  # plots are inline SVG, not files beside the page
    index = (site / "index.html").read_text()
    assert 'class="lb overview"' in index and index.count("<tr data-system=") == 2  # one overview row per system
    assert 'href="ranking-ml-100k.html"' in index and 'href="latency-ml-100k.html"' in index
    viewer = site / "episodes" / "ranking-ml-100k" / "popularity.html"
    assert viewer.exists() and 'href="episodes/ranking-ml-100k/popularity.html"' in ranking
    assert "nDCG@10 <span class=\"dir higher\">↑</span>" in ranking and "latency_p50_ms</small> <span class=\"dir lower\">↓</span>" in index


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_table_renders_sorts_filters_and_hides_groups_in_chromium(site, tmp_path):
    pytest.importorskip("websocket")
    from talkwalk_bench.browser import Browser

    with Browser(tmp_path / "profile") as b:
        b.open(site / "ranking-ml-100k.html")
        systems = "[...document.querySelectorAll('table.lb tbody tr:not(.chance)')].filter(r => r.style.display !== 'none').map(r => r.dataset.system)"
        heads = "document.querySelectorAll('table.lb thead tr:last-child th')"
        assert b.eval(systems) == ["popularity", "random"]
        assert b.eval("document.querySelectorAll('table.lb tbody tr td .bar').length") > 0
        # click the 'system' header: rows sort by name; click again: reversed
        b.eval(f"{heads}[1].click()")
        first = b.eval(systems)
        b.eval(f"{heads}[1].click()")
        assert sorted(first) == ["popularity", "random"] and b.eval(systems) == list(reversed(first))
        # the main score column (index 3): descending puts popularity first
        b.eval(f"{{ const th = {heads}[3]; th.dataset.dir = 'asc'; th.click(); }}")
        assert b.eval(systems)[0] == "popularity"
        # the search box keeps matching rows only
        b.eval("{ const q = document.querySelector('.rowsearch'); q.value = 'rand'; q.dispatchEvent(new Event('input')); }")
        assert b.eval(systems) == ["random"]
        # unticking a column group hides its header and cells
        shown = "[...document.querySelectorAll('table.lb thead tr:last-child th')].filter(th => th.style.display !== 'none').length"
        before = b.eval(shown)
        b.eval("{ const cb = document.querySelector('.gtoggle'); cb.checked = false; cb.dispatchEvent(new Event('change')); }")
        assert b.eval(shown) < before
        # every row links to its episodes page, and the link resolves
        href = b.eval("document.querySelector('td.sys a').href")
        assert href.startswith("file://") and Path(href[len("file://"):]).exists()
        b.open(site / "index.html")
        assert b.overflowing() == []


def test_steering_page_has_per_kind_chance_table_and_plot(tmp_path):
    root = Path(__file__).resolve().parents[1]
    spec = tmp_path / "steer.yaml"
    spec.write_text(f"include: {root / 'tasks' / 'steerability.yaml'}\nepisodes: {{max_users: 20}}\nbootstrap: {{n_resamples: 100}}\n")
    res = tmp_path / "results"
    for system in ("popularity", "oracle-filter"):
        assert main(["run", "--system", system, "--task", str(spec), "--output", str(res / f"{system}.json"), "--no-progress"]) == 0
    out = tmp_path / "site"
    assert main(["leaderboard", str(res), "--format", "html", "--output", str(out)]) == 0
    page = (out / "steerability-ml-100k.html").read_text()
    assert '<table class="lb kinds">' in page and 'id="kinds-plot"' in page
    kinds = json.loads((res / "popularity.json").read_text())["extras"]["steer_kinds"]
    for kind in kinds:  # every steered kind has a row, each cell with its own chance level
        assert f'<td class="s">{kind}</td>' in page
    assert page.count("(chance ") >= 2 * len(kinds)
    md = tmp_path / "lb.md"
    assert main(["leaderboard", str(res), "--format", "md", "--output", str(md)]) == 0
    text = md.read_text()
    assert "Per request kind" in text and all(f"| {kind} | " in text for kind in kinds)


def test_a_main_score_without_per_episode_values_gets_no_paired_marks(tmp_path):
    root = Path(__file__).resolve().parents[1]
    spec = tmp_path / "steer.yaml"
    spec.write_text(f"include: {root / 'tasks' / 'steerability.yaml'}\nepisodes: {{max_users: 12}}\nbootstrap: {{n_resamples: 100}}\n")
    res = tmp_path / "results"
    for system in ("popularity", "random"):
        assert main(["run", "--system", system, "--task", str(spec), "--output", str(res / f"{system}.json"), "--no-progress"]) == 0
    md = tmp_path / "lb.md"
    assert main(["leaderboard", str(res), "--format", "md", "--output", str(md)]) == 0
    text = md.read_text()
    assert "`≈` not computed: constraint_following_norm@10" in text and " ≈ |" not in text


def test_bars_are_scaled_per_column_so_large_values_get_bars_too():
    from talkwalk_bench.leaderboard import Board, Row
    from talkwalk_bench.site import _cells

    def row(name, v, lo, hi):
        return Row(system=name, oracle=False, seeds=[0], metrics={"latency_p50_ms": {"value": v, "ci_low": lo, "ci_high": hi, "n": 9}})

    board = Board(task="latency", main_score="latency_p50_ms", metric_names=["latency_p50_ms"], dataset="d", protocol={}, versions={},
                  rows=[row("slow", 189.0, 188.0, 190.0), row("fast", 0.5, 0.4, 0.6)])
    slow, fast = _cells(board, ["latency_p50_ms"])["latency_p50_ms"]
    assert slow.bar is not None and fast.bar is not None
    assert slow.bar[2] == pytest.approx(189 / 190 * 100) and fast.bar[2] < 1
    assert fast.best and not slow.best  # lower is better for latency
