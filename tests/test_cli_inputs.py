"""Bad arguments and environment variables: one line, exit 2, before any work; nothing earlier is harmed."""

from __future__ import annotations

import io
import json
import shutil

import pytest

from talkwalk_bench.cli import main
from talkwalk_bench.commands.chat import HELP
from talkwalk_bench.results import read_result


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def _run(tiny, out, *extra):
    return main(["run", "--system", "popularity", "--task", "ranking", "--dataset", str(tiny), "--output", str(out),
                 "--no-progress", *extra])


@pytest.mark.parametrize("var, value, argv, fragment", [
    ("TALKWALK_SEED", "abc", ["run", "--system", "popularity", "--task", "ranking"], "--seed 'abc': expected a whole number from 0 to 4294967295 (from --seed or $TALKWALK_SEED)"),
    ("TALKWALK_SEED", "-3", ["run", "--system", "popularity", "--task", "ranking"], "--seed -3: expected"),
    ("TALKWALK_LLM_PORT", "abc", ["serve-llm"], "--port 'abc': expected a whole number from 0 to 65535 (from --port or $TALKWALK_LLM_PORT)"),
    ("TALKWALK_LLM_PORT", "70000", ["serve-llm"], "--port 70000: expected a whole number from 0 to 65535"),
    ("TALKWALK_LLM_THREADS", "many", ["serve-llm"], "--threads 'many': expected a whole number >= 0 (from --threads or $TALKWALK_LLM_THREADS)"),
    ("TALKWALK_JOBS", "0", ["matrix", "--systems", "popularity", "--tasks", "ranking"], "--jobs 0: expected a whole number >= 1 (from --jobs or $TALKWALK_JOBS)"),
    ("TALKWALK_EXECUTOR", "slurm", ["matrix", "--systems", "popularity", "--tasks", "ranking"], "expected local or ray (from --executor or $TALKWALK_EXECUTOR)"),
    ("TALKWALK_CHAT_K", "-5", ["chat", "--system", "popularity"], "-k -5: expected a whole number from 1 to 1000 (from -k or $TALKWALK_CHAT_K)"),
    ("TALKWALK_RESUME", "maybe", ["list"], "$TALKWALK_RESUME is 'maybe'"),
    ("TALKWALK_LB_FORMAT", "xml", ["leaderboard", "."], "--format 'xml': use one of md, csv, json, html (from --format or $TALKWALK_LB_FORMAT)"),
])
def test_bad_environment_variable_is_one_line(monkeypatch, capsys, var, value, argv, fragment):
    monkeypatch.setenv(var, value)
    assert main(argv) == 2
    line = _err_line(capsys)
    assert line.startswith("error: ") and fragment in line


def test_a_bad_seed_variable_does_not_break_list(monkeypatch, capsys):
    monkeypatch.setenv("TALKWALK_SEED", "abc")
    assert main(["list", "datasets"]) == 0
    assert "ml-100k" in capsys.readouterr().out


@pytest.mark.parametrize("extra, fragment", [
    (["--seed", "-1"], "--seed"),
    (["--seed", "4294967296"], "--seed"),
    (["-O", "k=-5"], "-O k: task 'ranking' (ranking) takes no -O options"),
    (["-O", "foo=1"], "-O foo"),
    (["-O", "max_users=10"], "belong in the spec's episodes"),
    (["-S", "epochs=1", "-S", "epochs=2"], "-S epochs is given twice"),
])
def test_bad_run_arguments_never_touch_a_good_result(tmp_path, tiny_dataset, capsys, extra, fragment):
    out = tmp_path / "r.json"
    assert _run(tiny_dataset, out) == 0
    before = out.read_text()
    capsys.readouterr()
    assert _run(tiny_dataset, out, "--force", *extra) == 2
    assert fragment in _err_line(capsys)
    assert out.read_text() == before and read_result(out).status == "success"


def test_unknown_system_argument_lists_the_valid_ones(tmp_path, tiny_dataset, capsys):
    assert _run(tiny_dataset, tmp_path / "r.json", "-S", "epochs=3") == 2
    assert "has no argument 'epochs'" in _err_line(capsys)


def test_untimed_data_runs_only_when_allowed_and_says_so(tmp_path, tiny_dataset, capsys):
    d = tmp_path / "untimed"
    shutil.copytree(tiny_dataset, d)
    rows = [line.split("\t")[:3] for line in (d / "tiny.inter").read_text().splitlines()]
    (d / "tiny.inter").write_text("\n".join("\t".join(r) for r in rows) + "\n")  # timestamp column dropped
    for p in d.glob("tiny.*"):
        p.rename(d / p.name.replace("tiny", "untimed"))
    out = tmp_path / "r.json"
    assert _run(d, out) == 2
    assert "--allow-untimed" in _err_line(capsys) and not out.exists()
    assert _run(d, out, "--allow-untimed") == 0
    assert "file order" in capsys.readouterr().out
    assert "no timestamp" in json.loads(out.read_text())["protocol"]["order"]


def test_chat_rejects_a_non_positive_k_and_answers_help(tiny_dataset, capsys, monkeypatch):
    assert main(["chat", "--system", "popularity", "--dataset", str(tiny_dataset), "-k", "-5"]) == 2
    assert "-k" in _err_line(capsys)
    monkeypatch.setattr("sys.stdin", io.StringIO(":help\n:nonsense\n:quit\n"))
    assert main(["chat", "--system", "popularity", "--dataset", str(tiny_dataset), "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count(HELP) >= 3 and "unknown command ':nonsense'" in out
    assert "> :help" not in out  # not sent to the system as an utterance


def test_chat_explains_itself_and_leaves_the_list_alone_on_nonsense():
    import argparse

    from talkwalk_bench.commands.chat import run_chat

    a = argparse.Namespace(system="popularity", system_arg=None, dataset="ml-100k", user="1", k=4, seed=0)
    out = io.StringIO()
    assert run_chat(a, stdin=io.StringIO("no horror, a 90s comedy\nasdfgh qwerty\n:history\n:user 99999\n:quit\n"), stdout=out) == 0
    text = out.getvalue()
    assert "fitting popularity" in text and "ready (" in text  # the phase is announced before the fit
    assert "starting list (no request yet):" in text and "Most recent:" in text
    turn = text.split("> no horror, a 90s comedy")[1].split("> asdfgh")[0]
    assert "understood (card keyword reading): genre is Comedy; genre is not Horror; year 1990–1999" in turn
    # Scream (1996) is a horror film: every reason line is checked against the metadata, not echoed
    scream = next(line for line in turn.splitlines() if "Scream" in line)
    reasons = turn.splitlines()[turn.splitlines().index(scream) + 1]
    assert "misses no Horror" in reasons and "misses Comedy" in reasons and "meets 1990–1999" in reasons
    # nonsense: said so, and no turn was played (no list follows it)
    after = text.split("> asdfgh qwerty")[1]
    assert after.lstrip().startswith("not understood") and " = " not in after.split("user 1:")[0]
    assert "no user '99999'" in text
