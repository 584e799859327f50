"""How well plain ``semid``'s satisfaction head reads requests, without the rest of the model.

Usage: python benchmarks/semid_heed_probe.py [--seed N] [--steering-file FILE] [--set key=value ...]

Fits (or loads from the cache) ``semid`` on ml-100k, with ``--set`` overriding entries of
``systems.semid.heed.HEED`` (``--set steps=1500 --set "read_layers=(1.0,)"``; the head is cached per
setting), then samples *evaluation* phrasings as ``benchmarks/semid_constraint_parse.py`` does (the
built-in eval templates, or a steering file's, e.g. ``benchmarks/contrastive_phrasings.yaml``, written apart
from the project; 60 a kind; a relation to an item said with a random catalog title, shown just before).
Each is scored by the share of a top-10 list that satisfies its predicate, where the list ranks items by
popularity times the head's probability that they satisfy the request: the head's reading alone, with a
relevance that ignores the user. Prints the share per kind and overall beside the chance share.

This script is harness-side: it reads the evaluation phrasings to score the system; the system itself
never sees them (tests/test_eval_wall.py).
"""

from __future__ import annotations

import argparse
import ast
import random
from collections import defaultdict

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steering-file", default=None)
    ap.add_argument("--set", action="append", default=[], help="key=value of systems.semid.heed.HEED (a Python literal)")
    ap.add_argument("--per-kind", type=int, default=60)
    args = ap.parse_args()

    import torch

    import systems.semid.heed as H
    from talkwalk_bench.data.card import load_card
    from talkwalk_bench.data.dataset import load_dataset
    from talkwalk_bench.data.split import leave_one_out
    from talkwalk_bench.registry import build_system
    from talkwalk_bench.steering import Vocabulary
    from talkwalk_bench.tasks.steering_eval import eval_templates
    from talkwalk_bench.types import Request, Turn

    torch.set_num_threads(1)
    for kv in args.set:
        k, v = kv.split("=", 1)
        if k not in H.HEED:
            raise SystemExit(f"--set {kv}: no such setting; choose from {', '.join(sorted(H.HEED))}")
        H.HEED[k] = ast.literal_eval(v)
    ds, card = load_dataset("ml-100k"), load_card("ml-100k")
    data = leave_one_out(ds).train_data(card)
    s, _ = build_system("semid", {})
    s.fit(data, seed=args.seed)
    print("head:", s.fit_info["heed"])
    vocab = Vocabulary(card)
    n = len(s.space.item_ids)
    pop = np.bincount([s.space.index[i] for i in data.train.item_ids.tolist() if i in s.space.index], minlength=n) + 1.0
    logpop = np.log(pop / pop.sum())
    titled = [(it, t) for it, t in s._iv.titles.items() if t and it in s.space.index]
    that = f"that {vocab.noun}"
    templates, _ = eval_templates(args.steering_file)
    rng = random.Random(0)
    res: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for kind, temps in templates.items():
        cases = []
        for st in vocab.all_steers(kind):
            for t in temps:
                text = st.say(t, noun=vocab.noun)
                if kind in H.ANCHORED:
                    cases += [(text.replace(that, title), kind, it) for it, title in rng.sample(titled, 15)]
                elif st.predicate is not None:
                    cases.append((text, st.predicate, None))
        for text, pred, anchor in rng.sample(cases, min(args.per_kind, len(cases))):
            if anchor is not None:
                pred = vocab.relative(pred, anchor, s._iv[anchor], s._iv.titles.get(anchor, "")).predicate
            ok = s._mask(pred).astype(bool)
            if anchor is not None:
                ok[s.space.index[anchor]] = False
            if not ok.any():
                continue
            r = Request("0", conversation=(Turn("", shown=(anchor,) if anchor else ()), Turn(text)))
            score = logpop + s.satisfaction(r)
            if anchor is not None:
                score[s.space.index[anchor]] = -np.inf
            top = np.argsort(-score)[:10]
            res[kind].append((float(ok[top].mean()), float(ok.mean())))
    every = [v for vs in res.values() for v in vs]
    print(f"share@10 {np.mean([a for a, _ in every]):.3f} (chance {np.mean([c for _, c in every]):.3f}), n = {len(every)}")
    for kind, vs in sorted(res.items()):
        print(f"  {kind:16s} {np.mean([a for a, _ in vs]):.2f} (chance {np.mean([c for _, c in vs]):.2f}), n = {len(vs)}")


if __name__ == "__main__":
    main()
