"""Ranking: next-item prediction with full ranking over the catalog."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from talkwalk_bench.metrics.ranking import RANKING_METRICS, hit_matrix, ranking_metrics
from talkwalk_bench.tasks.base import Episode, Family, register_family
from talkwalk_bench.types import Request


class RankingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_users: int | None = Field(None, ge=1, description="sample this many test users (seeded); all when unset")
    exclude_history: bool = Field(True, description="never rank the user's earlier items; false ranks them too, "
                                  "which is RecBole's stock full-sort evaluation of sequential models")


def next_item_requests(family: Family, episodes: Sequence[Episode]) -> list[Request]:
    split, ds, stage = family.ctx.split, family.ctx.dataset, family.ctx.stage
    masked = getattr(family.params, "exclude_history", True)
    out = []
    for ep in episodes:
        hist = split.history(ep.user_id, stage)
        out.append(Request(user_id=ep.user_id, history=hist, user=ds.users.get(ep.user_id, {}),
                           exclude=frozenset(hist) if masked else frozenset(), session_id=ep.id))
    return out


def next_item_episodes(family: Family) -> list[Episode]:
    """One episode per (sampled) user with a held-out item at the task's stage; target = that item."""
    split = family.ctx.split
    held = split.test_item if family.ctx.stage == "test" else split.valid_item
    users = sample_users(list(held), family.params.max_users, family.ctx.seed)
    return [Episode(id=f"u{u}", user_id=u, data={"targets": [held[u]]}) for u in users]


def play_next_item(family: Family, episodes: Sequence[Episode], metrics: Sequence[str]):
    """Ask for top-K_max lists; returns (rankings, ranked ids, targets, per-episode ranking metric values)."""
    k_max = family.spec.k_max
    rankings = family.ctx.recommend(next_item_requests(family, episodes), k_max)
    ranked = [list(r.items[:k_max]) for r in rankings]
    targets = [ep.data["targets"] for ep in episodes]
    H, n_rel = hit_matrix(ranked, targets, k_max)
    return rankings, ranked, targets, ranking_metrics(H, n_rel, family.spec.k, metrics)


def sample_users(users: list[str], max_users: int | None, seed: int) -> list[str]:
    if max_users is None or max_users >= len(users):
        return users
    return sorted(random.Random(seed).sample(users, max_users), key=users.index)


@register_family
class RankingFamily(Family):
    """Next-item ranking over the full catalog, one episode per test user."""

    name = "ranking"
    produces = ("Hit@K", "Recall@K", "Precision@K", "nDCG@K", "MRR@K", "MAP@K")
    selects_metrics = True
    Params = RankingParams

    def metric_names(self) -> list[str]:
        return [m for m in (self.spec.metrics or RANKING_METRICS)]

    def protocol(self) -> dict[str, Any]:
        out = super().protocol()
        if not self.params.exclude_history:
            out["exclude"] = "nothing: the user's earlier items are ranked too (-O exclude_history=false)"
            out["recbole_equivalent"] = ("RecBole's stock full-sort evaluation of a sequential model: eval_args: "
                                         "{split: {LS: valid_and_test}, order: TO, mode: full}, no history mask")
        return out

    def episodes(self) -> list[Episode]:
        return next_item_episodes(self)

    def play(self, episodes: Sequence[Episode]) -> list[dict[str, Any]]:
        k_max = self.spec.k_max
        rankings, ranked, targets, values = play_next_item(self, episodes, self.metric_names())
        return [
            {"ranked": ranked[i], "targets": targets[i], "scores": [round(float(s), 6) for s in rankings[i].scores[:k_max]],
             "metrics": {name: float(v[i]) for name, v in values.items()}}
            for i in range(len(episodes))
        ]

    def extras(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        n_items = self.ctx.dataset.n_items
        # chance level of Hit@K for a uniformly random ranking of the unseen catalog
        return {"chance": {f"Hit@{k}": float(np.mean([min(1.0, k / max(1, n_items - 1))])) for k in self.spec.k}}
