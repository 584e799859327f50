"""Cold start: new users (metadata only, no history) and new items (never in training); first-turn relevance.

What a system sees, and when:

- fit time: ``train_data()`` is the leave-one-out training split with every
  interaction of the new users and every interaction with the new items
  removed (train and validation both), under a key of its own so no cached
  warm model is reused. The catalog (``item_ids``) and the item and user
  metadata tables are complete: new items keep their metadata, new users
  their demographics.
- request time, new users: ``Request(user_id, user=<metadata>, history=(),
  exclude=())``; no utterance unless the spec gives a neutral ``utterance``.
  The targets are the user's held-out (last) item, or with
  ``new_user_targets: all`` every item of the user up to it (none was
  trained on, and without a history there is no "next" item).
- request time, new items: an ordinary warm user whose held-out item is a
  new item; history and exclusions are the user's earlier items with the
  new items removed (a new item did not exist before), the target is the
  held-out new item.

New users are drawn among users whose held-out item is not a new item, so the
two kinds are disjoint. Metrics are named ``new_users/nDCG@10`` etc.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from talkwalk_bench.metrics.ranking import hit_matrix, ranking_metrics
from talkwalk_bench.tasks.base import Episode, Family, register_family
from talkwalk_bench.types import Interactions, Request, TrainData, Turn

Kind = Literal["new_users", "new_items"]


class ColdStartParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kinds: list[Kind] = Field(default_factory=lambda: ["new_users", "new_items"], min_length=1)
    new_user_fraction: float = Field(0.1, gt=0, lt=1, description="share of all users turned into new users (seeded)")
    new_item_fraction: float = Field(0.1, gt=0, lt=1, description="share of catalog items withheld from training (seeded)")
    max_episodes: int | None = Field(None, ge=1, description="at most this many episodes per kind (seeded)")
    utterance: str = Field("", description="a neutral opening utterance given to every request; empty: none")
    new_user_targets: Literal["held_out", "all"] = Field(
        "held_out", description="a new user's targets: their held-out item, or all their items (none was trained on)")


@dataclass(frozen=True)
class ColdSets:
    new_users: frozenset[str]
    new_items: frozenset[str]


def _rng(seed: int, tag: str) -> np.random.Generator:
    return np.random.default_rng([seed, int.from_bytes(hashlib.sha256(tag.encode()).digest()[:4], "little")])


def _filter(inter: Interactions, users: frozenset[str], items: frozenset[str]) -> Interactions:
    # set membership per row: np.isin on object arrays sorts Python strings and is far slower
    keep = np.fromiter(
        (u not in users and i not in items for u, i in zip(inter.user_ids.tolist(), inter.item_ids.tolist(), strict=True)),
        dtype=bool, count=len(inter),
    )
    idx = np.flatnonzero(keep)
    return Interactions(inter.user_ids[idx], inter.item_ids[idx], inter.timestamps[idx], inter.ratings[idx])


@register_family
class ColdStartFamily(Family):
    """Cold start: new users (metadata only) and new items (withheld from training); first-turn relevance."""

    name = "cold_start"
    produces = tuple(f"{kind}/{m}@K" for kind in ("new_users", "new_items") for m in ("Hit", "Recall", "Precision", "nDCG", "MRR", "MAP"))
    selects_metrics = True
    Params = ColdStartParams

    @classmethod
    def produced(cls, spec):
        """With no ``metrics:`` list, Hit and nDCG (``metrics:`` names are checked against ``produces`` by the spec loader)."""
        chosen = set(spec.metrics or ["Hit", "nDCG"])
        return [m for m in cls.declared_metrics() if m.stem.rsplit("/", 1)[-1] in chosen]

    def metric_names(self) -> list[str]:
        return list(self.spec.metrics or ["Hit", "nDCG"])

    @cached_property
    def held(self) -> dict[str, str]:
        split = self.ctx.split
        return split.test_item if self.ctx.stage == "test" else split.valid_item

    @cached_property
    def cold(self) -> ColdSets:
        """The withheld items and users, drawn from the seed (items first, then users)."""
        ds, p = self.ctx.dataset, self.params
        new_items: frozenset[str] = frozenset()
        if "new_items" in p.kinds:
            n = max(1, round(p.new_item_fraction * ds.n_items))
            pick = _rng(self.ctx.seed, "cold_start/new_items").choice(ds.n_items, size=n, replace=False)
            new_items = frozenset(ds.item_ids[j] for j in sorted(pick))
        new_users: frozenset[str] = frozenset()
        if "new_users" in p.kinds:
            eligible = [u for u in ds.user_ids if u in self.held and self.held[u] not in new_items]
            n = min(len(eligible), max(1, round(p.new_user_fraction * ds.n_users)))
            pick = _rng(self.ctx.seed, "cold_start/new_users").choice(len(eligible), size=n, replace=False)
            new_users = frozenset(eligible[j] for j in sorted(pick))
        return ColdSets(new_users, new_items)

    def protocol(self) -> dict[str, Any]:
        c = self.cold
        return {
            **super().protocol(),
            "exclude": "new users: nothing; new items: the user's earlier items minus new items",
            "kinds": list(self.params.kinds),
            "n_new_users": len(c.new_users),
            "n_new_items": len(c.new_items),
            "fit_sees": "training split without any interaction of new users or with new items; full catalog and metadata",
            "new_user_targets": ("every item of the user up to the held-out one" if self.params.new_user_targets == "all"
                                 else "the user's held-out item"),
            "new_user_request": "user metadata only: no history, no exclusions" + (f"; utterance {self.params.utterance!r}" if self.params.utterance else ""),
            "new_item_request": "history and exclusions = earlier items minus new items; target = held-out new item",
            "cold_sets_hash": self._cold_hash(),
        }

    def _cold_hash(self) -> str:
        payload = json.dumps({"users": sorted(self.cold.new_users), "items": sorted(self.cold.new_items)})
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def train_data(self) -> TrainData:
        base = super().train_data()
        c = self.cold
        return TrainData(
            key=hashlib.sha256(f"{base.key}/cold_start/{self._cold_hash()}".encode()).hexdigest()[:16],
            dataset_name=base.dataset_name,
            train=_filter(base.train, c.new_users, c.new_items),
            valid=_filter(base.valid, c.new_users, c.new_items),
            items=base.items,
            users=base.users,
            item_ids=base.item_ids,
            card=base.card,
        )

    def episodes(self) -> list[Episode]:
        c, ds = self.cold, self.ctx.dataset
        out: list[Episode] = []
        for kind in self.params.kinds:
            if kind == "new_users":
                users = [u for u in ds.user_ids if u in c.new_users]
            else:
                users = [u for u in ds.user_ids if u in self.held and self.held[u] in c.new_items and u not in c.new_users]
            if self.params.max_episodes is not None and len(users) > self.params.max_episodes:
                pick = _rng(self.ctx.seed, f"cold_start/{kind}/episodes").choice(len(users), size=self.params.max_episodes, replace=False)
                users = [users[j] for j in sorted(pick)]
            out += [Episode(id=f"{kind}/u{u}", user_id=u, data={"kind": kind, "targets": self._targets(kind, u)})
                    for u in users]
        return out

    def _targets(self, kind: str, user: str) -> list[str]:
        if kind == "new_users" and self.params.new_user_targets == "all":
            # every item of the user up to the held-out one (a new user has no past to order them by), new items
            # left out so the kind measures user cold start alone
            hist = (i for i in self.ctx.split.history(user, self.ctx.stage) if i not in self.cold.new_items)
            return list(dict.fromkeys([*hist, self.held[user]]))
        return [self.held[user]]

    def request(self, ep: Episode) -> Request:
        ds = self.ctx.dataset
        conv = (Turn(self.params.utterance),) if self.params.utterance else ()
        user = ds.users.get(ep.user_id, {})
        if ep.data["kind"] == "new_users":
            return Request(user_id=ep.user_id, user=user, conversation=conv, session_id=ep.id)
        hist = tuple(i for i in self.ctx.split.history(ep.user_id, self.ctx.stage) if i not in self.cold.new_items)
        return Request(user_id=ep.user_id, history=hist, user=user, conversation=conv, exclude=frozenset(hist), session_id=ep.id)

    def play(self, episodes: Sequence[Episode]) -> list[dict[str, Any]]:
        k_max = self.spec.k_max
        requests = [self.request(ep) for ep in episodes]
        rankings = self.ctx.recommend(requests, k_max)
        ranked = [list(r.items[:k_max]) for r in rankings]
        targets = [ep.data["targets"] for ep in episodes]
        H, n_rel = hit_matrix(ranked, targets, k_max)
        values = ranking_metrics(H, n_rel, self.spec.k, self.metric_names())
        return [
            {
                "kind": ep.data["kind"], "ranked": ranked[i], "targets": targets[i],
                "n_candidates": self.ctx.dataset.n_items - len(requests[i].exclude),
                "metrics": {f"{ep.data['kind']}/{name}": float(v[i]) for name, v in values.items()},
            }
            for i, ep in enumerate(episodes)
        ]

    def extras(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        chance: dict[str, float] = {}
        for kind in self.params.kinds:
            cands = [r["n_candidates"] for r in records if r.get("kind") == kind]
            if not cands:
                continue
            rel = [len(r["targets"]) for r in records if r.get("kind") == kind]
            for k in self.spec.k:
                # Hit@K and Precision@K of a uniformly random ranking of the candidates
                chance[f"{kind}/Hit@{k}"] = float(np.mean([_chance_hit(k, n, t) for n, t in zip(cands, rel, strict=True)]))
                chance[f"{kind}/Precision@{k}"] = float(np.mean([min(t, n) / max(1, n) for n, t in zip(cands, rel, strict=True)]))
        return {
            "chance": chance,
            "new_users": sorted(self.cold.new_users, key=_id_key),
            "new_items": sorted(self.cold.new_items, key=_id_key),
        }


def _chance_hit(k: int, n: int, t: int) -> float:
    """P(at least one of ``t`` relevant items among the first ``k`` of ``n`` candidates in random order)."""
    if t <= 0:
        return 0.0
    miss = 1.0
    for j in range(min(k, n)):
        miss *= max(0.0, (n - t - j) / (n - j))
    return 1.0 - miss


def _id_key(x: str) -> tuple[int, int | str]:
    return (0, int(x)) if x.isdigit() else (1, x)
