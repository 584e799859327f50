"""A degraded run (its judge answered nothing) counts as a failure in suites and matrices, not as done."""

from __future__ import annotations

from types import SimpleNamespace

from talkwalk_bench import matrix
from talkwalk_bench.cli import main
from talkwalk_bench.tasks import runner


def _degraded(cfg):
    return SimpleNamespace(status="degraded", error="every one of the 4 judgments failed",
                           task=SimpleNamespace(main_score="x"), main_value=lambda: None)


def test_matrix_cell_that_ends_degraded_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run", _degraded)
    [cell] = matrix.plan(["popularity"], ["ranking"], [0], tmp_path)
    out = matrix.run_cell(cell)
    assert out.status == "error" and "degraded" in out.message and "judgments failed" in out.message


def test_suite_cell_that_ends_degraded_fails_the_suite(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "run", _degraded)
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nruns: [{task: ranking, systems: [popularity]}]\n")
    assert main(["suite", str(suite), "--output-dir", str(tmp_path / "out"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "FAIL" in err and "status degraded" in err


def test_a_suite_that_succeeds_writes_its_results_and_leaderboard_inside_its_folder(tmp_path, tiny_dataset, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\ndataset: {tiny_dataset}\nruns: [{{task: ranking, systems: [popularity, random]}}]\n")
    out = tmp_path / "out"
    assert main(["suite", str(suite), "--output-dir", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in (out / "ranking").glob("*.json")) == ["popularity__seed0.json", "random__seed0.json"]
    assert "popularity" in (out / "leaderboard.md").read_text()
    assert {p.parent for p in tmp_path.rglob("*.json")} == {out / "ranking"}
