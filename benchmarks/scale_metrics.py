"""Scale of the harness's metric engine: a synthetic 1M-item catalog and 100k users.

The harness never sees full score matrices at this scale (systems return their
top-K, e.g. from FAISS); what it computes is ranking metrics on 100k top-20
lists, catalog-level coverage and Gini over 1M items, and bootstrap CIs.
This script times each step and records peak memory, then writes
benchmarks/results/scale_metrics.md.

    .venv/bin/python benchmarks/scale_metrics.py [--users 100000] [--items 1000000]
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from pathlib import Path

import numpy as np

from talkwalk_bench.metrics.beyond import coverage_from_matrix, gini_from_matrix
from talkwalk_bench.metrics.ranking import hit_matrix, ranking_metrics
from talkwalk_bench.metrics.stats import mean_ci_many


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=20)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []

    t0 = time.perf_counter()
    # popularity-skewed lists (Zipf-like), as a real recommender's would be
    weights = 1.0 / np.arange(1, a.items + 1) ** 0.8
    weights /= weights.sum()
    M = rng.choice(a.items, size=(a.users, a.k), p=weights)
    targets = rng.choice(a.items, size=a.users, p=weights)
    rows.append(("generate lists (not harness work)", time.perf_counter() - t0))

    ids = np.array([f"i{j}" for j in range(a.items)], dtype=object)
    t0 = time.perf_counter()
    ranked = ids[M].tolist()
    tgt = [[t] for t in ids[targets].tolist()]
    rows.append(("ids -> lists", time.perf_counter() - t0))

    t0 = time.perf_counter()
    H, n_rel = hit_matrix(ranked, tgt, a.k)
    rows.append(("hit matrix (100k x 20)", time.perf_counter() - t0))

    t0 = time.perf_counter()
    values = ranking_metrics(H, n_rel, [5, 10, 20])
    rows.append((f"{len(values)} ranking metric@K values", time.perf_counter() - t0))

    t0 = time.perf_counter()
    cov = coverage_from_matrix(M[:, :10], a.items)
    gini = gini_from_matrix(M[:, :10], a.items)
    rows.append(("coverage@10 + Gini@10 over 1M items", time.perf_counter() - t0))

    t0 = time.perf_counter()
    ests = mean_ci_many(values, n_resamples=1000)
    rows.append((f"bootstrap CIs ({len(values)} metrics, 1000 resamples)", time.perf_counter() - t0))

    total = sum(t for name, t in rows[1:])
    lines = [
        "# Metric engine at scale",
        "",
        f"Synthetic catalog of {a.items:,} items, {a.users:,} users, top-{a.k} lists (Zipf-skewed), "
        f"on {platform.processor() or platform.machine()}, 1 process.",
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| {name} | {t:.2f} |" for name, t in rows],
        f"| **harness total** | **{total:.2f}** |",
        "",
        f"Peak resident memory: {peak_mb():.0f} MiB. nDCG@10 = {ests['nDCG@10'].value:.5f} "
        f"[{ests['nDCG@10'].ci_low:.5f}, {ests['nDCG@10'].ci_high:.5f}], coverage@10 = {cov:.4f}, Gini@10 = {gini:.4f}.",
    ]
    out = Path(__file__).parent / "results" / "scale_metrics.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
