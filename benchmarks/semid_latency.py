"""Latency of top-10 lists from the semid decoder (target: p50 <= 150 ms per list on 2 CPU cores).

Usage: python benchmarks/semid_latency.py [--system semid-align] [-S key=value ...] [--n 48]
           [--batches 1,16] [--fp32]

Fits (or loads from the cache) the system on ml-100k, then decodes requests
built from test users' histories (history excluded, as in the ranking task):

* ``batch=1``: one request per call, the per-list latency a single user sees;
* ``batch=B``: B requests per call (``rec_batch=B``), latency per list = call time / B.

Prints the median and p95 per list for each setting, and ratios against
``batch=1``. ``--fp32`` also times fp32 weights (``infer_bf16=False``, same
trained rows). ``-S steps_a=0 -S steps_b=0`` times an untrained model of the
same shape without training one (decoding cost does not depend on the weights).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", default="semid-align")
    ap.add_argument("-S", action="append", default=[])
    ap.add_argument("--n", type=int, default=48, help="lists per setting")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--fp32", action="store_true")
    args = ap.parse_args()

    import torch

    from talkwalk_bench.data.card import load_card
    from talkwalk_bench.data.dataset import load_dataset
    from talkwalk_bench.data.split import leave_one_out
    from talkwalk_bench.registry import build_system
    from talkwalk_bench.types import Request

    torch.set_num_threads(args.threads)
    over = {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.S)}
    split = leave_one_out(load_dataset("ml-100k"))
    data = split.train_data(load_card("ml-100k"))
    users = list(split.test_item)[: args.n + 4]
    reqs = [
        Request(u, history=split.history(u), exclude=frozenset(split.history(u))) for u in users
    ]
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    for dtype in ["bf16"] + (["fp32"] if args.fp32 else []):
        system, _ = build_system(args.system, {**over, "infer_bf16": dtype == "bf16"})
        system.fit(data, seed=0)
        system.recommend(reqs[:4], k=args.k)  # warm-up
        for b in batches:
            system.p["rec_batch"] = b
            per_list = []
            for start in range(4, len(reqs) - b + 1, b):
                t0 = time.perf_counter()
                got = system.recommend(reqs[start : start + b], k=args.k)
                per_list += [(time.perf_counter() - t0) / b] * b
                assert all(len(set(r.items)) == len(r.items) == args.k for r in got)
            ms = np.array(per_list) * 1000
            rows.append((dtype, b, len(ms), float(np.median(ms)), float(np.percentile(ms, 95))))
    base = rows[0][3]
    print(f"{args.system}: top-{args.k} lists, threads={args.threads}")
    for dtype, b, n, p50, p95 in rows:
        print(
            f"  {dtype} batch={b:<3d} n={n:<4d} p50={p50:7.1f} ms/list  p95={p95:7.1f} ms/list  "
            f"p50 ratio to first row={p50 / base:.2f}"
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
