"""Hierarchy: how close a system's predicted semantic ids come to the held-out item's id.

Systems with the ``semantic_ids`` capability implement
``semantic_id(item_id) -> tuple[int, ...]`` (level codes, coarse to fine).
For each test user the family asks for a list *without* excluding the
history, so copying history items shows up, and reports:

- ``L{d}@{k}``: 1 if one of the top-k items shares the target's first d codes
  (``L{d}@1`` is the accuracy of the top item at level d);
- ``valid_id``: share of list entries that are catalog items with an id;
- ``duplicate_rate``: share of entries repeating an earlier entry;
- ``copy_of_history``: share of entries the user has already consumed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from talkwalk_bench.tasks.base import Episode, Family, register_family
from talkwalk_bench.tasks.ranking import sample_users
from talkwalk_bench.types import Request


class HierarchyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_users: int | None = Field(
        None, ge=1, description="sample this many test users (seeded); all when unset"
    )
    levels: int = Field(3, ge=1, le=8, description="report prefix accuracy for levels 1..levels")
    exclude_history: bool = Field(
        False, description="tell the system to exclude history items (hides copying)"
    )


def prefix_hits(
    pred: Sequence[Sequence[int] | None], target: Sequence[int], depth: int, k: int
) -> float:
    """1.0 if one of the first k predicted ids agrees with ``target`` on its first ``depth`` codes."""
    want = tuple(target[:depth])
    return float(any(p is not None and tuple(p[:depth]) == want for p in pred[:k]))


def list_rates(
    items: Sequence[str], valid: set[str] | frozenset[str], history: set[str] | frozenset[str]
) -> dict[str, float | None]:
    if not items:
        return {"valid_id": None, "duplicate_rate": None, "copy_of_history": None}
    n = len(items)
    seen: set[str] = set()
    dup = 0
    for it in items:
        dup += it in seen
        seen.add(it)
    return {
        "valid_id": sum(it in valid for it in items) / n,
        "duplicate_rate": dup / n,
        "copy_of_history": sum(it in history for it in items) / n,
    }


def prefix_chance(sids: Sequence[Sequence[int]], depth: int) -> float:
    """L{depth}@1 of an item drawn uniformly from the catalog: sum over prefixes of share squared."""
    c = Counter(tuple(s[:depth]) for s in sids)
    n = sum(c.values())
    return sum((v / n) ** 2 for v in c.values()) if n else 0.0


@register_family
class HierarchyFamily(Family):
    """L1/L2/L3 prefix accuracy of predicted semantic ids, valid-id %, duplicates, copies of history."""

    name = "hierarchy"
    produces = (*(f"L{d}@K" for d in range(1, 9)), "valid_id", "duplicate_rate", "copy_of_history")
    Params = HierarchyParams

    def _has_ids(self) -> bool:
        meta = getattr(self.ctx.system, "meta", None)
        return bool(
            meta is not None
            and meta.has("semantic_ids")
            and hasattr(self.ctx.system, "semantic_id")
        )

    def _sid(self, item: str) -> tuple[int, ...] | None:
        try:
            return tuple(int(c) for c in self.ctx.system.semantic_id(item))
        except (KeyError, TypeError, ValueError):
            return None

    def episodes(self) -> list[Episode]:
        split = self.ctx.split
        held = split.test_item if self.ctx.stage == "test" else split.valid_item
        users = sample_users(list(held), self.params.max_users, self.ctx.seed)
        return [Episode(id=f"u{u}", user_id=u, data={"target": held[u]}) for u in users]

    def play(self, episodes: Sequence[Episode]) -> list[dict[str, Any]]:
        split, ds, stage = self.ctx.split, self.ctx.dataset, self.ctx.stage
        reqs = []
        for ep in episodes:
            hist = split.history(ep.user_id, stage)
            excl = frozenset(hist) if self.params.exclude_history else frozenset()
            reqs.append(
                Request(
                    user_id=ep.user_id,
                    history=hist,
                    user=ds.users.get(ep.user_id, {}),
                    exclude=excl,
                    session_id=ep.id,
                )
            )
        k_max = self.spec.k_max
        rankings = self.ctx.recommend(reqs, k_max)
        has_ids = self._has_ids()
        catalog = frozenset(ds.item_ids)
        out = []
        for ep, req, r in zip(episodes, reqs, rankings, strict=False):
            items = list(r.items[:k_max])
            pred = [self._sid(it) if it in catalog else None for it in items] if has_ids else []
            target = self._sid(ep.data["target"]) if has_ids else None
            metrics: dict[str, float | None] = {}
            for d in range(1, self.params.levels + 1):
                for k in self.spec.k:
                    metrics[f"L{d}@{k}"] = (
                        prefix_hits(pred, target, d, k) if target is not None and items else None
                    )
            valid = (
                frozenset(it for it, p in zip(items, pred, strict=False) if p is not None)
                if has_ids
                else catalog
            )
            metrics.update(list_rates(items, valid, frozenset(req.history)))
            out.append(
                {
                    "ranked": items,
                    "target": ep.data["target"],
                    "target_sid": list(target) if target else None,
                    "ranked_sids": [list(p) if p else None for p in pred],
                    "metrics": metrics,
                }
            )
        return out

    def extras(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        if not self._has_ids():
            return {"semantic_ids": "n/a: the system does not declare the semantic_ids capability"}
        sids = [s for s in (self._sid(it) for it in self.ctx.dataset.item_ids) if s is not None]
        chance = {f"L{d}@1": prefix_chance(sids, d) for d in range(1, self.params.levels + 1)}
        out: dict[str, Any] = {"chance": chance, "n_items_with_id": len(sids)}
        stats = getattr(self.ctx.system, "semantic_id_stats", None)
        if stats:
            out["semantic_id_stats"] = stats
        return out
