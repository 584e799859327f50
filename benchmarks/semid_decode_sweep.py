"""Inference settings of `semid` (or `semid-tiger`), chosen on validation: item_mix x history x lm_levels x beam (and int8).

Usage: python benchmarks/semid_decode_sweep.py --seed 0 [--system semid]
           [--settings 3:12:0,5:12:1,5:12:1:40] [--int8]

Fits (or loads from the cache) the system at its defaults on ml-100k, then ranks
the validation item (the second-to-last, history before it excluded, as
`tasks/ranking_valid.yaml`) of all 943 users once per setting
``mix:history[:lm_levels[:beam]]``: the item head's weight in the product of
experts, the number of history items the model reads (`max_history_infer` for
`semid`, `max_history` for `semid-tiger`), the number of id levels the model's
codes score (0: all; deeper levels are left to the item head and cost no
forward pass) and the beam width (the system's default when left out). All are
inference-only arguments: one trained model serves every row. ``--int8`` adds
the first setting with the body's Linear layers quantized dynamically to int8
(per-output-channel weight scales).

Prints, per setting, validation nDCG@10 and its paired difference to the first
setting with a 95 % bootstrap CI over users, and the mean overlap of the top-10
lists with the first setting's. The test split is never read.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np


def parse_setting(text: str, *, default_beam: int) -> tuple[float, int, int, int]:
    """``mix:history[:lm_levels[:beam]]`` -> (item_mix, history, lm_levels, beam); ValueError in one line otherwise."""
    f = text.split(":")
    try:
        if not 2 <= len(f) <= 4:
            raise ValueError
        return (float(f[0]), int(f[1]), int(f[2]) if len(f) > 2 else 0, int(f[3]) if len(f) > 3 else default_beam)
    except ValueError:
        raise ValueError(f"--settings: {text!r} is not mix:history[:lm_levels[:beam]] "
                         "(numbers, e.g. 5:12:1 or 1:50:0:50)") from None


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
    try:
        settings = [parse_setting(t, default_beam=int(system.p["beam"])) for t in args.settings.split(",")]
    except ValueError as e:
        ap.error(str(e))
    system.fit(data, seed=args.seed)
    fp32 = system.model
    hist_key = "max_history_infer" if "max_history_infer" in system.p else "max_history"

    def label(m: float, h: int, n: int, b: int) -> str:
        return f"item_mix={m:g} {hist_key}={h} lm_levels={n} beam={b}"

    runs = [(label(*st), *st, fp32) for st in settings]
    if args.int8:
        q = copy.deepcopy(fp32)
        q.model = torch.ao.quantization.quantize_dynamic(
            q.model, {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8)
        runs.append((label(*settings[0]) + " int8", *settings[0], q.eval()))
    rows = []
    for name, mix, hist, n_lm, beam, model in runs:
        system.model = model
        system.p.update({hist_key: hist, "item_mix": mix, "lm_levels": n_lm, "beam": beam})
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
        print(f"  {name:62s} {gains.mean():.4f}  {d.mean():+.4f} [{np.percentile(boot, 2.5):+.4f}, "
              f"{np.percentile(boot, 97.5):+.4f}]  top-10 overlap {overlap:.2f}  ({secs:.0f} s)")


if __name__ == "__main__":
    main()
