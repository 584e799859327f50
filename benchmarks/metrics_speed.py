"""Speed of the ranking-metric engine vs. ranx and RecBole's evaluator, and harness overhead.

Part 1: 6,040 episodes x 3,706 items (ML-1M's shape), full ranking from a random
score matrix, one held-out item per episode, metrics Hit/Recall/Precision/
nDCG/MRR/MAP at 5, 10, 20. Each engine starts from the same score matrix
and the same targets; medians of several repeats are printed as ratios.

Part 2: the share of a `popularity` ranking run's wall time spent outside
the system (target <= 5 %).

    .venv/bin/python benchmarks/metrics_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

N_USERS, N_ITEMS, KS = 6040, 3706, [5, 10, 20]


def harness(scores: np.ndarray, targets: np.ndarray, item_ids: np.ndarray) -> dict:
    from talkwalk_bench.metrics.ranking import hit_matrix, ranking_metrics

    k = max(KS)
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
    ranked = item_ids[order].tolist()
    H, n_rel = hit_matrix(ranked, [[t] for t in item_ids[targets].tolist()], k)
    return {m: float(v.mean()) for m, v in ranking_metrics(H, n_rel, KS).items()}


def recbole_eval(scores: np.ndarray, targets: np.ndarray) -> dict:
    import torch
    from recbole.evaluator import metrics as rm

    np.float = float  # RecBole 1.2.1's MAP uses an alias removed in numpy 1.24
    s = torch.from_numpy(scores)
    _, top = torch.topk(s, max(KS), dim=-1)
    pos = (top == torch.from_numpy(targets)[:, None]).numpy()
    pos_len = np.ones(len(targets), dtype=np.int64)
    cfg = {"topk": KS, "metric_decimal_place": 8}
    out = {}
    for name, cls in (("Hit", rm.Hit), ("Recall", rm.Recall), ("Precision", rm.Precision), ("nDCG", rm.NDCG), ("MRR", rm.MRR), ("MAP", rm.MAP)):
        m = cls(cfg)
        try:
            v = m.metric_info(pos, pos_len)
        except TypeError:
            v = m.metric_info(pos)
        out.update({f"{name}@{k}": float(v[:, k - 1].mean()) for k in KS})
    return out


def ranx_eval(scores: np.ndarray, targets: np.ndarray, item_ids: np.ndarray) -> dict:
    from ranx import Qrels, Run, evaluate

    k = max(KS)
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    qrels = Qrels({f"q{u}": {str(item_ids[targets[u]]): 1} for u in range(len(targets))})
    run = Run({f"q{u}": {str(item_ids[j]): float(scores[u, j]) for j in top[u]} for u in range(len(targets))})
    names = [f"{m}@{k}" for m in ("hit_rate", "recall", "precision", "ndcg", "mrr", "map") for k in KS]
    return evaluate(qrels, run, names)


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    scores = rng.random((N_USERS, N_ITEMS))
    targets = rng.integers(0, N_ITEMS, N_USERS)
    item_ids = np.array([str(i) for i in range(N_ITEMS)], dtype=object)

    ranx_eval(scores[:10], targets[:10], item_ids)  # numba compilation outside the timing
    t_h, ours = timed(lambda: harness(scores, targets, item_ids), a.repeats)
    t_r, rb = timed(lambda: recbole_eval(scores, targets), a.repeats)
    t_x, rx = timed(lambda: ranx_eval(scores, targets, item_ids), a.repeats)
    for k in KS:
        assert abs(ours[f"nDCG@{k}"] - rb[f"nDCG@{k}"]) < 1e-9 and abs(ours[f"nDCG@{k}"] - rx[f"ndcg@{k}"]) < 1e-9
    print(f"metrics for {N_USERS} episodes x {N_ITEMS} items, {len(ours)} metric@K values (median of {a.repeats}):")
    print(f"  harness  {t_h * 1000:8.1f} ms")
    print(f"  RecBole  {t_r * 1000:8.1f} ms   harness/RecBole = {t_h / t_r:.2f}")
    print(f"  ranx     {t_x * 1000:8.1f} ms   harness/ranx    = {t_h / t_x:.2f}")

    from talkwalk_bench.tasks.runner import RunConfig, run

    shares = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(a.repeats):
            res = run(RunConfig(system="popularity", task="ranking", output=Path(d) / f"p{i}.json", progress=False))
            t = res.timings
            shares.append((t["total_s"] - t["system_s"] - t["fit_s"]) / t["total_s"])
            harness_play = t["harness_s"] / t["play_s"]
    print(f"popularity ranking run: median share of wall time outside the system {statistics.median(shares):.1%} "
          f"(episode loop alone: {harness_play:.1%}; target <= 5 %)")


if __name__ == "__main__":
    main()
