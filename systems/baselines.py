"""Sanity floors: popularity and random. Neither reads the user's words."""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

from talkwalk_bench.registry import register_system
from talkwalk_bench.types import Ranking, Request, SystemMeta, TrainData


class _CatalogRanker:
    """Shared part: a fixed score per catalog item, history excluded per request."""

    meta: SystemMeta

    def __init__(self) -> None:
        self.item_ids: tuple[str, ...] = ()
        self._order: np.ndarray = np.array([], dtype=int)
        self._scores: np.ndarray = np.array([])

    def _top(self, order: np.ndarray, scores: np.ndarray, exclude: frozenset[str], k: int) -> Ranking:
        items, vals = [], []
        for j in order:
            it = self.item_ids[j]
            if it in exclude:
                continue
            items.append(it)
            vals.append(float(scores[j]))
            if len(items) == k:
                break
        return Ranking(tuple(items), tuple(vals))


class Popularity(_CatalogRanker):
    def __init__(self) -> None:
        super().__init__()
        self.meta = SystemMeta(name="popularity", version="1", capabilities=frozenset({"scores"}))

    def fit(self, data: TrainData, *, seed: int) -> None:
        counts = Counter(data.train.item_ids.tolist())
        self.item_ids = data.item_ids
        self._index = {it: j for j, it in enumerate(self.item_ids)}
        self._scores = np.array([counts.get(it, 0) for it in self.item_ids], dtype=np.float64)
        # most interactions first; ties broken by item id (numeric when ids are numbers) for determinism
        keys = [_id_key(it) for it in self.item_ids]
        self._order = np.array(sorted(range(len(self.item_ids)), key=lambda j: (-self._scores[j], keys[j])), dtype=int)

    def recommend(self, requests: Sequence[Request], *, k: int) -> list[Ranking]:
        return [self._top(self._order, self._scores, r.exclude, k) for r in requests]

    def score_catalog(self, requests: Sequence[Request]) -> np.ndarray:
        return np.tile(self._scores, (len(requests), 1))


class RandomRanker(_CatalogRanker):
    def __init__(self, seed_offset: int = 0) -> None:
        super().__init__()
        self.seed_offset = seed_offset
        self.meta = SystemMeta(name="random", version="1", params={"seed_offset": seed_offset}, capabilities=frozenset({"scores"}))

    def fit(self, data: TrainData, *, seed: int) -> None:
        self.item_ids = data.item_ids
        self._seed = seed + self.seed_offset

    def _rng(self, r: Request) -> np.random.Generator:
        # one stream per request: (seed, session, the conversation so far). The same request gets the
        # same list in any batch order, and every new turn is a new draw; seeding by session alone
        # returned one list for every turn of a conversation, which made random look perfectly
        # reversible and blind to the text in a way a noise floor should not be.
        key = (r.session_id or r.user_id) + "".join(f"\x1f{t.utterance}\x1e{','.join(t.shown)}" for t in r.conversation)
        return np.random.default_rng([self._seed, zlib.crc32(key.encode())])

    def recommend(self, requests: Sequence[Request], *, k: int) -> list[Ranking]:
        out = []
        for r in requests:
            scores = self._rng(r).random(len(self.item_ids))
            out.append(self._top(np.argsort(-scores, kind="stable"), scores, r.exclude, k))
        return out

    def score_catalog(self, requests: Sequence[Request]) -> np.ndarray:
        return np.stack([self._rng(r).random(len(self.item_ids)) for r in requests]) if requests else np.zeros((0, len(self.item_ids)))


def _id_key(item: str) -> tuple[int, int | str]:
    return (0, int(item)) if item.isdigit() else (1, item)


@register_system("popularity", description="Most-interacted items in the training split (ties by item id)")
def popularity() -> Popularity:
    return Popularity()


@register_system("random", description="Uniformly random ranking, a new seeded draw for every request")
def random(seed_offset: int = 0) -> RandomRanker:
    return RandomRanker(seed_offset=seed_offset)
