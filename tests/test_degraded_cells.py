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
    # one naming scheme with run and matrix: TASK/SYSTEM__DATASET__seedN.json
    name = tiny_dataset.name
    assert sorted(p.name for p in (out / "ranking").glob("*.json")) == [f"popularity__{name}__seed0.json",
                                                                         f"random__{name}__seed0.json"]
    assert "popularity" in (out / "leaderboard.md").read_text()
    assert {p.parent for p in tmp_path.rglob("*.json")} == {out / "ranking"}


def test_a_suite_folder_written_under_the_old_names_resumes_without_rerunning(tmp_path, tiny_dataset, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\ndataset: {tiny_dataset}\nruns: [{{task: ranking, systems: [popularity]}}]\n")
    out = tmp_path / "out"
    assert main(["suite", str(suite), "--output-dir", str(out), "--no-progress"]) == 0
    [new] = (out / "ranking").glob("popularity__*.json")
    old = new.with_name("popularity__seed0.json")  # what suite wrote before it shared matrix's names
    new.rename(old)
    new.with_name(new.stem + ".episodes.jsonl").rename(old.with_name("popularity__seed0.episodes.jsonl"))
    capsys.readouterr()
    assert main(["suite", str(suite), "--output-dir", str(out), "--no-progress"]) == 0
    assert "skip" in capsys.readouterr().err
    assert [p.name for p in (out / "ranking").glob("*.json")] == ["popularity__seed0.json"]
    assert main(["suite", str(suite), "--output-dir", str(out), "--no-progress", "--force"]) == 0
    assert new.exists()


def test_a_run_of_a_suite_can_have_its_own_seeds_and_the_summary_gives_time_per_system(tmp_path, tiny_dataset, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\ndataset: {tiny_dataset}\nseeds: [0]\n"
                     "runs: [{task: ranking, systems: [random], seeds: [0, 1, 2]}, {task: ranking, systems: [popularity]}]\n")
    out = tmp_path / "out"
    assert main(["suite", str(suite), "--output-dir", str(out), "--no-progress"]) == 0
    names = sorted(p.name.split("__")[0] + p.name.split("__")[-1][:-5] for p in (out / "ranking").glob("*.json"))
    assert names == ["popularityseed0", "randomseed0", "randomseed1", "randomseed2"]
    err = capsys.readouterr().err
    assert "[4/4]" in err and "time per system" in err and "random" in err.split("time per system")[1]
    assert main(["suite", str(suite), "--output-dir", str(out), "--no-progress", "--seeds", "5"]) == 0
    assert (out / "ranking" / f"random__{tiny_dataset.name}__seed5.json").exists()


def test_a_suite_reruns_a_result_whose_code_fingerprint_is_missing_or_changed(tmp_path, tiny_dataset, capsys):
    import json

    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\ndataset: {tiny_dataset}\nruns: [{{task: ranking, systems: [popularity]}}]\n")
    out = tmp_path / "out"
    assert main(["suite", str(suite), "--output-dir", str(out), "--no-progress"]) == 0
    [res] = (out / "ranking").glob("popularity__*.json")
    capsys.readouterr()
    assert main(["suite", str(suite), "--output-dir", str(out), "--no-progress"]) == 0
    assert "skip" in capsys.readouterr().err  # made by the current code: kept
    data = json.loads(res.read_text())
    # as if popularity's code had changed since: the file, and (the module registers several systems) its part
    data["provenance"]["files"]["systems/baselines.py"] = "0" * 16
    assert data["provenance"]["scoped"]["systems/baselines.py"]["system"] == "popularity"
    data["provenance"]["scoped"]["systems/baselines.py"]["hash"] = "0" * 16
    res.write_text(json.dumps(data))
    run_id = data["run_id"]
    assert main(["suite", str(suite), "--output-dir", str(out), "--no-progress"]) == 0
    assert "done" in capsys.readouterr().err
    again = json.loads(res.read_text())
    assert again["run_id"] != run_id and again["provenance"]["files"]["systems/baselines.py"] != "0" * 16
