"""oracle-filter: popularity within the ground-truth predicate. A ceiling, never ranked.

The steerability task hands an oracle system the request's predicate in
``Request.context['oracle_predicate']`` (a ``talkwalk_bench.steering.Predicate``,
or None on turns without one); it does so only for systems whose
``SystemMeta.is_oracle`` is True. Without a predicate this is popularity.
When fewer than K unseen items satisfy the predicate, the list is filled
with the most popular other items.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from talkwalk_bench.errors import BenchError
from talkwalk_bench.registry import register_system
from talkwalk_bench.steering import ItemValues, Predicate, holds_for
from talkwalk_bench.types import ORACLE_KEY, Ranking, Request, SystemMeta, TrainData


class OracleFilter:
    def __init__(self) -> None:
        self.meta = SystemMeta(name="oracle-filter", version="1", capabilities=frozenset({"steering"}), is_oracle=True)

    def fit(self, data: TrainData, *, seed: int) -> None:
        if data.card is None:
            raise BenchError("oracle-filter needs a dataset card to check predicates; pass --card PATH")
        counts = Counter(data.train.item_ids.tolist())
        self.item_ids = data.item_ids
        self._scores = np.array([counts.get(it, 0) for it in self.item_ids], dtype=np.float64)
        keys = [(0, int(it)) if it.isdigit() else (1, it) for it in self.item_ids]
        self._order = sorted(range(len(self.item_ids)), key=lambda j: (-self._scores[j], keys[j]))
        self._values = ItemValues(data.card, data.items, data.item_ids)

    def recommend(self, requests: Sequence[Request], *, k: int) -> list[Ranking]:
        out = []
        for r in requests:
            pred = r.context.get(ORACLE_KEY) if r.context else None
            if pred is not None and not isinstance(pred, Predicate):
                raise BenchError(f"oracle-filter: context['{ORACLE_KEY}'] must be a steering Predicate, got {type(pred).__name__}")
            first, rest = [], []
            for j in self._order:
                it = self.item_ids[j]
                if it in r.exclude:
                    continue
                if pred is None or holds_for(pred, it, self._values[it]):
                    first.append(j)
                    if len(first) == k:
                        break
                elif len(rest) < k:
                    rest.append(j)
            chosen = (first + rest)[:k]
            out.append(Ranking(tuple(self.item_ids[j] for j in chosen), tuple(float(self._scores[j]) for j in chosen)))
        return out


@register_system("oracle-filter", description="Popularity within the ground-truth steering predicate (oracle ceiling)", oracle=True)
def oracle_filter() -> OracleFilter:
    return OracleFilter()
