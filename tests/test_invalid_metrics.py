"""NaN and inf are no scores: recorded as invalid with the reason, ranked last, never passed
or failed by a gate without saying so; the gate refuses metric names it cannot find."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from talkwalk_bench import gate
from talkwalk_bench import leaderboard as lb
from talkwalk_bench.cli import main
from talkwalk_bench.errors import BenchError, ResultFileError
from talkwalk_bench.results import MetricEntry, read_result


@pytest.fixture(scope="module")
def two(tmp_path_factory, tiny_dataset_path):
    d = tmp_path_factory.mktemp("two")
    for system in ("popularity", "random"):
        assert main(["run", "--system", system, "--task", "ranking", "--dataset", str(tiny_dataset_path),
                     "--output", str(d / f"{system}.json"), "--no-progress"]) == 0
    return d


@pytest.fixture(scope="module")
def tiny_dataset_path():
    return Path(__file__).parent / "fixtures" / "tiny"


def _set(path, metric, value, raw=False):
    text = path.read_text()
    data = json.loads(text)
    data["metrics"][metric]["value"] = value
    out = json.dumps(data)
    if raw:  # write a bare NaN/Infinity token as Python's json does
        out = out.replace(f'"{value}"', value)
    path.write_text(out)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_become_invalid_with_the_reason(value):
    e = MetricEntry(value=value, ci_low=value, ci_high=0.5, n=3)
    assert e.value is None and e.invalid and "not a finite number" in e.reason and e.ci_low is None


def test_finite_and_na_values_are_untouched():
    assert MetricEntry(value=0.25, n=2).value == 0.25
    na = MetricEntry(value=None, reason="no scores")
    assert not na.invalid and na.reason == "no scores"


@pytest.mark.parametrize("value, raw", [("NaN", True), ("Infinity", True), ("NaN", False), ("inf", False)])
def test_leaderboard_ranks_an_invalid_main_score_last(two, tmp_path, value, raw):
    folder = tmp_path / "lb"
    shutil.copytree(two, folder)
    main_score = read_result(folder / "popularity.json").task.main_score
    _set(folder / "popularity.json", main_score, value, raw=raw)
    results, _ = lb.collect([folder])
    [board] = lb.build(results)
    rows = {r.system: r for r in board.rows}
    assert rows["random"].rank == 1 and rows["popularity"].rank is None
    assert [r.system for r in board.rows] == ["random", "popularity"]
    assert "not a finite number" in rows["popularity"].metrics[main_score]["reason"]
    md = lb.to_markdown([board])
    assert "n/a in " + main_score + ": invalid" in md


def test_gate_fails_loudly_on_an_invalid_value(two, tmp_path, capsys):
    base = tmp_path / "base.json"
    base.write_text((two / "popularity.json").read_text())
    _set(base, "nDCG@10", "NaN", raw=True)
    assert main(["gate", "--baseline", str(base), "--current", str(two / "popularity.json")]) == 1
    out = capsys.readouterr().out
    assert "FAIL nDCG@10" in out and "baseline value is invalid" in out


def test_gate_refuses_unknown_metric_and_negative_tolerance(two, capsys):
    pop = str(two / "popularity.json")
    assert main(["gate", "--baseline", pop, "--current", pop, "--metric", "nDCG@11"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither result has a metric 'nDCG@11'" in err[0] and "nDCG@10" in err[0]
    assert main(["gate", "--baseline", pop, "--current", pop, "--tolerance", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tolerance" in err[0]
    with pytest.raises(BenchError, match="tolerance"):
        r = read_result(pop)
        gate.compare(r, r, tolerance=-0.5)


def test_gate_refuses_a_tolerance_file_with_a_negative_value(two, tmp_path):
    tol = tmp_path / "tol.json"
    tol.write_text(json.dumps({"tolerances": {"nDCG@10": -0.1}}))
    with pytest.raises(BenchError, match="tolerances are finite numbers >= 0"):
        gate.read_tolerances(tol)


def test_a_json_that_is_no_result_says_so(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"hello": "world"}')
    with pytest.raises(ResultFileError, match="not a result file"):
        read_result(p)


def test_leaderboard_folder_skips_its_own_json_output(two, tmp_path, capsys):
    folder = tmp_path / "lb"
    shutil.copytree(two, folder)
    assert main(["leaderboard", str(folder), "--format", "json", "--output", str(folder / "leaderboard.json")]) == 0
    capsys.readouterr()
    assert main(["leaderboard", str(folder)]) == 0
    out = capsys.readouterr()
    assert "popularity" in out.out and "leaderboard.json: not a result file" in out.err
    # named explicitly, it is still an error
    assert main(["leaderboard", str(folder / "leaderboard.json")]) == 2
