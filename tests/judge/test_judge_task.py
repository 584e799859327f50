"""The judge task end to end: metrics over HTTP with n and CI, n/a without an endpoint, a dying endpoint, reruns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from judge_helpers import ScriptedEngine

from talkwalk_bench.results import episodes_path, read_episodes, read_result
from talkwalk_bench.tasks.runner import RunConfig, run
from talkwalk_bench.tasks.spec import load_spec

SYSTEM = "oracle-filter"


def _spec(tmp_path, **episodes):
    spec, _ = load_spec("judge")
    data = spec.model_dump(mode="json")
    data["episodes"] = {**data["episodes"], "max_users": 12, **episodes}
    data["batch_size"] = 4
    data["bootstrap"]["n_resamples"] = 200
    p = tmp_path / "judge_small.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


def _opts(url, tmp_path, **kw):
    return {"judge_base_url": url, "judge_model": "scripted", "judge_backoff": 0.01,
            "judge_cache_path": str(tmp_path / "judge-cache.sqlite"), **kw}


def _run(tmp_path, name, options, system="popularity", **episodes):
    out = tmp_path / f"{name}.json"
    res = run(RunConfig(system=system, task=_spec(tmp_path, **episodes), output=out, progress=False, options=options, force=True))
    return res, read_episodes(episodes_path(out)), out


def test_judge_metrics_with_n_and_ci_and_agreement_by_hand(serve, tmp_path):
    eng = ScriptedEngine(lambda m, n: '{"choice": "A"}' if "List A" in m[-1]["content"] else '{"score": 4, "reason": "ok"}')
    res, eps, _ = _run(tmp_path, "pop", _opts(serve(eng), tmp_path))
    assert res.status == "success" and len(eps) == 12
    m = res.metrics
    assert m["judge_instruction_following"].value == 4.0 and m["judge_instruction_following"].n == 12
    # agreement: the judge always says 4 (>= 3, 'honoured'); the machine says so when >= half the list fits
    expected = sum(r["machine_share"] >= 0.5 for r in eps) / 12
    assert m["judge_agreement"].value == pytest.approx(expected)
    # pairwise in both orders: a judge that always picks A wins as A and loses as B: 1/2 every episode
    assert [r["judge"]["pairwise_system_as_B"]["choice"] for r in eps] == ["A"] * 12
    assert m["judge_pairwise_win_rate"].value == 0.5 and m["judge_pairwise_win_rate"].n == 12
    assert m["judge_explanation_coherence"].value is None and "explanations" in m["judge_explanation_coherence"].reason
    assert m["constraint_following@10"].chance is not None
    j = res.extras["judge"]
    assert j["this_process"]["model"] == "scripted" and j["this_process"]["temperature"] == 0.0
    assert j["rubrics"]["instruction_following"] == "instruction_following@v2"
    # popularity against the popularity reference: both orders can be the same prompt, then one is a cache hit
    assert j["this_process"]["calls"] == eng.calls and eng.calls + j["this_process"]["cache_hits"] == 36
    assert j["this_process"]["total_tokens"] > 0
    assert j["calibration"]["verdict"] == "uncalibrated" and "judge-calibrate" in j["calibration"]["reason"]
    assert j["failed_in_records"] == 0

    # a rerun pays nothing: every judgment comes from the cache
    eng2 = ScriptedEngine(lambda m, n: "never asked")
    res2, _, _ = _run(tmp_path, "pop2", _opts(serve(eng2), tmp_path) | {"judge_base_url": j["this_process"]["base_url"]})
    assert eng2.calls == 0 and res2.extras["judge"]["this_process"]["cache_hits"] == 36
    assert res2.metrics["judge_instruction_following"].value == 4.0


def test_without_an_endpoint_judge_metrics_are_na_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.delenv("TALKWALK_JUDGE_BASE_URL", raising=False)
    monkeypatch.delenv("TALKWALK_JUDGE_MODEL", raising=False)
    res, eps, _ = _run(tmp_path, "none", {}, system=SYSTEM)
    assert res.status == "success"
    assert res.metrics["constraint_following@10"].value == 1.0  # the oracle honours every request
    for name in ("judge_instruction_following", "judge_pairwise_win_rate", "judge_agreement", "judge_machine_spearman"):
        assert res.metrics[name].value is None and "no judge endpoint configured" in res.metrics[name].reason
    assert all(r["metrics"]["judge_instruction_following"] is None for r in eps)


def test_garbage_answers_are_failures_not_scores(serve, tmp_path):
    eng = ScriptedEngine(lambda m, n: "lovely list!")
    res, eps, out = _run(tmp_path, "garbage", _opts(serve(eng), tmp_path, judge_parse_retries=0))
    # every judgment failed: the run is no success, and says why
    assert res.status == "degraded" and read_result(out).status == "degraded"
    assert "every one of the 36 judgments failed" in res.error and "--allow-degraded" in res.error
    assert res.metrics["judge_instruction_following"].value is None
    assert "unparseable" in res.metrics["judge_instruction_following"].reason
    assert res.extras["judge"]["failed_in_records"] == 36
    assert all(r["judge"]["instruction_following"]["ok"] is False for r in eps)


def test_killing_the_endpoint_mid_run_leaves_a_valid_result_with_failures_counted(tmp_path, monkeypatch):
    secret = "sk-test-NEVER-WRITTEN-987"
    monkeypatch.setenv("TALKWALK_JUDGE_API_KEY", secret)
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("scripted_server.py")), "6"],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        res, eps, out = _run(tmp_path, "killed", _opts(url, tmp_path, judge_retries=1, judge_concurrency=1))
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert res.status == "success" and res.n_failed == 0
    j = res.extras["judge"]
    assert 0 < j["failed_in_records"] < 36 and j["judgments_in_records"] == 36
    n_scored = res.metrics["judge_instruction_following"].n
    assert 0 < n_scored < 12 and res.metrics["judge_instruction_following"].value == 2.0
    assert res.metrics["constraint_following@10"].n == 12  # the machine check is unaffected
    failed = [r["judge"]["instruction_following"] for r in eps if not r["judge"]["instruction_following"]["ok"]]
    assert failed and all(f["error"].startswith(("connection error", "endpoint down")) for f in failed)
    again = read_result(out)  # the file validates against the schema
    assert again.status == "success"
    for path in (out, episodes_path(out)):
        assert secret not in path.read_text()


def test_pairwise_against_another_runs_lists(serve, tmp_path):
    seen = []

    def reply(m, n):
        if "List A" in m[-1]["content"]:
            seen.append(m[-1]["content"])
            return '{"choice": "tie"}'
        return '{"score": 3}'

    url = serve(ScriptedEngine(reply))
    _, pop_eps, pop_out = _run(tmp_path, "ref", _opts(url, tmp_path), system="popularity")
    res, eps, _ = _run(tmp_path, "vs", _opts(url, tmp_path, judge_reference=str(pop_out), judge_cache=False), system=SYSTEM)
    assert res.metrics["judge_pairwise_win_rate"].value == 0.5 and res.metrics["judge_pairwise_win_rate"].n == 12
    assert str(pop_out) in res.extras["judge"]["reference"]
    # the oracle's prompts carry the popularity run's lists as the other side
    # 12 episodes x 2 orders for the oracle; the popularity run against its own reference may hit its cache
    assert 36 <= len(seen) <= 48 and all(("List A" in p and "List B" in p) for p in seen)
    with pytest.raises(Exception, match="not found"):
        _run(tmp_path, "bad", _opts(url, tmp_path, judge_reference=str(tmp_path / "missing.json")), system=SYSTEM)


def test_the_judge_model_defaults_to_the_one_the_endpoint_serves(serve, tmp_path):
    eng = ScriptedEngine(lambda m, n: '{"choice": "tie"}' if "List A" in m[-1]["content"] else '{"score": 2}', name="only-one")
    opts = _opts(serve(eng), tmp_path)
    del opts["judge_model"]
    res, _, _ = _run(tmp_path, "discovered", opts)
    assert res.status == "success" and res.extras["judge"]["this_process"]["model"] == "only-one"
    assert res.metrics["judge_instruction_following"].value == 2.0
