"""``semid-tiger``: does an ensemble of decoders over the same ids beat the single decoder, on validation?

Usage: python benchmarks/semid_tiger_ensemble.py [--seed N] [--members K] [--beam B]

Fits (or loads from the cache) K decoders of ``semid-tiger`` that share the
ids, the teacher and the training rows and differ only in their initial
weights and batch order (member ``k`` trains with seed ``seed + 1009 * k``;
member 0 is the default ``semid-tiger`` and shares its cache entry), then
scores on
*validation* (nDCG@10 of the held-out validation item, history masked) over
every validation user, and apart over the users that training did not use to
pick its epoch (all but the first ``val_users``):

- the single decoder as it decodes (beam search; ``--beam``, the default's width unless given);
- each member, every catalog item scored exactly (``score_catalog``);
- the ensemble: the mean of the members' probabilities, and the mean of their
  log-probabilities.

Paired differences against the single decoder with 95 % bootstrap CIs.
Lists without a request (the sequence model). No test item is read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MEMBER_SEED = 1009


def member_class() -> type:
    from systems.semid.scratch import ScratchDecoder

    class Member(ScratchDecoder):
        """``semid-tiger`` with its weights and batch order from ``seed + MEMBER_SEED * member``; ids,
        teacher and steering rows keep the data seed. ``member`` > 0 is in the cache key (its own model)."""

        def __init__(self, name: str, member: int = 0, **params: object) -> None:
            super().__init__(name, **params)
            self.member = int(member)
            if self.member:
                self.p["member"] = self.member

        def _shifted(self, fn, *args):
            seed = self.seed
            self.seed = seed + MEMBER_SEED * self.member
            try:
                return fn(*args)
            finally:
                self.seed = seed

        def _new_model(self, vocab: int):
            return self._shifted(super()._new_model, vocab)

        def _train(self, *args):
            return self._shifted(super()._train, *args)

    return Member


def parse_members(text: str) -> int:
    """``--members``: an ensemble needs 2 or more; one line that says so otherwise."""
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 2:
        raise argparse.ArgumentTypeError(f"--members {text!r}: an ensemble needs an integer of 2 or more (member 0 is the single decoder)")
    return k


def mixture(lps: list[np.ndarray]) -> np.ndarray:
    """Log of the mean of the members' catalog distributions (each member's scores softmaxed over the catalog)."""
    from scipy.special import log_softmax, logsumexp

    return logsumexp(np.stack([log_softmax(lp, axis=1) for lp in lps]), axis=0) - np.log(len(lps))


def validation_requests(data: Any) -> tuple[list[Any], list[str]]:
    """One request per validation user (its train history, masked) and its held-out validation item, in user order."""
    from systems.semid.system import _train_sequences
    from talkwalk_bench.types import Request

    seqs = _train_sequences(data)
    valid = dict(zip(data.valid.user_ids.tolist(), data.valid.item_ids.tolist(), strict=False))
    users = [u for u in sorted(valid) if u in seqs]
    return ([Request(user_id=u, history=tuple(seqs[u]), exclude=frozenset(seqs[u])) for u in users],
            [valid[u] for u in users])


def ndcg_at_10(lists: list[list[str]], targets: list[str]) -> np.ndarray:
    """Per-user nDCG@10 of one held-out item each, with the harness's code."""
    from talkwalk_bench.metrics.ranking import hit_matrix, ranking_metrics

    H, n_rel = hit_matrix(lists, [[t] for t in targets], 10)
    return ranking_metrics(H, n_rel, [10], ["nDCG"])["nDCG@10"]


def report(scores: dict[str, np.ndarray], base: str, picked: int, head: str) -> None:
    """Each row's mean nDCG@10 and paired difference to ``base`` [95 % CI], over all users and over those after
    the first ``picked`` (the users training did not use to pick its epoch)."""
    from talkwalk_bench.metrics.stats import paired_difference

    held = np.arange(len(scores[base])) >= picked
    print(f"\n{head}; validation nDCG@10, all {len(held)} users and the {int(held.sum())} not used to pick epochs; "
          f"paired difference to the {base} [95 % CI]")
    for name, s in scores.items():
        d, lo, hi = paired_difference(s, scores[base])
        dh, loh, hih = paired_difference(s[held], scores[base][held])
        print(f"{name:34s} {s.mean():.4f} ({d:+.4f} [{lo:+.4f}, {hi:+.4f}])   "
              f"{s[held].mean():.4f} ({dh:+.4f} [{loh:+.4f}, {hih:+.4f}])")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--members", type=parse_members, default=2)
    ap.add_argument("--beam", type=int, default=0, help="beam width of the single decoder's lists (0: its default)")
    args = ap.parse_args(argv)
    import torch

    from systems.sasrec.model import top_k
    from talkwalk_bench.data.card import load_card
    from talkwalk_bench.data.dataset import load_dataset
    from talkwalk_bench.data.split import leave_one_out
    from talkwalk_bench.registry import system_defaults

    torch.set_num_threads(1)
    params = system_defaults("semid-tiger")
    if args.beam:
        params["beam"] = args.beam  # inference only: the same trained models
    Member = member_class()  # noqa: N806
    data = leave_one_out(load_dataset("ml-100k")).train_data(load_card("ml-100k"))
    members = []
    for k in range(args.members):
        m = Member("semid-tiger", k, **params)
        m.fit(data, seed=args.seed)
        members.append(m)
        print(f"member {k}: best epoch {m.fit_info.get('best_epoch')}, "
              f"validation nDCG@10 on its {params['val_users']} users {m.fit_info.get('best_val_ndcg@10'):.4f}", flush=True)
    reqs, targets = validation_requests(data)
    item_ids = members[0].item_ids
    lists = {"single decoder (beam search)": [list(r.items) for r in members[0].recommend(reqs, k=10)]}
    lps = [m.score_catalog(reqs, text=False) for m in members]
    ranked = {f"member {k}, exact": lp for k, lp in enumerate(lps)}
    ranked["ensemble, mean probability"] = mixture(lps)
    ranked["ensemble, mean log-probability"] = sum(lps) / len(lps)
    for name, sc in ranked.items():
        lists[name] = [list(top_k(item_ids, row, r.exclude, 10).items) for row, r in zip(sc, reqs, strict=True)]
    scores = {name: ndcg_at_10(ls, targets) for name, ls in lists.items()}
    report(scores, "single decoder (beam search)", int(params["val_users"]), f"seed {args.seed}, {args.members} members")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
