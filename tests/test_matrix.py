"""The matrix command: local process pool and a local Ray instance give the same numbers."""

from __future__ import annotations

import json

import pytest

from talkwalk_bench.cli import main
from talkwalk_bench.matrix import execute, plan
from talkwalk_bench.results import read_result


@pytest.fixture(scope="module")
def small_tasks(tmp_path_factory):
    d = tmp_path_factory.mktemp("specs")
    a = d / "rank-a.yaml"
    a.write_text("name: rank-a\nfamily: ranking\nmain_score: nDCG@10\nk: [10]\nepisodes: {max_users: 60}\n")
    b = d / "rank-b.yaml"
    b.write_text("name: rank-b\nfamily: ranking\nmain_score: Hit@5\nk: [5, 20]\nmetrics: [Hit, nDCG]\nepisodes: {max_users: 40}\n")
    return [str(a), str(b)]


def _metrics(cells):
    return {(c.system, c.task.rsplit("/", 1)[-1], c.seed): {k: v.value for k, v in read_result(c.output).metrics.items()} for c in cells}


def test_local_and_ray_agree_and_resume(small_tasks, tmp_path):
    local_cells = plan(["popularity", "random"], small_tasks, [0, 1], tmp_path / "local")
    assert len(local_cells) == 8
    outcomes = execute(local_cells, executor="local", jobs=2)
    assert sorted(o.status for o in outcomes) == ["success"] * 8
    # a second pass skips every finished cell
    again = execute(local_cells, executor="local", jobs=1)
    assert {o.status for o in again} == {"skipped"}

    pytest.importorskip("ray")
    ray_cells = plan(["popularity", "random"], small_tasks, [0, 1], tmp_path / "ray")
    outcomes = execute(ray_cells, executor="ray")
    assert sorted(o.status for o in outcomes) == ["success"] * 8
    assert _metrics(local_cells) == _metrics(ray_cells)


def test_matrix_cli_writes_leaderboard_and_reports_failures(small_tasks, tmp_path, capsys):
    out = tmp_path / "m"
    code = main(["matrix", "--systems", "popularity", "--tasks", small_tasks[0], "--seeds", "0", "--output-dir", str(out)])
    assert code == 0 and (out / "leaderboard.md").exists()
    assert main(["matrix", "--systems", "popularity,nope", "--tasks", small_tasks[0], "--output-dir", str(out)]) == 2
    assert "unknown system 'nope'" in capsys.readouterr().err
    assert main(["matrix", "--systems", "popularity", "--tasks", small_tasks[0], "--seeds", "a,b", "--output-dir", str(out)]) == 2
    # a corrupt cell result is rerun, not trusted
    cell = next(out.rglob("popularity__*seed0.json"))
    cell.write_text("{broken")
    assert main(["matrix", "--systems", "popularity", "--tasks", small_tasks[0], "--seeds", "0", "--output-dir", str(out)]) == 1
    assert "corrupt result" in capsys.readouterr().err
    assert cell.read_text() == "{broken"  # never overwritten silently


def test_dry_run_says_what_each_cell_would_do_and_runs_nothing(small_tasks, tmp_path, capsys):
    out = tmp_path / "d"
    args = ["matrix", "--systems", "popularity,random", "--tasks", small_tasks[0], "--seeds", "0", "--output-dir", str(out)]
    assert main([*args, "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[1] for ln in lines[:2]] == ["run", "run"] and "no result yet" in lines[0]
    assert not out.exists() or not list(out.rglob("*.json"))  # nothing was run
    assert main(args) == 0
    # one result now looks made by other code: the dry run names the file that changed
    pop = next(out.rglob("popularity__*seed0.json"))
    data = json.loads(pop.read_text())
    edited = next(f for f in data["provenance"]["files"] if f.startswith("talkwalk_bench/metrics/"))
    data["provenance"]["files"][edited] = "0" * 16
    pop.write_text(json.dumps(data))
    before = pop.read_text()
    capsys.readouterr()
    assert main([*args, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "rerun popularity" not in text  # the task column comes first
    verbs = {ln.split()[3]: (ln.split()[1], ln.split(": ", 1)[1]) for ln in text.splitlines() if ln.startswith("[")}
    assert verbs["popularity"] == ("rerun", f"changed since the run: {edited}")
    assert verbs["random"] == ("skip", "made by the current code")
    assert "1 current (skipped), 1 to rerun, 0 to run" in text
    assert pop.read_text() == before  # untouched
