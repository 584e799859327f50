"""Beyond accuracy: coverage, exposure Gini, intra-list diversity, novelty and popularity of next-item lists."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from talkwalk_bench.errors import SpecError
from talkwalk_bench.metrics import beyond as bm
from talkwalk_bench.metrics.stats import Estimate
from talkwalk_bench.tasks.base import Episode, Family, register_family
from talkwalk_bench.tasks.ranking import next_item_episodes, play_next_item


class BeyondParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_users: int | None = Field(None, ge=1, description="sample this many test users (seeded); all when unset")
    attribute: str | None = Field(None, description="card item attribute for intra-list diversity; the first multi-valued one when unset")
    tail_ratio: float = Field(0.8, gt=0, description="long tail: this share of least-interacted items (<= 1) or items with at most this many interactions (> 1)")


@register_family
class BeyondFamily(Family):
    """Beyond-accuracy: coverage, Gini, intra-list diversity, novelty, popularity of next-item lists."""

    name = "beyond"
    produces = ("coverage@K", "Gini@K", "ILD@K", "novelty@K", "ARP@K", "tail_share@K", "Hit@K", "nDCG@K")
    Params = BeyondParams
    needs_card = True

    def protocol(self) -> dict[str, Any]:
        return {
            **super().protocol(),
            "lists": "one next-item list per test user, the user's earlier items excluded",
            "diversity_attribute": self.attribute,
            "popularity": "interaction counts in the training split",
            "novelty_smoothing": "p(i) = (c(i) + 1) / (N + |I|)",
            "tail_ratio": self.params.tail_ratio,
            "run_level_ci": "bootstrap over lists, re-centred on the estimate",
        }

    @cached_property
    def attribute(self) -> str:
        attrs = self.ctx.card.item.attributes
        name = self.params.attribute
        if name is None:
            multi = [n for n, a in attrs.items() if a.kind == "multi_categorical"]
            cats = [n for n, a in attrs.items() if a.kind == "categorical"]
            if not multi and not cats:
                raise SpecError(f"{self.spec.name}: episodes.attribute: the card has no categorical item attribute for intra-list diversity; name one")
            return (multi or cats)[0]
        if name not in attrs or attrs[name].kind not in ("multi_categorical", "categorical"):
            ok = [n for n, a in attrs.items() if a.kind in ("multi_categorical", "categorical")]
            raise SpecError(f"{self.spec.name}: episodes.attribute: '{name}' is not a categorical item attribute of the card; use one of {', '.join(ok)}")
        return name

    @cached_property
    def features(self) -> dict[str, frozenset]:
        attr = self.ctx.card.item.attributes[self.attribute]
        out = {}
        for it, row in self.ctx.dataset.items.items():
            v = attr.value_of(row)
            out[it] = v if isinstance(v, frozenset) else (frozenset() if v is None else frozenset([v]))
        return out

    @cached_property
    def counts(self) -> dict[str, int]:
        pop = self.ctx.split.item_popularity
        return {it: int(pop.get(it, 0)) for it in self.ctx.dataset.item_ids}

    @cached_property
    def info(self) -> dict:
        return bm.self_information(self.counts, self.ctx.dataset.item_ids)

    @cached_property
    def tail(self) -> frozenset:
        return bm.long_tail_items(self.counts, self.params.tail_ratio)

    def episodes(self) -> list[Episode]:
        return next_item_episodes(self)

    def play(self, episodes: Sequence[Episode]) -> list[dict[str, Any]]:
        _, ranked, targets, acc = play_next_item(self, episodes, ["Hit", "nDCG"])
        out = []
        for i, lst in enumerate(ranked):
            m: dict[str, float | None] = {name: float(v[i]) for name, v in acc.items()}
            for k in self.spec.k:
                m[f"ILD@{k}"] = bm.intra_list_diversity(lst, self.features, k)
                m[f"novelty@{k}"] = bm.novelty(lst, self.info, k)
                m[f"ARP@{k}"] = bm.average_popularity(lst, self.counts, k)
                m[f"tail_share@{k}"] = bm.tail_share(lst, self.tail, k)
            out.append({"ranked": lst, "targets": targets[i], "metrics": m})
        return out

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Estimate]:
        item_ids = self.ctx.dataset.item_ids
        index = {it: j for j, it in enumerate(item_ids)}
        lists = [r["ranked"] for r in records if r.get("status", "ok") == "ok"]
        n_items = len(item_ids)
        boot = self.spec.bootstrap
        out: dict[str, Estimate] = {}
        for k in self.spec.k:
            M = bm.encode_lists(lists, index, k)
            for name, fn in (("coverage", bm.coverage_from_matrix), ("Gini", bm.gini_from_matrix)):
                out[f"{name}@{k}"] = bm.list_bootstrap(
                    M, lambda X, fn=fn: fn(X, n_items), seed=self.ctx.seed,
                    n_resamples=boot.n_resamples, confidence=boot.confidence,
                )
        return out

    def extras(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        n_items = self.ctx.dataset.n_items
        n_tail = len(self.tail)
        chance: dict[str, float] = {}
        ild = bm.expected_pair_diversity(self.features, self.ctx.dataset.item_ids)
        for k in self.spec.k:
            if ild is not None:
                chance[f"ILD@{k}"] = ild
            chance[f"Hit@{k}"] = min(1.0, k / max(1, n_items - 1))
            # a uniformly random list draws tail items at the catalog's tail rate
            chance[f"tail_share@{k}"] = n_tail / n_items
            chance[f"novelty@{k}"] = float(np.mean(list(self.info.values())))
            chance[f"ARP@{k}"] = float(np.mean(list(self.counts.values())))
        return {"chance": chance, "n_tail_items": n_tail, "n_catalog_items": n_items}
