"""judge_calibration: known-answer cases pin the judge metrics (a judge that knows scores best, a blind one scores chance)."""

from __future__ import annotations

import math
import re

import pytest
import yaml
from judge_helpers import ScriptedEngine

from talkwalk_bench.data.card import load_card
from talkwalk_bench.data.dataset import load_dataset
from talkwalk_bench.judge.calibration import CHANCE, build_cases, case_metrics, verdict
from talkwalk_bench.judge.scoring import describe_list
from talkwalk_bench.paths import runs_dir
from talkwalk_bench.results import episodes_path, read_episodes, read_result
from talkwalk_bench.tasks.runner import RunConfig, run
from talkwalk_bench.tasks.spec import load_spec
from talkwalk_bench.tasks.steering_eval import eval_templates

N = 10
KINDS = ["include", "exclude", "range_bin", "include_range", "include_exclude"]


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    s, _ = load_spec("judge_calibration")
    data = s.model_dump(mode="json")
    data["episodes"] = {**data["episodes"], "n_cases": N}
    data["batch_size"] = 5
    data["bootstrap"]["n_resamples"] = 200
    p = tmp_path_factory.mktemp("spec") / "cal_small.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


@pytest.fixture(scope="module")
def good_lists():
    """The described good lists of the spec's cases: what a judge that knows the answers recognises."""
    card, ds = load_card("ml-100k"), load_dataset("ml-100k")
    cases = build_cases(card, ds.items, ds.item_ids, n_cases=N, kinds=KINDS, list_length=5, seed=0,
                        templates=eval_templates(None)[0])
    return {describe_list(c.good, ds.items, card, 5) for c in cases}


