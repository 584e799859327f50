"""Beyond-accuracy and latency families end to end with the floors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from talkwalk_bench.data.dataset import load_dataset
from talkwalk_bench.results import episodes_path, read_episodes
from talkwalk_bench.tasks.runner import RunConfig, run

BEYOND = """
name: beyond-small
family: beyond
dataset: ml-100k
k: [5, 10]
main_score: coverage@10
episodes: {max_users: 150, attribute: genre, tail_ratio: 0.8}
bootstrap: {n_resamples: 200}
"""

LATENCY = """
name: latency-small
family: latency
dataset: ml-100k
k: [10]
main_score: latency_p50_ms
episodes: {n_requests: 40, warmup: 5, throughput_batch: 16, throughput_repeats: 3}
batch_size: 16
bootstrap: {n_resamples: 200}
"""


def _spec(tmp_path: Path, text: str, name: str) -> str:
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return str(p)


def _run(tmp_path: Path, task: str, system: str, tag: str = ""):
    out = tmp_path / f"{system}{tag}.json"
    result = run(RunConfig(system=system, task=task, output=out, progress=False))
    assert result.status == "success", result.error
    return result, out


@pytest.fixture(scope="module")
def beyond_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("beyond")
    task = _spec(tmp, BEYOND, "beyond")
    return {s: _run(tmp, task, s) for s in ("popularity", "random")}, task, tmp


def test_popularity_covers_a_sliver_of_what_random_covers(beyond_runs):
    runs, _, _ = beyond_runs
    pop, rnd = runs["popularity"][0].metrics, runs["random"][0].metrics
    assert pop["coverage@10"].value < rnd["coverage@10"].value / 5
    assert pop["Gini@10"].value > rnd["Gini@10"].value
    assert pop["novelty@10"].value < rnd["novelty@10"].value
    assert pop["ARP@10"].value > rnd["ARP@10"].value
    assert pop["tail_share@10"].value < rnd["tail_share@10"].value
    for name in ("coverage@5", "Gini@5", "ILD@10", "nDCG@10", "Hit@10"):
        assert name in pop and pop[name].n == 150


def test_run_level_metrics_match_the_recorded_lists(beyond_runs):
    runs, _, _ = beyond_runs
    ds = load_dataset("ml-100k")
    for result, out in runs.values():
        lists = [r["ranked"] for r in read_episodes(episodes_path(out))]
        shown = {i for lst in lists for i in lst[:10]}
        assert result.metrics["coverage@10"].value == pytest.approx(len(shown) / ds.n_items)
        m = result.metrics["coverage@10"]
        assert m.ci_low <= m.value <= m.ci_high


def test_ild_of_recorded_lists_is_recomputable_from_the_card_genres(beyond_runs):
    runs, _, _ = beyond_runs
    ds = load_dataset("ml-100k")
    result, out = runs["random"]
    rec = read_episodes(episodes_path(out))[0]
    genres = [set(ds.items[i]["class"]) for i in rec["ranked"][:10]]
    sims = [len(a & b) / len(a | b) for x, a in enumerate(genres) for b in genres[x + 1:]]
    assert rec["metrics"]["ILD@10"] == pytest.approx(1 - np.mean(sims))


def test_same_seed_same_numbers(beyond_runs):
    runs, task, tmp = beyond_runs
    again, _ = _run(tmp, task, "random", tag="-again")
    first = runs["random"][0]
    assert {k: v.model_dump() for k, v in again.metrics.items()} == {k: v.model_dump() for k, v in first.metrics.items()}


def test_latency_run_reports_ordered_percentiles_throughput_and_hardware(tmp_path):
    result, out = _run(tmp_path, _spec(tmp_path, LATENCY, "latency"), "popularity")
    m = result.metrics
    p50, p95, p99 = (m[f"latency_p{p}_ms"] for p in (50, 95, 99))
    assert p50.n == p95.n == p99.n == 40
    assert 0 < p50.value <= p95.value <= p99.value
    assert p50.ci_low <= p50.value <= p50.ci_high
    assert m["latency_mean_ms"].n == 40
    assert m["throughput_rps"].n == 3 and m["throughput_rps"].value > 0
    hw = json.loads(out.read_text())["extras"]["hardware"]
    assert hw["cpu_model"] and hw["cpu_count_usable"] >= 1
    recs = read_episodes(episodes_path(out))
    assert sum(r["kind"] == "batch" for r in recs) == 3
    assert all(r["n_items"] == 10 for r in recs if r["kind"] == "single")
