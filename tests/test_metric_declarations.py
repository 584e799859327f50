"""Metrics are declared once; specs, runs, the gate and the leaderboard ask the declaration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from talkwalk_bench import metric_info as mi
from talkwalk_bench.cli import main
from talkwalk_bench.errors import BenchError
from talkwalk_bench.gate import _check
from talkwalk_bench.results import MetricEntry
from talkwalk_bench.tasks.base import FAMILIES
from talkwalk_bench.tasks.runner import _check_declared

ROOT = Path(__file__).resolve().parents[1]


def _spec(tmp_path: Path, **over: str) -> Path:
    text = (ROOT / "tasks" / "ranking.yaml").read_text()
    for key, value in over.items():
        lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key}:")]
        text = "\n".join(lines + [f"{key}: {value}"]) + "\n"
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


def test_validate_rejects_a_misspelt_main_score_with_a_suggestion(tmp_path, capsys):
    assert main(["validate", str(_spec(tmp_path, main_score="ndcg@10"))]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "main_score: 'ndcg@10'" in err and "Did you mean 'nDCG@10'?" in err


def test_validate_rejects_a_cutoff_outside_k_and_an_unknown_metrics_entry(tmp_path, capsys):
    assert main(["validate", str(_spec(tmp_path, main_score="nDCG@50"))]) == 1
    assert "cutoff from the spec's k" in capsys.readouterr().err
    assert main(["validate", str(_spec(tmp_path, metrics="[Hit, NDCG]"))]) == 1
    assert "Did you mean 'nDCG'?" in capsys.readouterr().err
    # main score left out by the spec's own selection
    assert main(["validate", str(_spec(tmp_path, metrics="[Hit]"))]) == 1
    assert "'nDCG@10' is not a metric" in capsys.readouterr().err


def test_run_refuses_a_misspelt_main_score_before_any_work(tmp_path, capsys):
    spec = _spec(tmp_path, main_score="Hit@10x")
    assert main(["run", "--system", "popularity", "--task", str(spec), "--output", str(tmp_path / "r.json")]) != 0
    assert "Hit@10x" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_a_family_that_does_not_select_metrics_refuses_a_metrics_list(tmp_path, capsys):
    text = (ROOT / "tasks" / "latency.yaml").read_text() + "metrics: [latency_p50_ms]\n"
    (tmp_path / "lat.yaml").write_text(text)
    assert main(["validate", str(tmp_path / "lat.yaml")]) == 1
    assert "reports all its metrics" in capsys.readouterr().err


def test_every_family_declares_known_metrics_and_every_committed_result_uses_them():
    for entry in FAMILIES.entries():
        assert entry.obj.declared_metrics(), entry.name
    seen = 0
    for path in (ROOT / "results").rglob("*.json"):
        data = json.loads(path.read_text())
        if "metrics" not in data:
            continue
        fam = FAMILIES.get(data["task"]["family"])
        _check_declared(list(data["metrics"]), fam)  # raises on an undeclared name
        seen += 1
    assert seen > 10


def test_a_run_reporting_an_undeclared_metric_is_an_error():
    with pytest.raises(BenchError, match="without declaring it"):
        _check_declared(["Hit@10", "hit_rate@10"], FAMILIES.get("ranking"))


def test_direction_comes_from_the_declaration_not_the_name():
    assert mi.direction("latency_p95_ms") == "lower" and mi.direction("throughput_rps") == "higher"
    assert mi.direction("judge_position_bias") == "lower"  # no prefix rule could say so
    assert mi.direction("steering_precision") == "higher" and mi.direction("steering_precision/target_js") == "none"
    assert mi.direction("constraint_following@5/include") == "higher"
    # a third party's metric: its declaration alone makes the gate read it as lower-is-better
    mi.declare(mi.Metric("xyz_error_rate", "lower", "share of wrong answers"))
    worse, better = MetricEntry(value=0.30), MetricEntry(value=0.10)
    assert not _check("xyz_error_rate", better, worse, 0.05).ok
    assert _check("xyz_error_rate", worse, better, 0.05).ok


def test_declaring_a_name_twice_with_another_meaning_is_refused():
    with pytest.raises(BenchError, match="declared twice"):
        mi.declare(mi.Metric("nDCG@K", "lower", "something else"))


def test_cold_start_metrics_list_and_main_score_are_checked_together(tmp_path, capsys):
    shipped = (ROOT / "tasks" / "cold_start.yaml").read_text()
    assert "metrics: [Hit, Precision, nDCG]" in shipped
    text = shipped.replace("metrics: [Hit, Precision, nDCG]", "metrics: [Hit, MRR]")
    (tmp_path / "cs.yaml").write_text(text)
    assert main(["validate", str(tmp_path / "cs.yaml")]) == 1  # main_score new_users/nDCG@10 is no longer reported
    assert "'new_users/nDCG@10' is not a metric" in capsys.readouterr().err
    (tmp_path / "cs.yaml").write_text(text.replace("[Hit, MRR]", "[Hit, nDCG, HIT]"))
    assert main(["validate", str(tmp_path / "cs.yaml")]) == 1
    assert "Did you mean 'Hit'?" in capsys.readouterr().err


def test_list_metrics_shows_each_familys_declarations(capsys):
    assert main(["list", "metrics"]) == 0
    out = capsys.readouterr().out
    assert "ranking:" in out and "nDCG@K" in out and "latency_p50_ms" in out and "↓" in out


@pytest.mark.parametrize("runs,expected", [
    ("[{task: ranking, systems: [popularity, random], system_args: {random: {seed_offset: two}}}]", "takes seed_offset as int"),
    ("[{task: ranking, systems: [popularity], system_args: {random: {seed_offset: 2}}}]", "does not list in systems"),
    ("[{task: ranking, systems: [popularityy]}]", "Did you mean 'popularity'?"),
    ("[{task: rankng, systems: [popularity]}]", "Did you mean 'ranking'?"),
])
def test_validate_checks_what_a_suite_names(tmp_path, capsys, runs, expected):
    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "s.yaml").write_text(f"name: s\nruns: {runs}\n")
    assert main(["validate", str(folder / "s.yaml")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and "runs[0]" in err
