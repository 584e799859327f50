"""Which prior learned from the training split places *new users* (cold_start task) best?

Scores, for the cold_start task's new users (metadata only, no history; the
targets are the spec's: all their items, or the held-out one), the nDCG@10 of fixed item rankings built
from the task's own training split, paired against popularity over the same
users at seeds 0, 1 and 2 (94 new users each):

- pop: interactions per item (the popularity system);
- last1 / last10: popularity among each training user's last 1 / last 10 items;
- rec30 / rec60: popularity with each interaction weighted by exp(-age / 30 or 60 days);
- gender / occupation: popularity within the new user's group, plus the overall popularity;
- last10+rec: last10 and rec30 shares added.

  python benchmarks/cold_start_new_user_priors.py [--out benchmarks/results/cold_start_new_user_priors.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from talkwalk_bench.data import load_dataset  # noqa: E402
from talkwalk_bench.tasks.base import FAMILIES, TaskContext  # noqa: E402
from talkwalk_bench.tasks.spec import load_spec  # noqa: E402

DAY = 86400.0


def ndcg10(rank_of, episodes, items) -> np.ndarray:
    out = []
    for e in episodes:
        top = [items[j] for j in np.argsort(-rank_of(e.user_id), kind="stable")[:10]]
        t = set(e.data["targets"])
        ideal = sum(1 / np.log2(r + 2) for r in range(min(10, len(t))))
        out.append(sum(1 / np.log2(r + 2) for r, i in enumerate(top) if i in t) / ideal)
    return np.array(out)


def priors(fam, ds) -> tuple[dict[str, np.ndarray], list]:
    td = fam.train_data()
    eps = [e for e in fam.episodes() if e.data["kind"] == "new_users"]
    tr = td.train
    items = list(ds.item_ids)
    idx = {it: i for i, it in enumerate(items)}
    pop = np.zeros(len(items))
    for i in tr.item_ids:
        pop[idx[i]] += 1
    seqs = collections.defaultdict(list)
    for u, i, t in zip(tr.user_ids, tr.item_ids, tr.timestamps, strict=True):
        seqs[u].append((t, i))
    last1, last10 = np.zeros(len(items)), np.zeros(len(items))
    for s in seqs.values():
        s.sort(key=lambda x: x[0])
        last1[idx[s[-1][1]]] += 1
        for _, i in s[-10:]:
            last10[idx[i]] += 1
    tmax = tr.timestamps.max()
    rec = {d: np.zeros(len(items)) for d in (30, 60)}
    for i, t in zip(tr.item_ids, tr.timestamps, strict=True):
        for d in rec:
            rec[d][idx[i]] += np.exp(-(tmax - t) / (d * DAY))

    def group(key: str):
        grp: dict = collections.defaultdict(lambda: np.zeros(len(items)))
        for u, i in zip(tr.user_ids, tr.item_ids, strict=True):
            grp[ds.users.get(u, {}).get(key)][idx[i]] += 1
        return lambda u: (grp[g] / grp[g].sum() if (g := ds.users.get(u, {}).get(key)) in grp else 0) + pop / pop.sum()

    fixed = {"pop": pop, "last1": last1 + 1e-3 * pop, "last10": last10 + 1e-3 * pop, "rec30": rec[30], "rec60": rec[60],
             "last10+rec": last10 / last10.sum() + rec[30] / rec[30].sum()}
    out = {k: ndcg10(lambda _u, v=v: v, eps, items) for k, v in fixed.items()}
    for key in ("gender", "occupation"):
        out[key] = ndcg10(group(key), eps, items)
    return out, eps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cold_start_new_user_priors.json"))
    args = ap.parse_args()
    spec, _ = load_spec("cold_start")
    fam_cls = FAMILIES.get(spec.family)
    ds = load_dataset("ml-100k")
    per_seed = {}
    for seed in (0, 1, 2):
        ctx = TaskContext(spec=spec, params=fam_cls.parse_params(spec), dataset=ds, seed=seed)
        per_seed[seed], eps = priors(fam_cls(ctx), ds)
        print(f"seed {seed}: {len(eps)} new users; " + ", ".join(f"{k} {v.mean():.4f}" for k, v in per_seed[seed].items()))
    rng = np.random.default_rng(0)
    report = {}
    for k in per_seed[0]:
        d = np.concatenate([per_seed[s][k] - per_seed[s]["pop"] for s in per_seed])
        boot = [rng.choice(d, len(d)).mean() for _ in range(2000)]
        lo, hi = np.percentile(boot, [2.5, 97.5])
        mean = float(np.mean(np.concatenate([per_seed[s][k] for s in per_seed])))
        report[k] = {"ndcg@10": mean, "minus_popularity": float(d.mean()), "ci_low": float(lo), "ci_high": float(hi), "n": len(d)}
        print(f"{k:12s} nDCG@10 {mean:.4f}  minus popularity {d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]  n={len(d)}")
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
