"""End-to-end runs of the ranking task: result fields, recomputation, resume, failures."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from talkwalk_bench.data import leave_one_out, load_dataset
from talkwalk_bench.errors import BenchError, SystemFailure, UnknownNameError
from talkwalk_bench.metrics.ranking import hit_matrix, ranking_metrics
from talkwalk_bench.registry import SYSTEMS, register_system
from talkwalk_bench.results import episodes_path, read_episodes, read_result
from talkwalk_bench.tasks.runner import RunConfig, run
from talkwalk_bench.types import Ranking, SystemMeta


def _run(tmp_path, system="popularity", **kw):
    out = kw.pop("output", tmp_path / "r.json")
    return run(RunConfig(system=system, task="ranking", output=out, progress=False, **kw)), out


def test_popularity_result_has_every_field_and_recomputes(tmp_path):
    res, out = _run(tmp_path)
    data = json.loads(out.read_text())
    assert list(data)[0] == "schema_version" and data["status"] == "success"
    for key in ("system", "task", "dataset", "protocol", "seed", "env", "metrics", "timings"):
        assert key in data
    assert data["dataset"]["n_users"] == 943 and data["dataset"]["fingerprint"]
    assert data["task"]["spec_hash"] and data["env"]["packages"]["numpy"]
    assert "file's order" in data["protocol"]["ties"]  # the split's timestamp tie rule is stated
    prov = data["provenance"]  # the code that made the numbers, by content
    assert prov["files"]["systems/baselines.py"] and prov["files"]["tasks/ranking.yaml"]
    assert prov["dataset_fingerprint"] == data["dataset"]["fingerprint"] and isinstance(prov["dirty_files"], list)
    m = data["metrics"]["nDCG@10"]
    assert m["n"] == 943 and m["ci_low"] <= m["value"] <= m["ci_high"]

    # per-episode ranked/targets, recomputed independently, give the same numbers
    eps = read_episodes(episodes_path(out))
    assert len(eps) == 943 and all(e["status"] == "ok" for e in eps)
    H, n_rel = hit_matrix([e["ranked"] for e in eps], [e["targets"] for e in eps], 10)
    again = ranking_metrics(H, n_rel, [10], ["nDCG", "Hit", "MRR"])
    for name in ("nDCG@10", "Hit@10", "MRR@10"):
        assert again[name].mean() == pytest.approx(data["metrics"][name]["value"], abs=1e-12)


def test_popularity_matches_training_counts_with_history_excluded(tmp_path):
    res, out = _run(tmp_path)
    split = leave_one_out(load_dataset("ml-100k"))
    counts = Counter(split.train.item_ids.tolist())
    order = sorted(counts, key=lambda i: (-counts[i], int(i)))
    for e in read_episodes(episodes_path(out))[:50]:
        hist = set(split.history(e["user_id"], "test"))
        expected = [i for i in order if i not in hist][:20]
        assert e["ranked"] == expected


def test_same_seed_same_numbers_random(tmp_path):
    a, _ = _run(tmp_path, system="random", output=tmp_path / "a.json", seed=3)
    b, _ = _run(tmp_path, system="random", output=tmp_path / "b.json", seed=3)
    c, _ = _run(tmp_path, system="random", output=tmp_path / "c.json", seed=4)
    assert a.metrics == b.metrics
    assert a.metrics["nDCG@20"].value != c.metrics["nDCG@20"].value or a.metrics["Hit@20"].value != c.metrics["Hit@20"].value


class _Flaky:
    """Raises on the second batch."""

    def __init__(self, fail: bool = True):
        self.meta = SystemMeta(name="flaky")
        self.calls = 0
        self.fail = fail

    def fit(self, data, *, seed):
        self.items = data.item_ids

    def recommend(self, requests, *, k):
        self.calls += 1
        if self.fail and self.calls == 2:
            raise RuntimeError("model exploded")
        return [Ranking(tuple(i for i in self.items if i not in r.exclude)[:k]) for r in requests]


@pytest.fixture
def flaky_system():
    state = {"fail": True}
    if "test-flaky" not in SYSTEMS:
        register_system("test-flaky")(lambda: _Flaky(fail=state["fail"]))
    SYSTEMS._entries["test-flaky"].obj = lambda: _Flaky(fail=state["fail"])
    return state


def test_failing_system_keeps_finished_episodes_and_resumes(tmp_path, flaky_system):
    out = tmp_path / "flaky.json"
    with pytest.raises(SystemFailure) as err:
        run(RunConfig(system="test-flaky", task="ranking", output=out, progress=False))
    msg = str(err.value)
    assert "RuntimeError" in msg and "model exploded" in msg and "--resume" in msg and "\n" not in msg
    res = read_result(out)
    assert res.status == "error" and "model exploded" in res.error
    eps = read_episodes(episodes_path(out))
    ok = [e for e in eps if e["status"] == "ok"]
    failed = [e for e in eps if e["status"] == "failed"]
    assert len(ok) == 256 and len(failed) == 256 and res.n_failed == 256

    # without --resume an existing result is never overwritten
    with pytest.raises(BenchError, match="--resume"):
        run(RunConfig(system="test-flaky", task="ranking", output=out, progress=False))
    flaky_system["fail"] = False
    res2 = run(RunConfig(system="test-flaky", task="ranking", output=out, progress=False, resume=True))
    assert res2.status == "success" and res2.metrics["Hit@10"].n == 943
    eps2 = read_episodes(episodes_path(out))
    assert len(eps2) == 943 and [e["episode"] for e in eps2[:256]] == [e["episode"] for e in ok]


def test_resume_refuses_different_arguments(tmp_path):
    _run(tmp_path, system="random")
    with pytest.raises(BenchError, match="cannot resume: the system or its arguments differ"):
        run(RunConfig(system="random", task="ranking", output=tmp_path / "r.json", progress=False, resume=True,
                      system_args={"seed_offset": 1}))


def test_unknown_names(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown system 'popularty'. Did you mean 'popularity'"):
        _run(tmp_path, system="popularty")
    with pytest.raises(UnknownNameError, match="unknown task 'rankng'. Did you mean 'ranking'"):
        run(RunConfig(system="popularity", task="rankng", output=tmp_path / "x.json", progress=False))
    with pytest.raises(BenchError, match="has no argument 'seed_ofset'. Did you mean 'seed_offset'"):
        _run(tmp_path, system="random", system_args={"seed_ofset": 1})


def test_unwritable_output_fails_before_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BenchError, match="not writable"):
        _run(tmp_path, output=blocker / "sub" / "r.json")


def test_resume_refuses_when_the_code_changed_since_the_interrupted_run(tmp_path, flaky_system):
    out = tmp_path / "flaky.json"
    with pytest.raises(SystemFailure):
        run(RunConfig(system="test-flaky", task="ranking", output=out, progress=False))
    data = json.loads(out.read_text())
    data["provenance"]["files"]["talkwalk_bench/tasks/ranking.py"] = "0" * 16  # as if the family changed since
    out.write_text(json.dumps(data))
    flaky_system["fail"] = False
    with pytest.raises(BenchError, match=r"code changed since the interrupted run \(talkwalk_bench/tasks/ranking.py\)"):
        run(RunConfig(system="test-flaky", task="ranking", output=out, progress=False, resume=True))
