"""Judge metrics added to the steerability task: over loopback HTTP, absent without options, n/a without an endpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from judge_helpers import ScriptedEngine

from talkwalk_bench.data.card import load_card
from talkwalk_bench.data.dataset import load_dataset
from talkwalk_bench.judge.scoring import JUDGE_METRICS
from talkwalk_bench.results import episodes_path, read_episodes, read_result
from talkwalk_bench.steering import ItemValues, predicate_from_dict
from talkwalk_bench.tasks.runner import RunConfig, run

ROOT = Path(__file__).resolve().parents[2]
N_USERS = 8


@pytest.fixture
def spec(tmp_path) -> str:
    p = tmp_path / "steer-judge-small.yaml"
    p.write_text(f"include: {ROOT / 'tasks' / 'steerability.yaml'}\nepisodes: {{max_users: {N_USERS}}}\n"
                 "bootstrap: {n_resamples: 200}\n")
    return str(p)


@pytest.fixture(autouse=True)
def _no_env_judge(monkeypatch):
    for name in ("TALKWALK_JUDGE_BASE_URL", "TALKWALK_JUDGE_MODEL", "TALKWALK_JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def _opts(url, tmp_path, **kw):
    return {"judge_base_url": url, "judge_model": "scripted", "judge_backoff": 0.01,
            "judge_cache_path": str(tmp_path / "judge-cache.sqlite"), **kw}


def _run(spec, tmp_path, name, options, system="popularity"):
    out = tmp_path / f"{name}.json"
    res = run(RunConfig(system=system, task=spec, output=out, progress=False, options=options, force=True))
    return res, read_episodes(episodes_path(out)), out


def _steer_share(rec, iv, k=10) -> float:
    pred = predicate_from_dict(rec["requests"]["steer"]["predicate"])
    lst = rec["lists"]["steer"][:k]
    return sum(iv.satisfies(pred, i) for i in lst) / k


def test_judge_metrics_on_the_steer_turn_and_steering_metrics_unchanged(serve, spec, tmp_path):
    prompts = []

    def reply(m, n):
        prompts.append(m[-1]["content"])
        return '{"choice": "A"}' if "List A" in m[-1]["content"] else '{"score": 4, "reason": "fine"}'

    eng = ScriptedEngine(reply)
    res, eps, out = _run(spec, tmp_path, "judged", _opts(serve(eng), tmp_path))
    base, base_eps, _ = _run(spec, tmp_path, "plain", {})
    assert res.status == base.status == "success" and len(eps) == N_USERS

    # without judge options: no judge metric, no judge field; with them: every steering metric identical
    assert not set(JUDGE_METRICS) & set(base.metrics) and "judge_machine_spearman" not in base.metrics
    assert all("judge" not in r and "machine_share" not in r for r in base_eps)
    assert "judge" not in base.extras
    for name, m in base.metrics.items():
        assert res.metrics[name].value == m.value and res.metrics[name].n == m.n, name

    m = res.metrics
    assert m["judge_instruction_following"].value == 4.0 and m["judge_instruction_following"].n == N_USERS
    # machine share recomputed by hand from the steer list and its predicate
    card, ds = load_card("ml-100k"), load_dataset("ml-100k")
    iv = ItemValues(card, ds.items, ds.item_ids)
    shares = [_steer_share(r, iv) for r in eps]
    assert [r["machine_share"] for r in eps] == pytest.approx(shares)
    assert m["judge_agreement"].value == pytest.approx(sum(s >= 0.5 for s in shares) / N_USERS)
    # pairwise against the neutral list, asked in both orders: a judge that always says A wins one
    # order and loses the other, so every episode is 1/2 whatever the lists
    assert all(r["judge"]["pairwise_system_as_A"]["system_was"] == "A" for r in eps)
    assert all(r["judge"]["pairwise_system_as_B"]["system_was"] == "B" for r in eps)
    assert m["judge_pairwise_win_rate"].value == 0.5 and m["judge_pairwise_win_rate"].n == N_USERS
    assert m["judge_explanation_coherence"].value is None and "explanations" in m["judge_explanation_coherence"].reason
    assert "constant" in m["judge_machine_spearman"].reason  # every score is 4: undefined, not a number

    # the judge saw the steer utterance, and the neutral list as the other side
    single = [p for p in prompts if "List A" not in p]
    # pairwise in both orders; where the steered list equals the neutral one both orders are one prompt (cached)
    assert len(single) == N_USERS and N_USERS <= len(prompts) - N_USERS <= 2 * N_USERS
    for r in eps:
        assert any(r["requests"]["steer"]["utterance"] in p for p in single)
    j = res.extras["judge"]
    assert j["available"] and j["failed_in_records"] == 0 and j["judgments_in_records"] == 3 * N_USERS
    assert "neutral" in j["reference"] and j["this_process"]["model"] == "scripted"
    assert read_result(out).status == "success"


def test_judge_options_without_an_endpoint_give_na_with_the_reason(spec, tmp_path):
    res, eps, _ = _run(spec, tmp_path, "nourl", {"judge_model": "m"})
    assert res.status == "success"
    assert res.metrics["constraint_following@10"].value is not None
    for name in (*JUDGE_METRICS, "judge_machine_spearman"):
        assert res.metrics[name].value is None and "judge_base_url" in res.metrics[name].reason, name
    assert all(r["judge"]["skipped"] for r in eps)
    assert res.extras["judge"]["available"] is False


def test_pairwise_off_and_a_dying_endpoint_leave_a_valid_result(spec, tmp_path):
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("scripted_server.py")), "3"],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        res, eps, out = _run(spec, tmp_path, "dying", _opts(url, tmp_path, judge_retries=1, judge_concurrency=1,
                                                              judge_pairwise="false"))
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert res.status == "success" and res.n_failed == 0
    assert all("pairwise_preference" not in r["judge"] for r in eps)
    assert "no reference" in res.metrics["judge_pairwise_win_rate"].reason
    j = res.extras["judge"]
    assert j["judgments_in_records"] == N_USERS and 0 < j["failed_in_records"] < N_USERS
    n = res.metrics["judge_instruction_following"].n
    assert 0 < n < N_USERS and res.metrics["judge_instruction_following"].value == 2.0
    assert res.metrics["constraint_following@10"].n == N_USERS  # the machine check is unaffected
    assert read_result(out).status == "success"
