"""The episode viewer: titles from the dataset, per-item checks that agree with the task's scoring, filters in Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from talkwalk_bench.browser import CHROMIUM
from talkwalk_bench.cli import main
from talkwalk_bench.viewer import Catalog, episode_view

ROOT = Path(__file__).resolve().parents[1]
STEER = ROOT / "results" / "steerability" / "popularity__ml-100k__seed0.json"
CONV = ROOT / "results" / "conversation" / "text-only__ml-100k__seed0.json"


@pytest.fixture(scope="module")
def catalog():
    return Catalog("ml-100k")


def _records(result: Path, n: int) -> list[dict]:
    with open(result.with_name(result.stem + ".episodes.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f, strict=False)]


def test_per_item_checks_reproduce_the_episode_constraint_following(catalog):
    # constraint_following@10 of an episode is the mean share over its steered requests;
    # the viewer's per-item ticks, recounted, must give the same number
    for rec in _records(STEER, 40):
        view = episode_view(rec, catalog)
        shares = [sum(r.check for r in s.items) / len(s.items) for s in view.sections if s.kind]
        assert shares and sum(shares) / len(shares) == pytest.approx(rec["metrics"]["constraint_following@10"])
        assert view.outcome == ("pass" if all(r.check for s in view.sections for r in s.items if r.check is not None) else "fail")


def test_titles_and_predicates_in_words(catalog):
    rec = _records(STEER, 1)[0]
    view = episode_view(rec, catalog)
    steer = next(s for s in view.sections if s.title.startswith("turn 1 · steer"))
    assert steer.utterance == rec["requests"]["steer"]["utterance"]
    first = rec["lists"]["steer"][0]
    assert steer.items[0].title == catalog.values.titles[first] and steer.items[0].title
    assert steer.predicate.startswith(rec["requests"]["steer"]["predicate"]["attribute"])
    assert catalog.describe({"kind": "all", "parts": [{"kind": "has", "attribute": "genre", "value": "Horror"},
                                                      {"kind": "lacks", "attribute": "genre", "value": "Drama"}]}) \
        == "genre has Horror and genre lacks Drama"


def test_conversation_episode_marks_acceptance(catalog):
    for rec in _records(CONV, 30):
        view = episode_view(rec, catalog)
        assert len(view.sections) == len(rec["turns"])
        assert view.outcome == ("pass" if rec["accepted_turn"] else "fail")


def test_view_command_writes_a_self_contained_page(tmp_path):
    out = tmp_path / "v.html"
    assert main(["view", str(STEER), "--limit", "5", "--output", str(out)]) == 0
    page = out.read_text()
    assert page.count("<details class=\"ep\"") == 5 and "5 shown of 200" in page
    assert "http://" not in page and "https://" not in page
    assert "constraint_following@10 <span class=\"dir higher\"" in page  # direction mark on the main score
    rec = _records(STEER, 1)[0]
    assert rec["requests"]["steer"]["utterance"] in page


def test_view_says_what_is_missing(tmp_path, capsys):
    lone = tmp_path / "r.json"
    shutil.copy(STEER, lone)
    assert main(["view", str(lone), "--output", str(tmp_path / "x.html")]) != 0
    assert "episodes file" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_viewer_filters_in_chromium(tmp_path):
    pytest.importorskip("websocket")
    from talkwalk_bench.browser import Browser

    out = tmp_path / "v.html"
    assert main(["view", str(STEER), "--limit", "40", "--output", str(out)]) == 0
    kinds = [set(episode_view(r, Catalog(None)).kinds) for r in _records(STEER, 40)]
    kind = sorted(set().union(*kinds))[0]
    with Browser(tmp_path / "profile") as b:
        b.open(out)
        visible = "[...document.querySelectorAll('details.ep')].filter(e => e.style.display !== 'none').length"
        assert b.eval(visible) == 40
        def choose(select: str, value: str) -> int:
            b.eval(f"{{ const s = document.getElementById('{select}'); s.value = '{value}'; s.dispatchEvent(new Event('input')); }}")
            return b.eval(visible)

        assert choose("kind", kind) == sum(kind in k for k in kinds) < 40
        choose("kind", "")
        passing, failing = choose("outcome", "pass"), choose("outcome", "fail")
        assert passing + failing == 40 and failing > 0
        assert b.overflowing() == []


def test_view_shows_what_the_system_said_of_its_fit(tmp_path):
    data = json.loads(STEER.read_text())
    data["fit"] = {"epochs_run": 22, "train_s": 5627.0, "cached": True, "curve": [{"epoch": 1, "val": 0.1}]}
    res = tmp_path / STEER.name
    res.write_text(json.dumps(data))
    shutil.copy(STEER.with_name(STEER.stem + ".episodes.jsonl"), tmp_path)
    out = tmp_path / "v.html"
    assert main(["view", str(res), "--limit", "1", "--output", str(out)]) == 0
    page = out.read_text()
    assert "<code>epochs_run=22</code>" in page and "<code>cached=True</code>" in page and "curve=" not in page
