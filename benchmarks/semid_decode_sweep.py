"""Inference settings of `semid`, chosen on validation: item_mix x max_history_infer (and int8).

Usage: python benchmarks/semid_decode_sweep.py --seed 0 [--settings 1:20,2:20,2:15,3:12] [--int8]

Fits (or loads from the cache) `semid` at its defaults on ml-100k, then ranks the
validation item (the second-to-last, history before it excluded, as
`tasks/ranking_valid.yaml`) of all 943 users once per setting ``mix:history``
(the item head's weight in the product of experts, and the number of history
items in the prompt). Both are inference-only arguments: one trained model
serves every row. ``--int8`` adds the first setting with the body's Linear
layers quantized dynamically to int8 (per-output-channel weight scales).

Prints, per setting, validation nDCG@10 and its paired difference to the first
setting with a 95 % bootstrap CI over users, and the mean overlap of the top-10
lists with the first setting's. The test split is never read.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--settings", default="1:20,2:20,2:15,3:12")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from talkwalk_bench.data.card import load_card
    from talkwalk_bench.data.dataset import load_dataset
    from talkwalk_bench.data.split import leave_one_out
    from talkwalk_bench.registry import build_system
    from talkwalk_bench.types import Request

    torch.set_num_threads(args.threads)
    split = leave_one_out(load_dataset("ml-100k"))
    data = split.train_data(load_card("ml-100k"))
    users = sorted(split.valid_item)
    reqs = [Request(u, history=split.history(u, "valid"), exclude=frozenset(split.history(u, "valid"))) for u in users]
    system, _ = build_system("semid", {})
    system.fit(data, seed=args.seed)
    fp32 = system.model
    settings = [tuple(float(x) for x in s.split(":")) for s in args.settings.split(",")]
    runs = [(f"item_mix={m:g} history={h:g}", m, int(h), fp32) for m, h in settings]
    if args.int8:
        q = copy.deepcopy(fp32)
        q.model = torch.ao.quantization.quantize_dynamic(
            q.model, {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8)
        m, h = settings[0]
        runs.append((f"item_mix={m:g} history={h:g} int8", m, int(h), q.eval()))
    rows = []
    for name, mix, hist, model in runs:
        system.model = model
        system.p["max_history_infer"] = hist
        if system.item_prior is not None:
            system.item_prior.weight = mix
        t0 = time.perf_counter()
        lists = [list(r.items) for r in system.recommend(reqs, k=10)]
        gains = np.array([1 / np.log2(lst.index(split.valid_item[u]) + 2) if split.valid_item[u] in lst else 0.0
                          for lst, u in zip(lists, users, strict=True)])
        rows.append((name, lists, gains, time.perf_counter() - t0))
    rng = np.random.default_rng(0)
    _, ref_lists, ref, _ = rows[0]
    print(f"semid seed {args.seed}: validation nDCG@10, n={len(users)} users; paired difference to the first row")
    for name, lists, gains, secs in rows:
        d = gains - ref
        boot = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(4000)]
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(lists, ref_lists, strict=True)])
        print(f"  {name:34s} {gains.mean():.4f}  {d.mean():+.4f} [{np.percentile(boot, 2.5):+.4f}, "
              f"{np.percentile(boot, 97.5):+.4f}]  top-10 overlap {overlap:.2f}  ({secs:.0f} s)")


if __name__ == "__main__":
    main()
