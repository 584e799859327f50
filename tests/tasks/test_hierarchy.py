"""Hierarchy family: prefix accuracy, valid ids, duplicates, copies of history."""

from __future__ import annotations

from pathlib import Path

import pytest

from talkwalk_bench.data.dataset import load_dataset
from talkwalk_bench.tasks.base import TaskContext
from talkwalk_bench.tasks.hierarchy import HierarchyFamily, list_rates, prefix_chance, prefix_hits
from talkwalk_bench.tasks.runner import RunConfig, run
from talkwalk_bench.tasks.spec import load_spec
from talkwalk_bench.types import Ranking, SystemMeta

SPEC = """
name: hierarchy-small
family: hierarchy
dataset: ml-100k
k: [1, 3]
main_score: L1@1
episodes: {max_users: 25, levels: 3}
bootstrap: {n_resamples: 100}
"""


def test_prefix_hits_hand_computed():
    pred = [(1, 2, 3, 0), None, (1, 5, 3, 0), (2, 2, 3, 0)]
    target = (1, 5, 0, 0)
    assert prefix_hits(pred, target, 1, 1) == 1.0
    assert prefix_hits(pred, target, 2, 1) == 0.0
    assert prefix_hits(pred, target, 2, 3) == 1.0
    assert prefix_hits(pred, target, 3, 4) == 0.0


def test_list_rates_hand_computed():
    r = list_rates(["a", "b", "a", "z", "h"], valid={"a", "b", "h"}, history={"h", "a"})
    assert r == {"valid_id": 4 / 5, "duplicate_rate": 1 / 5, "copy_of_history": 3 / 5}
    assert list_rates([], set(), set())["valid_id"] is None


def test_prefix_chance_hand_computed():
    sids = [(0, 0), (0, 1), (1, 0), (1, 0)]
    assert prefix_chance(sids, 1) == pytest.approx(0.5)
    assert prefix_chance(sids, 2) == pytest.approx(0.25**2 * 2 + 0.5**2)


class FakeIds:
    """Ids derived from the item number; always answers the same list."""

    meta = SystemMeta(name="fake-ids", capabilities=frozenset({"semantic_ids"}))
    LIST = ("1", "1", "no-such-item", "6")

    def semantic_id(self, item: str) -> tuple[int, ...]:
        n = int(item)
        return (n % 4, n % 8, n)

    def recommend(self, requests, *, k):
        return [Ranking(self.LIST[:k]) for _ in requests]


def test_family_scores_a_fixed_list_against_each_target(tmp_path: Path):
    p = tmp_path / "h.yaml"
    p.write_text(SPEC)
    spec, _ = load_spec(str(p))
    fam_cls = HierarchyFamily
    ctx = TaskContext(
        spec=spec,
        params=fam_cls.parse_params(spec),
        dataset=load_dataset("ml-100k"),
        seed=0,
        system=FakeIds(),
    )
    fam = fam_cls(ctx)
    eps = fam.episodes()
    recs = fam.play(eps)
    assert len(recs) == 25
    for ep, rec in zip(eps, recs, strict=False):
        t = int(ep.data["target"])
        hist = set(ctx.split.history(ep.user_id, "test"))
        m = rec["metrics"]
        assert m["L1@1"] == float(t % 4 == 1)
        assert m["L2@1"] == float(t % 8 == 1)
        assert m["L3@1"] == float(t == 1)
        assert m["L1@3"] == float(
            t % 4 in (1,)
        )  # "no-such-item" has no id; 6 % 4 == 2 only counts from k=4
        assert m["valid_id"] == pytest.approx(2 / 3)
        assert m["duplicate_rate"] == pytest.approx(1 / 3)
        assert m["copy_of_history"] == pytest.approx((2 * ("1" in hist)) / 3)
    extras = fam.extras(recs)
    assert 0 < extras["chance"]["L3@1"] < extras["chance"]["L2@1"] < extras["chance"]["L1@1"] <= 1


def test_system_without_ids_gets_na_prefix_metrics_but_list_rates(tmp_path: Path):
    p = tmp_path / "h.yaml"
    p.write_text(SPEC)
    result = run(
        RunConfig(system="popularity", task=str(p), output=tmp_path / "pop.json", progress=False)
    )
    assert result.status == "success", result.error
    assert result.metrics["valid_id"].value == 1.0
    assert result.metrics["duplicate_rate"].value == 0.0
    # the history is not excluded, so popular items the users have seen come back
    assert result.metrics["copy_of_history"].value > 0.3
    assert result.metrics["L1@1"].value is None
