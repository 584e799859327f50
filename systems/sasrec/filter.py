"""The traditional pipeline: a sequential ranker, then attribute filters read off the utterance.

SASRec ranks the whole catalog from the history; the keyword parser turns the
current utterance into constraints through the dataset card; items that keep
every hard constraint come first, items that only carry a softened attribute
("less horror") next, and items that break a hard constraint last, each group
in SASRec's order. So the list is filtered when enough items qualify, and
back-filled from SASRec's order when they do not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from systems.keyword_filter import Constraint, ItemMatcher, Lexicon, Parsed, merge_ranges, parse
from systems.sasrec.model import SASRecSystem, top_k
from talkwalk_bench.data.card import DatasetCard, load_card
from talkwalk_bench.errors import BenchError
from talkwalk_bench.types import Ranking, Request, SystemMeta, TrainData

HARD = ("include", "exclude", "range")


class SASRecFilter(SASRecSystem):
    name = "sasrec-filter"

    def __init__(self, extra: dict[str, Any] | None = None, **args: Any) -> None:
        super().__init__(extra, **args)
        self.meta = SystemMeta(name=self.name, version=self.meta.version, params=self.meta.params,
                               capabilities=frozenset({"scores", "steering", "explanations"}))
        self.lexicon: Lexicon | None = None
        self.matcher: ItemMatcher | None = None

    def fit(self, data: TrainData, *, seed: int) -> None:
        card = data.card or _card_or_fail(data.dataset_name)
        self.lexicon = Lexicon(card)
        self.matcher = ItemMatcher(card, data.items, data.item_ids)
        self._index = {it: j for j, it in enumerate(data.item_ids)}
        super().fit(data, seed=seed)

    def constraints(self, request: Request) -> list[Constraint]:
        """Hard and soft constraints of the current utterance, relative ones resolved."""
        if self.lexicon is None:
            raise BenchError("sasrec-filter: recommend() called before fit(); fit the system first")
        parsed: Parsed = merge_ranges(parse(request.utterance, self.lexicon))
        out = list(parsed.constraints)
        for attribute, direction, phrase in parsed.relative:
            ref = self._reference(request, attribute, direction)
            if math.isnan(ref):
                continue
            if direction == "newer":
                out.append(Constraint(attribute, "range", low=math.floor(ref) + 1, phrase=phrase))
            else:
                out.append(Constraint(attribute, "range", high=math.ceil(ref) - 1, phrase=phrase))
        return out

    def _reference(self, request: Request, attribute: str, direction: str) -> float:
        """What "newer"/"older" is relative to: newer (older) than every item shown last turn,
        or, before anything was shown, than the median of the last ten items watched."""
        assert self.matcher is not None
        shown = request.conversation[-2].shown if len(request.conversation) >= 2 else ()
        pool = list(shown) or list(request.history[-10:])
        vals = [self.matcher.ordinal_value(attribute, self._index[i]) for i in pool if i in self._index]
        vals = [v for v in vals if not math.isnan(v)]
        if not vals:
            return math.nan
        if shown:
            return max(vals) if direction == "newer" else min(vals)
        return float(np.median(vals))

    def _tiers(self, constraints: list[Constraint]) -> np.ndarray:
        """0 keeps every constraint, 1 carries a softened attribute, 2 breaks a hard constraint."""
        assert self.matcher is not None
        n = len(self.item_ids)
        tier = np.zeros(n, dtype=np.int8)
        for c in constraints:
            has = self.matcher.mask(c)
            if c.kind in ("include", "range"):
                tier[~has] = 2
            elif c.kind == "exclude":
                tier[has] = 2
            elif c.kind == "demote":
                tier[has & (tier < 1)] = 1
        return tier

    def score_catalog(self, requests: Sequence[Request]) -> np.ndarray:
        base = super().score_catalog(requests).astype(np.float64)
        for r, req in enumerate(requests):
            cons = self.constraints(req)
            if cons:
                base[r] = _apply(base[r], self._tiers(cons))
        return base

    def recommend(self, requests: Sequence[Request], *, k: int) -> list[Ranking]:
        base = SASRecSystem.score_catalog(self, requests).astype(np.float64)
        out = []
        for r, req in enumerate(requests):
            cons = self.constraints(req)
            if not cons:
                out.append(top_k(self.item_ids, base[r], req.exclude, k))
                continue
            tier = self._tiers(cons)
            ranking = top_k(self.item_ids, _apply(base[r], tier), req.exclude, k)
            n_pass = int(np.sum((tier == 0) & np.isfinite(base[r])))
            wishes = "; ".join(f"{c.kind} {c.attribute} '{c.phrase}'" for c in cons)
            out.append(Ranking(ranking.items, ranking.scores,
                               explanation=f"SASRec's ranking filtered by: {wishes} ({n_pass} catalog items keep all of it)",
                               trace={"constraints": [c.as_dict() for c in cons], "n_pass": n_pass}))
        return out


def _apply(scores: np.ndarray, tier: np.ndarray) -> np.ndarray:
    """Shift each tier below the one before it, keeping SASRec's order within a tier."""
    finite = np.isfinite(scores)
    if not finite.any():
        return scores
    span = float(scores[finite].max() - scores[finite].min()) + 1.0
    return np.where(finite, scores - tier * span, scores)


def _card_or_fail(dataset_name: str) -> DatasetCard:
    try:
        return load_card(dataset_name)
    except BenchError as exc:
        raise BenchError(f"sasrec-filter reads attribute words through a dataset card: {exc}") from None
