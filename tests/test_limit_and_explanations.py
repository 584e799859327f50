"""`run --limit N` (a quick try that leaderboards refuse), labelled phases, and what a
system says about its lists kept in the episode file for `talkwalk-bench view`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from talkwalk_bench import leaderboard as lb
from talkwalk_bench.errors import BenchError, ResultFileError
from talkwalk_bench.registry import SYSTEMS, register_system
from talkwalk_bench.results import episodes_path, read_episodes, read_result
from talkwalk_bench.tasks.runner import RunConfig, run
from talkwalk_bench.types import Ranking, SystemMeta


def test_limit_plays_the_first_n_episodes_and_is_recorded(tmp_path):
    full = run(RunConfig(system="popularity", task="ranking", output=tmp_path / "full.json", progress=False))
    res = run(RunConfig(system="popularity", task="ranking", output=tmp_path / "lim.json", progress=False, limit=7))
    assert res.status == "success" and res.limit == 7 and res.n_episodes == 7
    eps = read_episodes(episodes_path(tmp_path / "lim.json"))
    first = [e["episode"] for e in read_episodes(episodes_path(tmp_path / "full.json"))][:7]
    assert [e["episode"] for e in eps] == first
    assert res.metrics["nDCG@10"].n == 7 and full.limit is None and read_result(tmp_path / "lim.json").limit == 7


def test_leaderboard_refuses_a_limited_result_unless_asked(tmp_path):
    run(RunConfig(system="popularity", task="ranking", output=tmp_path / "res" / "p.json", progress=False, limit=5))
    with pytest.raises(ResultFileError, match=r"p\.json: a --limit 5 run .*--allow-limited"):
        lb.collect([tmp_path / "res"])
    results, _ = lb.collect([tmp_path / "res"], allow_limited=True)
    (board,) = lb.build(results)
    assert [r.system for r in board.rows] == ["popularity (limited: 5 episodes)"]


def test_limit_is_checked_and_resume_keeps_it(tmp_path):
    with pytest.raises(BenchError, match="--limit 0"):
        run(RunConfig(system="popularity", task="ranking", output=tmp_path / "a.json", progress=False, limit=0))
    run(RunConfig(system="random", task="ranking", output=tmp_path / "b.json", progress=False, limit=4))
    with pytest.raises(BenchError, match="cannot resume: the --limit differ"):
        run(RunConfig(system="random", task="ranking", output=tmp_path / "b.json", progress=False, resume=True))


def test_cli_limit_and_phases(tmp_path):
    out = tmp_path / "c.json"
    cmd = [sys.executable, "-m", "talkwalk_bench.cli", "run", "--system", "popularity", "--task", "ranking",
           "--limit", "5", "--output", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    for phase in ("loaded", "fitting", "playing: 5 episodes", "scoring"):
        assert phase in p.stderr
    assert read_result(out).limit == 5
    quiet = subprocess.run(cmd[:-1] + [str(tmp_path / "d.json"), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and "] playing" not in quiet.stderr and "ep/s" not in quiet.stderr
    bad = subprocess.run(cmd[:-4] + ["--limit=0", "--output", str(tmp_path / "e.json")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--limit 0" in bad.stderr
    lbp = subprocess.run([sys.executable, "-m", "talkwalk_bench.cli", "leaderboard", str(out)], capture_output=True, text=True, timeout=300)
    assert lbp.returncode != 0 and "--allow-limited" in lbp.stderr


class _Talker:
    """Popularity that says why: an explanation and the constraint it read, on every list."""

    def __init__(self):
        self.meta = SystemMeta(name="talker", capabilities=("explanations",))

    def fit(self, data, *, seed):
        self.items = list(data.item_ids)

    def recommend(self, requests, *, k):
        out = []
        for r in requests:
            said = r.utterance or "nothing"
            out.append(Ranking(tuple(i for i in self.items if i not in r.exclude)[:k], explanation=f"because you said {said}",
                               trace={"constraint": {"attribute": "genre", "value": "Drama"}}))
        return out


@pytest.fixture
def talker():
    if "test-talker" not in SYSTEMS:
        register_system("test-talker")(lambda: _Talker())
    return "test-talker"


def test_steering_and_conversation_episodes_keep_what_the_system_said(tmp_path, talker):
    run(RunConfig(system=talker, task="steerability", output=tmp_path / "s.json", progress=False, limit=3))
    for rec in read_episodes(episodes_path(tmp_path / "s.json")):
        why = rec["explanations"]
        assert {"neutral", "steer", "alt", "go_back"} <= set(why)
        steer = rec["requests"]["steer"]["utterance"]
        assert why["steer"].startswith("understood: {") and f"because you said {steer}" in why["steer"]
    run(RunConfig(system=talker, task="conversation", output=tmp_path / "c.json", progress=False, limit=2))
    for rec in read_episodes(episodes_path(tmp_path / "c.json")):
        turns = [t for walk in (rec.get("turns", []),) for t in walk]
        assert turns and all("because you said" in t["explanation"] for t in turns)


def test_a_silent_system_stores_no_explanations(tmp_path):
    run(RunConfig(system="popularity", task="steerability", output=tmp_path / "p.json", progress=False, limit=2))
    assert all("explanations" not in r for r in read_episodes(episodes_path(tmp_path / "p.json")))


def test_unknown_item_values_are_reported_in_the_result_and_the_run_output(tmp_path):
    res = run(RunConfig(system="popularity", task="ranking", output=tmp_path / "u.json", progress=False, limit=2))
    rep = read_result(tmp_path / "u.json").dataset.unknown_values
    assert rep == res.dataset.unknown_values and set(rep) == {"genre", "year"}  # title is text: nothing to steer on
    assert rep["year"]["count"] == 2 and {e["raw"] for e in rep["year"]["examples"]} == {"unkonwn", "V"}
    assert rep["genre"]["count"] == 2 and "satisfies no steering predicate" in rep["genre"]["treated_as"]
    p = subprocess.run([sys.executable, "-m", "talkwalk_bench.cli", "run", "--system", "popularity", "--task", "ranking",
                        "--limit", "2", "--no-progress", "--output", str(tmp_path / "v.json")], capture_output=True, text=True, timeout=300)
    assert "data: 2 items with no known year (e.g. 267 'unkonwn', 1412 'V')" in p.stdout
