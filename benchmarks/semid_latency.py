"""Latency of one top-10 list from the semid decoder (target: p50 <= 150 ms on 2 CPU cores).

Usage: python benchmarks/semid_latency.py [--system semid-align] [-S key=value ...] [--n 50]
Fits (or loads from the cache) the system on ml-100k, then times single
requests built from test-user histories, one at a time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", default="semid-align")
    ap.add_argument("-S", action="append", default=[])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from talkwalk_bench.data.card import load_card
    from talkwalk_bench.data.dataset import load_dataset
    from talkwalk_bench.data.split import leave_one_out
    from talkwalk_bench.registry import build_system
    from talkwalk_bench.types import Request

    torch.set_num_threads(args.threads)
    over = dict(kv.split("=", 1) for kv in args.S)
    over = {k: _value(v) for k, v in over.items()}
    ds = load_dataset("ml-100k")
    split = leave_one_out(ds)
    system, _ = build_system(args.system, over)
    system.fit(split.train_data(load_card("ml-100k")), seed=0)
    users = list(split.test_item)[: args.n + 3]
    reqs = [
        Request(u, history=split.history(u), exclude=frozenset(split.history(u))) for u in users
    ]
    for r in reqs[:3]:  # warm-up
        system.recommend([r], k=args.k)
    times = []
    for r in reqs[3:]:
        t0 = time.perf_counter()
        system.recommend([r], k=args.k)
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1000
    print(
        f"{args.system}: n={len(ms)} top-{args.k} lists, threads={args.threads}: p50={np.percentile(ms, 50):.0f} ms p95={np.percentile(ms, 95):.0f} ms"
    )


def _value(v: str) -> int | float | str:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


if __name__ == "__main__":
    main()
