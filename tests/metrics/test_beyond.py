"""Beyond-accuracy metrics against hand-computed fixtures and RecBole's evaluator."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from talkwalk_bench.metrics import beyond as bm

CATALOG = ("a", "b", "c", "d", "e")


def test_coverage_counts_distinct_items_in_top_k_over_catalog():
    lists = [["a", "b", "e"], ["a", "c", "d"]]
    assert bm.catalog_coverage(lists, CATALOG, 2) == pytest.approx(3 / 5)  # a, b, c
    assert bm.catalog_coverage(lists, CATALOG, 3) == pytest.approx(5 / 5)


def test_coverage_of_short_lists_counts_what_is_there():
    assert bm.catalog_coverage([["a"], []], CATALOG, 10) == pytest.approx(1 / 5)


def test_gini_matches_hand_computation():
    # exposure a=2, b=1, c=1, d=0, e=0 -> sorted [0, 0, 1, 1, 2]
    # sum_j (2j - 6) e_(j) = 0 + 0 + 0*1 + 2*1 + 4*2 = 10; / (5 * 4) = 0.5
    assert bm.gini_index([["a", "b"], ["a", "c"]], CATALOG, 2) == pytest.approx(0.5)


def test_gini_is_zero_for_equal_exposure_and_high_for_one_item():
    assert bm.gini_index([["a", "b"], ["c", "d"], ["e", "a"], ["b", "c"], ["d", "e"]], CATALOG, 2) == pytest.approx(0.0)
    # all exposure on one item of five: (2*5 - 6) * n / (5 n) = 0.8
    assert bm.gini_index([["a"]] * 4, CATALOG, 1) == pytest.approx(0.8)


def test_gini_without_any_recommendation_is_undefined():
    assert math.isnan(bm.gini_index([[], []], CATALOG, 3))


def test_item_outside_catalog_is_rejected():
    with pytest.raises(KeyError):
        bm.catalog_coverage([["zzz"]], CATALOG, 1)


FEATURES = {"a": frozenset({"x", "y"}), "b": frozenset({"y"}), "c": frozenset({"z"}), "d": frozenset(), "e": frozenset()}


def test_intra_list_diversity_is_one_minus_mean_pairwise_jaccard():
    # J(a,b) = 1/2, J(a,c) = 0, J(b,c) = 0 -> mean 1/6
    assert bm.intra_list_diversity(["a", "b", "c"], FEATURES, 3) == pytest.approx(1 - 1 / 6)
    assert bm.intra_list_diversity(["a", "b", "c"], FEATURES, 2) == pytest.approx(0.5)


def test_intra_list_diversity_skips_pairs_without_attribute_values():
    # (d, e) has no values at all: skipped; (a, d) and (a, e) are fully dissimilar
    assert bm.intra_list_diversity(["a", "d", "e"], FEATURES, 3) == pytest.approx(1.0)
    assert bm.intra_list_diversity(["d", "e"], FEATURES, 2) is None
    assert bm.intra_list_diversity(["a"], FEATURES, 10) is None


def test_identical_items_have_zero_diversity():
    assert bm.intra_list_diversity(["b", "b"], FEATURES, 2) == pytest.approx(0.0)


def test_novelty_is_mean_smoothed_self_information():
    counts = {"a": 3, "b": 1}
    catalog = ("a", "b", "c", "d")
    info = bm.self_information(counts, catalog)
    # N = 4, |I| = 4: p(a) = 4/8, p(b) = 2/8, p(c) = 1/8 -> 1, 2, 3 bits
    assert info["a"] == pytest.approx(1.0)
    assert info["b"] == pytest.approx(2.0)
    assert info["c"] == pytest.approx(3.0)
    assert bm.novelty(["a", "b", "c"], info, 3) == pytest.approx(2.0)
    assert bm.novelty([], info, 3) is None
    # the smoothed shares form a distribution over the catalog
    assert sum(2.0 ** -v for v in info.values()) == pytest.approx(1.0)


def test_average_popularity_and_tail_share():
    counts = {"a": 3, "b": 1, "c": 0, "d": 1}
    assert bm.average_popularity(["a", "b", "c"], counts, 2) == pytest.approx(2.0)
    tail = bm.long_tail_items(counts, 0.5)  # cut = 2: (c, 0), (b, 1) -- ties by id
    assert tail == frozenset({"c", "b"})
    assert bm.long_tail_items(counts, 1.5) == frozenset({"b", "c", "d"})  # count <= 1.5
    assert bm.tail_share(["a", "b", "c"], tail, 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        bm.long_tail_items(counts, 0)


def test_list_bootstrap_brackets_the_estimate_within_bounds():
    rng = np.random.default_rng(1)
    M = rng.integers(0, 50, size=(80, 5))
    est = bm.list_bootstrap(M, lambda X: bm.coverage_from_matrix(X, 50), seed=3, n_resamples=300)
    assert est.value == pytest.approx(bm.coverage_from_matrix(M, 50))
    assert 0.0 <= est.ci_low <= est.value <= est.ci_high <= 1.0
    assert est.ci_high > est.ci_low
    again = bm.list_bootstrap(M, lambda X: bm.coverage_from_matrix(X, 50), seed=3, n_resamples=300)
    assert (again.ci_low, again.ci_high) == (est.ci_low, est.ci_high)
    assert bm.list_bootstrap(M[:0], lambda X: 0.0).value is None


# --- RecBole's evaluator implementations as the peer -------------------------


class _Data:
    def __init__(self, **kw):
        self.kw = kw

    def get(self, key):
        return self.kw[key]


def _random_case(seed: int, n_users: int = 60, n_items: int = 40, k: int = 10):
    rng = np.random.default_rng(seed)
    # popular items are recommended more often, so exposure is unequal
    weights = rng.pareto(1.5, n_items) + 0.05
    weights /= weights.sum()
    mat = np.stack([rng.choice(np.arange(1, n_items + 1), size=k, replace=False, p=weights) for _ in range(n_users)])
    counts = {i: int(c) for i, c in zip(range(1, n_items + 1), rng.poisson(6, n_items), strict=True)}
    return mat, counts, n_items


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coverage_gini_popularity_tail_equal_recbole(seed):
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("recbole.evaluator.metrics")
    mat, counts, n_items = _random_case(seed)
    topk = [3, 10]
    config = {"topk": topk, "metric_decimal_place": 15, "tail_ratio": 0.3}
    data = _Data(**{"rec.items": torch.from_numpy(mat), "data.num_items": n_items, "data.count_items": Counter(counts)})
    catalog = tuple(range(1, n_items + 1))
    lists = mat.tolist()

    cov = metrics.ItemCoverage(config).calculate_metric(data)
    gini = metrics.GiniIndex(config).calculate_metric(data)
    arp = metrics.AveragePopularity(config).calculate_metric(data)
    tail = metrics.TailPercentage(config).calculate_metric(data)
    ours_tail = bm.long_tail_items(counts, 0.3)
    for k in topk:
        assert bm.catalog_coverage(lists, catalog, k) == pytest.approx(cov[f"itemcoverage@{k}"], abs=1e-9)
        assert bm.gini_index(lists, catalog, k) == pytest.approx(gini[f"giniindex@{k}"], abs=1e-9)
        assert np.mean([bm.average_popularity(lst, counts, k) for lst in lists]) == pytest.approx(arp[f"averagepopularity@{k}"], abs=1e-9)
        assert np.mean([bm.tail_share(lst, ours_tail, k) for lst in lists]) == pytest.approx(tail[f"tailpercentage@{k}"], abs=1e-9)

    # the absolute-count rule (tail_ratio > 1)
    config["tail_ratio"] = 4
    tail_abs = metrics.TailPercentage(config).calculate_metric(data)
    ours_abs = bm.long_tail_items(counts, 4)
    for k in topk:
        assert np.mean([bm.tail_share(lst, ours_abs, k) for lst in lists]) == pytest.approx(tail_abs[f"tailpercentage@{k}"], abs=1e-9)


def test_expected_pair_diversity_averages_over_all_item_pairs():
    feats = {"p": frozenset({"x"}), "q": frozenset({"x"}), "r": frozenset({"x", "y"}), "s": frozenset(), "t": frozenset()}
    # pairs with values: pq 1, pr 1/2, qr 1/2, ps 0, qs 0, rs 0, pt 0, qt 0, rt 0 (st skipped)
    expected = 1 - (1 + 0.5 + 0.5) / 9
    assert bm.expected_pair_diversity(feats, list(feats)) == pytest.approx(expected)
    brute = [bm.intra_list_diversity([a, b], feats, 2) for x, a in enumerate(feats) for b in list(feats)[x + 1:]]
    sims = [1 - d for d in brute if d is not None]
    assert bm.expected_pair_diversity(feats, list(feats)) == pytest.approx(1 - np.mean(sims))
    assert bm.expected_pair_diversity({"s": frozenset()}, ["s"]) is None
