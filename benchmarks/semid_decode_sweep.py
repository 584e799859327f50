"""Inference settings of `semid` (or `semid-tiger`), chosen on validation: item_mix x prompt length x lm_levels (and int8).

Usage: python benchmarks/semid_decode_sweep.py --seed 0 [--system semid]
           [--settings 3:12:0,5:12:1] [--int8]

Fits (or loads from the cache) the system at its defaults on ml-100k, then ranks
the validation item (the second-to-last, history before it excluded, as
`tasks/ranking_valid.yaml`) of all 943 users once per setting
``mix:history[:lm_levels]``: the item head's weight in the product of experts,
the number of history items in the prompt (`semid` only) and the number of id
levels the model's codes score (0: all; deeper levels are left to the item
head and cost no forward pass). All are inference-only arguments: one trained
model serves every row. ``--int8`` adds the first setting with the body's
Linear layers quantized dynamically to int8 (per-output-channel weight scales).

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
    ap.add_argument("--system", default="semid")
    ap.add_argument("--settings", default="3:12:0,3:12:1,5:12:1")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from talkwalk_bench.data.card import load_card
    from talkwalk_bench.data.dataset import load_dataset
    from talkwalk_bench.data.split import leave_one_out
    from talkwalk_bench.metrics.ranking import hit_matrix, ranking_metrics
    from talkwalk_bench.registry import build_system
    from talkwalk_bench.types import Request

    torch.set_num_threads(args.threads)
    split = leave_one_out(load_dataset("ml-100k"))
    data = split.train_data(load_card("ml-100k"))
    users = sorted(split.valid_item)
    reqs = [Request(u, history=split.history(u, "valid"), exclude=frozenset(split.history(u, "valid"))) for u in users]
    system, _ = build_system(args.system, {})
    system.fit(data, seed=args.seed)
    fp32 = system.model
    settings = [(*(float(x) for x in s.split(":")[:2]), int(s.split(":")[2]) if s.count(":") > 1 else 0)
                for s in args.settings.split(",")]
    runs = [(f"item_mix={m:g} history={h:g} lm_levels={n}", m, int(h), n, fp32) for m, h, n in settings]
    if args.int8:
        q = copy.deepcopy(fp32)
        q.model = torch.ao.quantization.quantize_dynamic(
            q.model, {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8)
        m, h, n = settings[0]
        runs.append((f"item_mix={m:g} history={h:g} lm_levels={n} int8", m, int(h), n, q.eval()))
    rows = []
    for name, mix, hist, n_lm, model in runs:
        system.model = model
        system.p.update(max_history_infer=hist, item_mix=mix, lm_levels=n_lm)
        if getattr(system, "item_prior", None) is not None:  # semid builds its prior once, at fit
            system.item_prior.weight = mix
        t0 = time.perf_counter()
        lists = [list(r.items) for r in system.recommend(reqs, k=10)]
        H, n_rel = hit_matrix(lists, [[split.valid_item[u]] for u in users], 10)
        gains = ranking_metrics(H, n_rel, [10], ["nDCG"])["nDCG@10"]
        rows.append((name, lists, gains, time.perf_counter() - t0))
    rng = np.random.default_rng(0)
    _, ref_lists, ref, _ = rows[0]
    print(f"{args.system} seed {args.seed}: validation nDCG@10, n={len(users)} users; paired difference to the first row")
    for name, lists, gains, secs in rows:
        d = gains - ref
        boot = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(4000)]
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(lists, ref_lists, strict=True)])
        print(f"  {name:46s} {gains.mean():.4f}  {d.mean():+.4f} [{np.percentile(boot, 2.5):+.4f}, "
              f"{np.percentile(boot, 97.5):+.4f}]  top-10 overlap {overlap:.2f}  ({secs:.0f} s)")


if __name__ == "__main__":
    main()
