"""Choose plain ``semid``'s satisfaction-head settings on wording the head never trained on, and never the eval's.

Usage: python benchmarks/semid_heed_dev.py [--seed N] [--config '{"steps": 6000}' ...]

Every fourth of the system's own include and exclude paraphrases (``contrastive.grounding.EXTRA``) is held
out: each row whose request contains one of them said with any value is dropped from the head's training
rows, and the held-out requests are the dev set. For each ``--config`` (entries of
``systems.semid.heed.HEED``; none: the defaults) a head is trained on the remaining rows (the reading of each
request is computed once and shared by every config; heads go to a temporary cache, not the model's) and
scored on the dev requests:

- ``stress``: the share of a top-10 list that satisfies the request, where the list ranks items by
  popularity times 20 for every item that breaks the request (a user who loves what they ask to leave out)
  times the head's probability: how hard the head pushes against the user's taste.
- ``p_break`` / ``p_keep``: the head's mean probability for the items that break / keep the request.

Only the system's own wording is read; the evaluation phrasings are not (tests/test_eval_wall.py).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", action="append", default=[], help="a JSON object of HEED settings (repeatable)")
    args = ap.parse_args()

    import torch

    import systems.semid.heed as H
    from systems.contrastive.grounding import EXTRA
    from talkwalk_bench.data.card import load_card
    from talkwalk_bench.data.dataset import load_dataset
    from talkwalk_bench.data.split import leave_one_out
    from talkwalk_bench.registry import build_system
    from talkwalk_bench.steering import Vocabulary
    from talkwalk_bench.types import Request, Turn

    torch.set_num_threads(1)
    ds, card = load_dataset("ml-100k"), load_card("ml-100k")
    data = leave_one_out(ds).train_data(card)
    s, _ = build_system("semid", {})
    s.fit(data, seed=args.seed)
    vocab = Vocabulary(card)
    dev = [(kind, st.say(t, noun=vocab.noun), st.predicate)
           for kind in ("include", "exclude") for t in EXTRA[kind][1::4] for st in vocab.all_steers(kind)]
    held = {u for _, u, _ in dev}
    rows_of = H.heed_rows
    H.heed_rows = lambda *a, **k: [r for r in rows_of(*a, **k) if not any(u in r[1] for u in held)]

    memo: dict[str, np.ndarray] = {}
    read = s.reading

    def reading(utterances, batch: int = 64):  # each request read once, whatever the config
        new = [u for u in dict.fromkeys(utterances) if u not in memo]
        if new:
            memo.update(zip(new, read(new, batch), strict=True))
        return np.stack([memo[u] for u in utterances])

    s.reading = reading
    s.fit_info["cache_dir"] = tempfile.mkdtemp(prefix="heed-dev-")
    n = len(s.space.item_ids)
    pop = np.bincount([s.space.index[i] for i in data.train.item_ids.tolist() if i in s.space.index], minlength=n) + 1.0
    logpop = np.log(pop / pop.sum())
    defaults = dict(H.HEED)
    for cfg in [json.loads(c) for c in args.config] or [{}]:
        H.HEED.clear()
        H.HEED.update({**defaults, **cfg})
        t = time.perf_counter()
        s.heed = s._fit_heed(data, args.seed)
        fit_s = time.perf_counter() - t
        s.reading([u for _, u, _ in dev])
        res: dict[str, list[tuple[float, float, float]]] = {}
        for kind, u, pred in dev:
            ok = s._mask(pred).astype(bool)
            if ok.all() or not ok.any():
                continue
            lp = s.satisfaction(Request("0", conversation=(Turn(u),)))
            top = np.argsort(-(logpop + np.log(20.0) * ~ok + lp))[:10]
            p = np.exp(lp)
            res.setdefault(kind, []).append((float(ok[top].mean()), float(p[~ok].mean()), float(p[ok].mean())))
        print(json.dumps(cfg), f"rows {s.fit_info['heed']['rows']}, fit {fit_s:.0f} s", flush=True)
        for kind, v in sorted(res.items()):
            a = np.array(v)
            print(f"  {kind:8s} stress {a[:, 0].mean():.3f}  p_break {a[:, 1].mean():.3f}  p_keep {a[:, 2].mean():.3f}  n = {len(a)}")


if __name__ == "__main__":
    main()