def _block(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def knowing(good_lists, *, pairwise_letter: str | None = None):
    """A judge that answers right: 5 for a good list, 1 for a bad one; the good list in a pair (or always one letter)."""
    def reply(m, n):
        text = m[-1]["content"]
        if "List A:" in text:
            if pairwise_letter:
                return f'{{"choice": "{pairwise_letter}"}}'
            return '{"choice": "A"}' if _block(text, "List A:\n", "\n\nList B:") in good_lists else '{"choice": "B"}'
        items = _block(text, "(best first):\n", "\n\nRate")
        return '{"score": 5, "reason": "fits"}' if items in good_lists else '{"score": 1, "reason": "does not"}'
    return reply


def _opts(url, tmp_path, **kw):
    return {"judge_base_url": url, "judge_model": "scripted", "judge_backoff": 0.01,
            "judge_cache_path": str(tmp_path / "cache.sqlite"), **kw}


def _calibrate(spec, tmp_path, options, name="cal"):
    out = tmp_path / f"{name}.json"
    res = run(RunConfig(system=None, task=spec, output=out, progress=False, options=options, force=True))
    return res, read_episodes(episodes_path(out))


def test_a_judge_that_knows_the_answers_scores_one_and_is_calibrated(serve, spec, tmp_path, good_lists):
    res, eps = _calibrate(spec, tmp_path, _opts(serve(ScriptedEngine(knowing(good_lists))), tmp_path))
    m = res.metrics
    assert res.status == "success" and res.system.name == "judge-scripted" and len(eps) == N
    assert m["judge_accuracy"].value == 1.0 and m["judge_accuracy"].n == N and m["judge_accuracy"].chance == 0.5
    assert m["judge_pairwise_accuracy"].value == 1.0 and m["judge_good_above_bad"].value == 1.0
    assert m["judge_position_bias"].value == 0.0 and m["judge_score_gap"].value == 4.0
    assert m["judge_score_variance"].value == pytest.approx(4.0)  # half 5s, half 1s
    assert verdict(m["judge_accuracy"].model_dump()) == "calibrated"
    # every kind is covered, each good list satisfies its predicate and each bad list violates it
    assert set(res.extras["per_kind"]) == set(KINDS)
    assert {r["kind"] for r in eps} == set(KINDS) and all(len(r["good"]) == len(r["bad"]) == 5 for r in eps)
    assert res.protocol["rubrics"]["pairwise_preference"] == "pairwise_preference@v2"
    assert res.extras["judge"]["pairwise_letters"] == {"A": N, "B": N, "tie": 0}


def test_a_constant_always_A_judge_scores_exactly_chance(serve, spec, tmp_path):
    eng = ScriptedEngine(lambda m, n: '{"choice": "A"}' if "List A:" in m[-1]["content"] else '{"score": 4}')
    res, _ = _calibrate(spec, tmp_path, _opts(serve(eng), tmp_path))
    m = res.metrics
    for name in ("judge_accuracy", "judge_pointwise_accuracy", "judge_good_above_bad", "judge_pairwise_accuracy"):
        assert m[name].value == CHANCE[name] and m[name].ci_low <= CHANCE[name] <= m[name].ci_high, name
    assert m["judge_score_gap"].value == 0.0 and m["judge_score_variance"].value == 0.0
    assert m["judge_position_bias"].value == 1.0
    assert verdict(m["judge_accuracy"].model_dump()) == "no better than chance"


def test_position_bias_is_caught_even_when_the_scores_are_right(serve, spec, tmp_path, good_lists):
    res, _ = _calibrate(spec, tmp_path, _opts(serve(ScriptedEngine(knowing(good_lists, pairwise_letter="B"))), tmp_path))
    m = res.metrics
    assert m["judge_pointwise_accuracy"].value == 1.0
    assert m["judge_pairwise_accuracy"].value == 0.5 and m["judge_position_bias"].value == 1.0
    assert m["judge_accuracy"].value == 0.75  # 2 of 4 known answers from the scores + 1 of 2 from the pairs


def _skewed_logprobs(good_lists):
    """Text always says 4; the probabilities lean to 5 on a good list and to 3 on a bad one."""
    def lp(messages, text):
        if "List A:" in messages[-1]["content"]:
            return None
        good = _block(messages[-1]["content"], "(best first):\n", "\n\nRate") in good_lists
        other = " 5" if good else " 3"
        return [{"token": t, "logprob": 0.0, "bytes": None, "top_logprobs": []} for t in ("score", '":')] + [
            {"token": " 4", "logprob": math.log(0.6), "bytes": None,
             "top_logprobs": [{"token": " 4", "logprob": math.log(0.6), "bytes": None},
                              {"token": other, "logprob": math.log(0.3), "bytes": None},
                              {"token": " the", "logprob": math.log(0.1), "bytes": None}]},
            {"token": "}", "logprob": 0.0, "bytes": None, "top_logprobs": []}]
    return lp


def test_expected_scores_from_logprobs_show_what_the_generated_integer_hides(serve, spec, tmp_path, good_lists):
    reply = lambda m, n: '{"choice": "tie"}' if "List A:" in m[-1]["content"] else '{"score": 4}'  # noqa: E731
    eng = ScriptedEngine(reply, logprobs=_skewed_logprobs(good_lists))
    url = serve(eng)
    res, eps = _calibrate(spec, tmp_path, _opts(url, tmp_path), "lp")
    assert res.metrics["judge_good_above_bad"].value == 1.0
    assert res.metrics["judge_score_gap"].value == pytest.approx(2 * 1 / 3, abs=1e-4)  # 4 + 1/3 vs 4 - 1/3
    assert res.extras["judge"]["with_expected_score"] == 2 * N and res.extras["judge"]["score_source"].startswith("expected")
    rec = eps[0]["judge"]["good"]
    assert rec["score"] == 4 and rec["score_probs"] == {"4": pytest.approx(2 / 3, abs=1e-4), "5": pytest.approx(1 / 3, abs=1e-4)}
    # only score rubrics ask for logprobs
    assert sorted({x for x in eng.logprobs_asked}, key=str) == [10, None]
    # without logprobs the same judge ties every case
    res2, _ = _calibrate(spec, tmp_path, _opts(url, tmp_path, judge_logprobs=False), "nolp")
    assert res2.metrics["judge_good_above_bad"].value == 0.5 and res2.extras["judge"]["with_expected_score"] == 0


def test_case_metrics_by_hand():
    assert case_metrics(5, 1, "A", "B", judge_pass=3) == {
        "judge_accuracy": 1.0, "judge_pointwise_accuracy": 1.0, "judge_good_above_bad": 1.0, "judge_score_gap": 4.0,
        "judge_pairwise_accuracy": 1.0, "judge_position_bias": 0.0}
    m = case_metrics(2, 4, "tie", "A", judge_pass=3)  # everything wrong but a tie
    assert m["judge_pointwise_accuracy"] == 0.0 and m["judge_good_above_bad"] == 0.0 and m["judge_score_gap"] == -2.0
    assert m["judge_pairwise_accuracy"] == 0.25 and m["judge_position_bias"] == 0.0 and m["judge_accuracy"] == 0.125
    # a failed judgment leaves what depends on it undefined, not wrong
    m = case_metrics(None, 1, "A", None, judge_pass=3)
    assert m["judge_good_above_bad"] is None and m["judge_pairwise_accuracy"] is None and m["judge_accuracy"] == 1.0
    assert verdict(None) == "uncalibrated" and verdict({"value": 0.6, "ci_low": 0.45, "ci_high": 0.7}) == "no better than chance"


def test_cli_without_a_system_finds_the_model_and_says_the_verdict(serve, spec, tmp_path, capsys, good_lists):
    from talkwalk_bench.cli import main

    url = serve(ScriptedEngine(knowing(good_lists), name="tiny/judge:1"))
    cache = f"judge_cache_path={tmp_path / 'c.sqlite'}"
    assert main(["judge-calibrate", "--judge-base-url", url, "--task", spec, "--no-progress", "-O", cache]) == 0
    out = capsys.readouterr().out
    assert "verdict: calibrated (judge_accuracy 1.000" in out
    path = runs_dir() / "judge_calibration" / "judge-tiny_judge_1__ml-100k__seed0.json"
    res = read_result(path)
    assert res.protocol["judge_model"] == "tiny/judge:1" and res.system.name == "judge-tiny_judge_1"
    # the same through `run`, which refuses a system for this task and still wants one for the others
    assert main(["run", "--task", spec, "--judge-base-url", url, "--output", str(tmp_path / "r.json"), "--no-progress",
                 "-O", cache]) == 0
    assert main(["run", "--task", spec, "--system", "popularity", "--judge-base-url", url]) == 2
    assert "runs no system" in capsys.readouterr().err
    assert main(["run", "--task", "ranking"]) == 2
    assert "--system NAME is required" in capsys.readouterr().err
    assert main(["judge-calibrate", "--task", spec]) == 2
    assert "measures a judge" in capsys.readouterr().err


def _judge_task(tmp_path, url, name):
    s, _ = load_spec("judge")
    data = s.model_dump(mode="json")
    data["episodes"] = {**data["episodes"], "max_users": 6}
    data["bootstrap"]["n_resamples"] = 100
    p = tmp_path / "judge_small.yaml"
    p.write_text(yaml.safe_dump(data))
    out = tmp_path / f"{name}.json"
    return run(RunConfig(system="popularity", task=str(p), output=out, progress=False, force=True,
                         options={"judge_base_url": url, "judge_model": "scripted", "judge_cache": False})), out


@pytest.mark.parametrize("knows", [True, False])
def test_judged_results_carry_their_calibration_and_the_leaderboard_greys_the_uncalibrated(serve, spec, tmp_path, good_lists, knows):
    from talkwalk_bench import leaderboard as lb

    blind = lambda m, n: '{"choice": "A"}' if "List A:" in m[-1]["content"] else '{"score": 4}'  # noqa: E731
    url = serve(ScriptedEngine(knowing(good_lists) if knows else blind))
    before, before_out = _judge_task(tmp_path, url, "before")
    assert before.extras["judge"]["calibration"]["verdict"] == "uncalibrated"
    cal_out = runs_dir() / "judge_calibration" / "judge-scripted__ml-100k__seed0.json"
    cal = run(RunConfig(system=None, task=spec, progress=False, force=True, options={"judge_base_url": url, "judge_cache": False}))
    assert cal.status == "success" and cal_out.exists()
    after, after_out = _judge_task(tmp_path, url, "after")
    c = after.extras["judge"]["calibration"]
    assert c["path"] == str(cal_out) and c["model"] == "scripted" and c["judge_accuracy"]["n"] == N
    assert c["verdict"] == ("calibrated" if knows else "no better than chance")
    # another endpoint is not backed by this calibration
    other = serve(ScriptedEngine(blind))
    assert _judge_task(tmp_path, other, "other")[0].extras["judge"]["calibration"]["verdict"] == "uncalibrated"

    boards = lb.build([(after_out, after)])
    md, page = lb.to_markdown(boards), lb.to_html(boards)
    row = next(line for line in md.splitlines() if line.startswith("| 1 | popularity"))
    assert "judge calibration" in md and re.search(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\] vs chance 0\.50", row)
    if knows:
        assert "calibrated" in row and "judge)" not in row and "class='uncal'" not in page
    else:
        assert "(no better than chance judge)" in row and "class='uncal'" in page
    # a judged result without any calibration is greyed as uncalibrated
    md0 = lb.to_markdown(lb.build([(before_out, before)]))
    assert "(uncalibrated judge)" in md0
