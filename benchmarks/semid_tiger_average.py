"""``semid-tiger``: does averaging the weights of its saved states beat the state it keeps?

Usage: python benchmarks/semid_tiger_average.py [--seed N]

Fits (or loads from the cache) ``semid-tiger`` on ml-100k, then scores on
*validation* (nDCG@10 of the held-out validation item, history masked, all
validation users) the state training kept (best on its first ``val_users``
users), the last epoch's state (``checkpoint.pt``), and their average.
The sequence model only: lists without a request. No test item is read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import torch

    from systems.semid.system import _train_sequences
    from talkwalk_bench.data.card import load_card
    from talkwalk_bench.data.dataset import load_dataset
    from talkwalk_bench.data.split import leave_one_out
    from talkwalk_bench.registry import build_system

    torch.set_num_threads(1)
    s, _ = build_system("semid-tiger", {})
    data = leave_one_out(load_dataset("ml-100k")).train_data(load_card("ml-100k"))
    s.fit(data, seed=args.seed)
    root = Path(s.fit_info["cache_dir"])
    seqs = _train_sequences(data)
    valid = dict(zip(data.valid.user_ids.tolist(), data.valid.item_ids.tolist(), strict=False))
    users = [u for u in sorted(valid) if u in seqs]
    kept = torch.load(root / "best.pt", weights_only=True)
    last = torch.load(root / "checkpoint.pt", weights_only=True)
    mods = {n: m for n, m in s._modules().items() if n != "proj"}  # the utterance projection is not the sequence model's
    mean = {n: {k: (kept[n][k].float() + last[n][k].float()) / 2 for k in kept[n]} for n in mods}
    print(f"seed {args.seed}, {len(users)} validation users; kept state: epoch {s.fit_info.get('best_epoch')}")
    for name, state in (("kept", kept), ("last", last), ("average of the two", mean)):
        for n, m in mods.items():
            m.load_state_dict(state[n])
        print(f"{name:20s} validation nDCG@10 {s._validate(seqs, valid, users):.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
