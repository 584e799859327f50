"""A judge that answers nothing cannot pass for a successful run, and cannot hold a run forever."""

from __future__ import annotations

import time

import pytest
import yaml
from judge_helpers import ScriptedEngine

from talkwalk_bench.cli import main
from talkwalk_bench.errors import BenchError
from talkwalk_bench.judge.client import Judge, JudgeConfig
from talkwalk_bench.judge.rubrics import load_rubric
from talkwalk_bench.results import read_result
from talkwalk_bench.tasks.runner import RunConfig, run
from talkwalk_bench.tasks.spec import load_spec

VARS = {"request": "a comedy please", "items": "1. \"Toy Story (1995)\": a comedy"}


def test_there_is_a_deadline_by_default():
    assert 0 < JudgeConfig().deadline_s <= 600
    assert JudgeConfig.from_options({"judge_deadline": "5"}).deadline_s == 5.0
    with pytest.raises(BenchError, match="judge_deadline"):
        JudgeConfig.from_options({"judge_deadline": -1})


def test_a_hanging_endpoint_is_cut_off_at_the_deadline(serve, tmp_path):
    eng = ScriptedEngine(lambda m, n: '{"score": 4}', delay=0.6)
    cfg = JudgeConfig(model="scripted", base_url=serve(eng), timeout_s=0.2, max_retries=5, backoff_s=0.01,
                      concurrency=2, breaker=0, deadline_s=1.0, cache=False)
    judge = Judge(cfg)
    rubric = load_rubric("instruction_following")
    t0 = time.monotonic()
    out = judge.judge_many([(rubric, {**VARS, "request": f"r{i}"}) for i in range(40)])
    took = time.monotonic() - t0
    # without the deadline: 40 jobs x 6 attempts x 0.2 s timeout / 2 threads = 24 s
    assert took < 5, took
    assert not any(j.ok for j in out)
    assert sum(j.error.startswith("deadline") for j in out) >= 30


def _spec(tmp_path):
    spec, _ = load_spec("judge")
    data = spec.model_dump(mode="json")
    data["episodes"] = {**data["episodes"], "max_users": 6}
    data["bootstrap"]["n_resamples"] = 200
    p = tmp_path / "judge_small.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


def _opts(url, tmp_path):
    return {"judge_base_url": url, "judge_model": "scripted", "judge_backoff": 0.01, "judge_retries": 0,
            "judge_parse_retries": 0, "judge_cache": False}


def test_every_judgment_failing_is_degraded_with_exit_1(serve, tmp_path, capsys):
    url = serve(ScriptedEngine(lambda m, n: "no json here"))
    out = tmp_path / "r.json"
    argv = ["run", "--system", "popularity", "--task", _spec(tmp_path), "--output", str(out), "--no-progress",
            "-O", f"judge_base_url={url}", "-O", "judge_model=scripted", "-O", "judge_retries=0",
            "-O", "judge_parse_retries=0", "-O", "judge_cache=false"]
    assert main(argv) == 1
    assert "every one of the" in capsys.readouterr().err
    res = read_result(out)
    assert res.status == "degraded" and "judgments failed" in res.error
    # allowed: a success that records what was accepted
    assert main(argv + ["--force", "--allow-degraded"]) == 0
    good = out.read_text()
    # a degraded --force run never replaces that good result
    assert main(argv + ["--force"]) == 1
    assert "the earlier result" in capsys.readouterr().err and out.read_text() == good
    res = read_result(out)
    assert res.status == "success" and "judgments failed" in res.extras["allowed_degraded"]


def test_some_judgments_succeeding_is_a_success(serve, tmp_path):
    url = serve(ScriptedEngine(lambda m, n: '{"score": 3}' if n % 2 else "nope"))
    res = run(RunConfig(system="popularity", task=_spec(tmp_path), output=tmp_path / "r.json", progress=False,
                        options=_opts(url, tmp_path)))
    assert res.status == "success" and 0 < res.extras["judge"]["failed_in_records"] < res.extras["judge"]["judgments_in_records"]
