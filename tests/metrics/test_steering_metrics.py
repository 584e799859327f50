"""Steering metrics against hand-computed fixtures and scipy where scipy has the same quantity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon, pdist
from scipy.special import softmax as sp_softmax
from scipy.stats import entropy as sp_entropy

from talkwalk_bench.metrics import steering as M


def test_satisfied_share_divides_by_k_even_for_short_lists():
    assert M.satisfied_share(["a", "b", "c", "d"], lambda i: i in {"a", "c"}, 4) == 0.5
    assert M.satisfied_share(["a", "b", "c", "d"], lambda i: i in {"a", "c"}, 2) == 0.5
    assert M.satisfied_share(["a"], lambda i: True, 4) == 0.25
    with pytest.raises(ValueError):
        M.satisfied_share(["a"], lambda i: True, 0)


def test_value_mass_spreads_each_item_over_its_values():
    # {A,B} gives A 1/2, {A} gives 1, {C} 0, {} 0 -> 1.5 / 4
    assert M.value_mass([{"A", "B"}, {"A"}, {"C"}, set()], "A") == pytest.approx(0.375)
    assert M.value_mass([], "A") == 0.0


def test_distribution_normalises_and_ignores_unknown_values():
    p = M.distribution([["A", "B"], ["A"], ["Z"]], ["A", "B", "C"])
    assert p.tolist() == pytest.approx([0.75, 0.25, 0.0])
    assert M.distribution([[]], ["A"]).tolist() == [0.0]


@pytest.mark.parametrize("p,q", [([0.5, 0.5, 0], [0.1, 0.2, 0.7]), ([1, 0], [0, 1]), ([0.25, 0.75], [0.25, 0.75]), ([3, 1, 0, 0], [0, 1, 1, 2])])
def test_js_divergence_is_scipy_distance_squared(p, q):
    assert M.js_divergence(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2, abs=1e-12)


def test_js_divergence_hand_values():
    assert M.js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)  # disjoint supports: 1 bit
    assert M.js_divergence([1, 1], [1, 1]) == 0.0
    assert math.isnan(M.js_divergence([0, 0], [1, 0]))


def test_steering_precision():
    assert M.steering_precision(0.3, 0.1) == pytest.approx(0.75)
    assert M.steering_precision(0.0, 0.2) == 0.0
    assert M.steering_precision(0.0, 0.0) is None
    assert M.steering_precision(float("nan"), 0.1) is None


@pytest.mark.parametrize("p", [[0.5, 0.5], [0.7, 0.2, 0.1, 0.0], [1, 2, 3, 4]])
def test_entropy_bits_matches_scipy(p):
    assert M.entropy_bits(p) == pytest.approx(sp_entropy(p, base=2))


def test_entropy_hand_values_and_reduction():
    assert M.entropy_bits([0.25] * 4) == pytest.approx(2.0)
    assert M.entropy_bits([1, 0, 0]) == 0.0
    assert M.entropy_reduction(2.0, 1.0) == pytest.approx(0.5)
    assert M.entropy_reduction(1.0, 2.0) == pytest.approx(-1.0)
    assert M.entropy_reduction(0.0, 0.0) is None


def test_softmax_matches_scipy_and_masks():
    s = np.array([1.0, 2.0, 3.0, -1.0])
    assert M.softmax(s).tolist() == pytest.approx(sp_softmax(s).tolist())
    masked = M.softmax(s, [True, False, True, False])
    assert masked[1] == 0 and masked[3] == 0
    assert masked[[0, 2]].tolist() == pytest.approx(sp_softmax([1.0, 3.0]).tolist())
    # constant scores: uniform over the kept items, entropy log2(n)
    assert M.entropy_bits(M.softmax(np.zeros(8))) == pytest.approx(3.0)


def test_jaccard_and_preference_sensitivity():
    assert M.jaccard_at_k(["1", "2", "3"], ["2", "3", "4"], 3) == pytest.approx(0.5)
    assert M.preference_sensitivity(["1", "2", "3"], ["2", "3", "4"], 3) == pytest.approx(0.5)
    assert M.preference_sensitivity(["1", "2"], ["2", "1"], 2) == 0.0  # order does not matter
    assert M.preference_sensitivity(["1", "2", "3"], ["1", "9", "8"], 1) == 0.0  # only the top-K counts
    assert M.preference_sensitivity([], [], 3) == 0.0


def test_rbo_hand_values():
    assert M.rbo(list("abcde"), list("abcde")) == pytest.approx(1.0)
    assert M.rbo(list("abc"), list("xyz")) == 0.0
    # a=[a,b], b=[b,a], p=.5: A_1 = 0, A_2 = 1; RBO = 1 * .25 + (.5/.5) * (0 * .5 + 1 * .25) = .5
    assert M.rbo(["a", "b"], ["b", "a"], p=0.5) == pytest.approx(0.5)
    # [1,2,3] vs [1,3,2], p=.9: A = 1, 1/2, 1
    p = 0.9
    expected = 1.0 * p**3 + (1 - p) / p * (1 * p + 0.5 * p**2 + 1 * p**3)
    assert M.rbo(["1", "2", "3"], ["1", "3", "2"], p=p) == pytest.approx(expected)
    # depth cuts both lists
    assert M.rbo(["1", "2", "x"], ["1", "2", "y"], p=p, depth=2) == pytest.approx(1.0)
    assert M.rbo([], []) == 1.0


def test_rbo_rewards_top_agreement_more():
    base = list("abcdefghij")
    swap_top = list("bacdefghij")
    swap_bottom = list("abcdefghji")
    assert M.rbo(base, swap_bottom) > M.rbo(base, swap_top)


def test_intra_list_diversity_hand_and_scipy():
    assert M.intra_list_diversity(np.array([[1.0, 0], [0, 1]])) == pytest.approx(1.0)
    X = np.array([[1.0, 0], [1, 0], [0, 1]])
    assert M.intra_list_diversity(X) == pytest.approx(2 / 3)  # sims 1, 0, 0
    Y = np.array([[1.0, 2, 0], [0.5, 1, 1], [3, 0, 1], [0, 0, 2]])
    assert M.intra_list_diversity(Y) == pytest.approx(pdist(Y, "cosine").mean())
    assert math.isnan(M.intra_list_diversity(np.array([[1.0, 0]])))


def test_diversity_ordering():
    assert M.diversity_ordering(0.8, 0.5, 0.2) == 1.0
    assert M.diversity_ordering(0.5, 0.5, 0.2) == 0.0  # strict
    assert M.diversity_ordering(0.2, 0.5, 0.8) == 0.0
    assert M.diversity_ordering(float("nan"), 0.5, 0.2) is None


def test_traceability():
    assert M.traceability([0, 0], [1, 1], [1, 0]) == pytest.approx(1 / math.sqrt(2))
    assert M.traceability([1, 1], [0, 0], [1, 1]) == pytest.approx(-1.0)
    assert M.traceability([1, 1], [1, 1], [1, 0]) is None  # no movement


def test_hit_and_rr():
    assert M.hit_and_rr(["a", "b", "c"], "b", 3) == (1.0, 0.5)
    assert M.hit_and_rr(["a", "b", "c"], "c", 2) == (0.0, 0.0)


def test_mean_or_none():
    assert M.mean_or_none([1.0, None, float("nan"), 3.0]) == 2.0
    assert M.mean_or_none([None]) is None
