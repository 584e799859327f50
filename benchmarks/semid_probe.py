"""Short training probes of ``semid`` (whole-sequence recipe): validation nDCG@10 at equal training time.

Usage: TALKWALK_CACHE_DIR=DIR python benchmarks/semid_probe.py --minutes 7 [-S key=value ...]
           [--share ~/.cache/talkwalk-bench] [--out probe.json]

Trains ``semid`` on ml-100k (seed 0) with the given arguments in the cache
folder ``DIR`` and stops once ``--minutes`` of training CPU time (process time over
all threads, validation not counted; robust to other jobs sharing the
cores) are spent. Before that, the base model, the item embeddings, the
semantic ids and the ``semid-tiger`` teacher are linked into ``DIR`` from
``--share`` so they are not rebuilt. The recipe's own validation curve
(``-S val_every``, ``-S val_users``) is printed, and at the end the same
validation users are ranked once more through ``recommend`` (the inference
path, prompt built by the system) so that a train/inference mismatch shows.
Writes the curve and both final scores to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def _value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def link_shared(cache: Path, share: Path) -> None:
    """Symlink what does not depend on the probed arguments (models, embeddings, ids, the teacher)."""
    for rel in ("models", "semid/embeddings", "semid/ids", "semid-tiger"):
        src, dst = share / rel, cache / rel
        if src.exists() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", default="semid")
    ap.add_argument("-S", action="append", default=[])
    ap.add_argument("--minutes", type=float, default=7.0, help="training budget in CPU-minutes of this process (validation excluded)")
    ap.add_argument("--share", default=str(Path.home() / ".cache" / "talkwalk-bench"))
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    cache = Path(os.environ.get("TALKWALK_CACHE_DIR", ""))
    if not str(cache) or cache.resolve() == Path(args.share).resolve():
        raise SystemExit("set TALKWALK_CACHE_DIR to a probe folder of its own")
    cache.mkdir(parents=True, exist_ok=True)
    link_shared(cache, Path(args.share))

    from talkwalk_bench.data.card import load_card
    from talkwalk_bench.data.dataset import load_dataset
    from talkwalk_bench.data.split import leave_one_out
    from talkwalk_bench.registry import build_system
    from talkwalk_bench.types import Request

    over = {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.S)}
    split = leave_one_out(load_dataset("ml-100k"))
    data = split.train_data(load_card("ml-100k"))
    system, _ = build_system(args.system, over)
    budget = args.minutes * 60
    system.p["on_step"] = lambda step, done, n, rec: rec["cpu_seconds"] >= budget
    t0 = time.perf_counter()
    system.fit(data, seed=0)
    wall = time.perf_counter() - t0
    tr = system.fit_info.get("training", {})

    # the same validation users, ranked through the inference path
    from systems.semid.seq import ndcg_at_10
    from systems.semid.system import _train_sequences

    seqs = _train_sequences(data)
    valid = dict(zip(data.valid.user_ids.tolist(), data.valid.item_ids.tolist(), strict=False))
    users = [u for u in sorted(valid) if u in seqs][: int(system.p.get("val_users", 150))]
    reqs = [Request(user_id=u, history=tuple(seqs[u]), exclude=frozenset(seqs[u])) for u in users]
    ranked = [r.items for r in system.recommend(reqs, k=10)]
    final = ndcg_at_10(ranked, [valid[u] for u in users])
    hit = sum(valid[u] in r for u, r in zip(users, ranked, strict=True)) / max(1, len(users))
    out = {"args": over, "minutes": args.minutes, "wall_seconds": round(wall, 1), "curve": tr.get("curve", []),
           "training_seconds": tr.get("seconds"), "sequence_batches_done": tr.get("steps"), "sequence_batches_epoch": tr.get("sequence_batches"),
           "loss_last20": tr.get("loss_last20"), "final_val_ndcg@10_recommend": final, "final_val_hit@10_recommend": hit,
           "n_val_users": len(users)}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
