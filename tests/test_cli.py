"""The command line: one-line errors with exit code 2, leaderboards, the gate, validate, list."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from talkwalk_bench.cli import main
from talkwalk_bench.results import read_result


@pytest.fixture(scope="module")
def two_results(tmp_path_factory):
    d = tmp_path_factory.mktemp("res")
    for system in ("popularity", "random"):
        assert main(["run", "--system", system, "--task", "ranking", "--output", str(d / f"{system}.json"), "--no-progress"]) == 0
    return d


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["run", "--system", "nope", "--task", "ranking"], "unknown system 'nope'"),
        (["run", "--system", "popularity", "--task", "nope"], "unknown task 'nope'"),
        (["run", "--system", "popularity", "--task", "ranking", "--dataset", "ml-1"], "unknown dataset 'ml-1'"),
        (["run", "--system", "popularity", "--task", "ranking", "-S", "oops"], "expected key=value"),
        (["gate", "--baseline", "/nonexistent.json", "--current", "/nonexistent.json"], "result file not found"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, fragment, capsys):
    assert main(argv) == 2
    line = _err_line(capsys)
    assert line.startswith("error: ") and fragment in line and "Traceback" not in line


def test_malformed_dataset_folder(tmp_path, capsys, tiny_dataset):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_dataset, bad)
    (bad / "bad.inter").write_text("user_id:token\titem_id:token\trating:float\tts:float\nu1\ta\t5\n")
    for p in bad.glob("tiny.*"):
        p.rename(bad / p.name.replace("tiny", "bad"))
    (bad / "bad.inter").write_text("user_id:token\titem_id:token\trating:float\tts:float\nu1\ta\t5\n")
    assert main(["run", "--system", "popularity", "--task", "ranking", "--dataset", str(bad), "--output", str(tmp_path / "o.json")]) == 2
    line = _err_line(capsys)
    assert "bad.inter:2" in line and "expected 4 tab-separated columns, found 3" in line
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize(
    "yaml_text, fragment",
    [
        ("name: t\nfamily: ranking\nmain_score: nDCG@10\ncolour: red\n", "colour: unknown key"),
        ("name: t\nfamily: ranking\nmain_score: nDCG@10\nk: ten\n", "k: Input should be a valid list"),
        ("name: t\nfamily: ranking\nmain_score: nDCG@10\nbatch_size: 0\n", "batch_size: Input should be greater than or equal to 1"),
        ("name: t\nfamily: rankin\nmain_score: nDCG@10\n", "family: unknown family 'rankin'. Did you mean 'ranking'"),
        ("name: t\nfamily: ranking\nmain_score: nDCG@10\nepisodes: {max_user: 3}\n", "episodes.max_user: unknown key"),
        ("name: t\nfamily: ranking\n", "main_score: required key is missing"),
        ("name: [t\n", "not valid YAML"),
    ],
)
def test_broken_task_spec(tmp_path, capsys, yaml_text, fragment):
    spec = tmp_path / "broken.yaml"
    spec.write_text(yaml_text)
    assert main(["validate", str(spec)]) == 1
    line = _err_line(capsys)
    assert str(spec) in line and fragment in line
    assert main(["run", "--system", "popularity", "--task", str(spec), "--output", str(tmp_path / "o.json")]) == 2
    assert fragment in _err_line(capsys)


def test_validate_all_specs_pass(capsys):
    assert main(["validate"]) == 0
    assert "ok" in capsys.readouterr().out


def test_leaderboard_formats(two_results, tmp_path, capsys):
    for fmt in ("md", "csv", "json", "html"):
        out = tmp_path / f"lb.{fmt}"
        assert main(["leaderboard", str(two_results), "--format", fmt, "--output", str(out)]) == 0
        text = out.read_text()
        assert "popularity" in text and "random" in text
    md = (tmp_path / "lb.md").read_text()
    pop_line = next(line for line in md.splitlines() if "| popularity" in line)
    assert pop_line.startswith("| 1 |")  # popularity ranks above random on nDCG@10
    rows = json.loads((tmp_path / "lb.json").read_text())[0]["rows"]
    assert [r["system"] for r in rows] == ["popularity", "random"]
    assert "<table" in (tmp_path / "lb.html").read_text()


def test_leaderboard_refuses_corrupt_and_wrong_version(two_results, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"schema_version": 1, "status": ')
    assert main(["leaderboard", str(corrupt)]) == 2
    assert "corrupt result (invalid JSON" in _err_line(capsys)
    old = json.loads((two_results / "popularity.json").read_text())
    old["schema_version"] = 0
    wrong = tmp_path / "old.json"
    wrong.write_text(json.dumps(old))
    assert main(["leaderboard", str(wrong)]) == 2
    assert "schema_version is 0" in _err_line(capsys)
    assert read_result(two_results / "popularity.json").status == "success"  # untouched


def test_gate_pass_regression_and_usage(two_results, tmp_path, capsys):
    pop, rnd = str(two_results / "popularity.json"), str(two_results / "random.json")
    assert main(["gate", "--baseline", pop, "--current", pop]) == 0
    assert main(["gate", "--baseline", pop, "--current", rnd]) == 1  # random is far worse
    assert main(["gate", "--baseline", rnd, "--current", pop]) == 0  # improvements never fail
    capsys.readouterr()
    assert main(["gate", "--baseline", pop]) == 2
    assert "--current" in _err_line(capsys)


def test_gate_calibrate_then_gate(tmp_path, capsys):
    results = []
    for seed in (0, 1, 2):
        out = tmp_path / f"rnd{seed}.json"
        assert main(["run", "--system", "random", "--task", "ranking", "--seed", str(seed), "--output", str(out), "--no-progress"]) == 0
        results.append(str(out))
    tol = tmp_path / "tol.json"
    assert main(["gate", "--calibrate", *results, "--output", str(tol)]) == 0
    tolerances = json.loads(tol.read_text())["tolerances"]
    assert tolerances["nDCG@10"] > 0
    # a re-run with another seed passes under calibrated tolerances
    assert main(["gate", "--baseline", results[0], "--current", results[1], "--tolerances", str(tol)]) == 0
    # a planted regression fails: the baseline's nDCG@10 raised by far more than the seed noise
    planted = json.loads(Path(results[0]).read_text())
    planted["metrics"]["nDCG@10"]["value"] += 10 * tolerances["nDCG@10"]
    base = tmp_path / "planted.json"
    base.write_text(json.dumps(planted))
    assert main(["gate", "--baseline", str(base), "--current", results[1], "--tolerances", str(tol)]) == 1


def test_list_is_instant_and_imports_no_heavy_library():
    code = ("import sys; from talkwalk_bench.cli import main; main(['list']); "
            "heavy = [m for m in ('torch', 'recbole', 'faiss', 'transformers', 'sentence_transformers') if m in sys.modules]; "
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "popularity" in out.stdout and "ranking" in out.stdout
    assert "HEAVY []" in out.stdout


def test_leaderboard_marks_rows_not_significantly_different(two_results, tmp_path):
    import shutil

    folder = tmp_path / "lb"
    shutil.copytree(two_results, folder)
    # a twin of popularity with the same per-episode values: indistinguishable from the best
    data = json.loads((folder / "popularity.json").read_text())
    data["system"]["name"] = "popularity-twin"
    data["episodes_file"] = "twin.episodes.jsonl"
    (folder / "twin.json").write_text(json.dumps(data))
    shutil.copy(folder / "popularity.episodes.jsonl", folder / "twin.episodes.jsonl")
    out = tmp_path / "lb.md"
    assert main(["leaderboard", str(folder), "--output", str(out)]) == 0
    lines = out.read_text().splitlines()
    twin = next(line for line in lines if "popularity-twin" in line or "| popularity ≈" in line)
    assert "≈" in twin
    assert "≈" not in next(line for line in lines if "| random" in line)


def test_no_progress_silences_bars_made_by_a_tqdm_imported_during_the_command(tmp_path):
    """A system's own bar (a teacher's, a library's) is made by a tqdm the command imports after parsing."""
    import subprocess
    import sys

    from talkwalk_bench import cli
    from talkwalk_bench.tasks.runner import QUIET_ENV

    assert cli.QUIET_ENV == QUIET_ENV
    probe = (
        "import sys\n"
        "from talkwalk_bench import cli\n"
        "assert 'tqdm' not in sys.modules\n"
        "def run(a):  # stands in for a run whose system makes its own bar\n"
        "    from tqdm.auto import tqdm\n"
        "    for _ in tqdm(range(3), desc='system bar', mininterval=0): pass\n"
        "    return 0\n"
        "cli.cmd_run = run\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in QUIET_ENV}
    argv = ["run", "--system", "popularity", "--task", "ranking", "--output", str(tmp_path / "r.json")]
    loud = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, env=env, timeout=120)
    quiet = subprocess.run([sys.executable, "-c", probe, *argv, "--no-progress"], capture_output=True, text=True, env=env, timeout=120)
    assert loud.returncode == 0 and "system bar" in loud.stderr, loud.stderr
    assert quiet.returncode == 0 and "system bar" not in quiet.stderr, quiet.stderr
