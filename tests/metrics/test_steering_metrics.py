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
    assert M.steering_precision(0.3, 0.1) == pytest.approx(0.5)
    assert M.steering_precision(0.2, 0.2) == 0.0  # the requested attribute moved no more than the others
    assert M.steering_precision(0.0, 0.2) == -1.0
    assert M.steering_precision(0.2, 0.0) == 1.0
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


def test_jaccard_and_list_change():
    assert M.jaccard_at_k(["1", "2", "3"], ["2", "3", "4"], 3) == pytest.approx(0.5)
    assert M.list_change(["1", "2", "3"], ["2", "3", "4"], 3) == pytest.approx(0.5)
    assert M.list_change(["1", "2"], ["2", "1"], 2) == 0.0  # order does not matter
    assert M.list_change([], [], 3) == 0.0


def test_preference_sensitivity_is_directional():
    # each list satisfies its own request more than the other's: (0.8 - 0.2 + 0.6 - 0.4) / 2
    assert M.preference_sensitivity(0.8, 0.2, 0.6, 0.4) == pytest.approx(0.4)
    # the same list for both requests (a text-ignoring system): exactly 0, whatever it holds
    assert M.preference_sensitivity(0.3, 0.3, 0.7, 0.7) == 0.0
    # lists that differ but swap the requests: negative, although 1 - Jaccard would be 1
    assert M.preference_sensitivity(0.1, 0.9, 0.2, 0.8) < 0


def test_chance_normalised_is_floored_single_slope():
    assert M.chance_normalised(1.0, 0.9) == pytest.approx(1.0)
    assert M.chance_normalised(0.9, 0.9) == 0.0
    assert M.chance_normalised(0.85, 0.9) == pytest.approx(-0.5)
    assert M.chance_normalised(0.16, 0.9) == -1.0  # -7.4 unfloored
    assert M.chance_normalised(0.55, 0.1) == pytest.approx(0.5)
    assert M.chance_normalised(0.0, 0.1) == pytest.approx(-0.1 / 0.9)  # below chance on a rare kind costs little
    assert M.chance_normalised(0.5, 1.0) is None


def test_macro_chance_normalised_averages_kinds_not_requests():
    # kind 0: 3 episodes x 1 request at chance 0.5, shares 1, 1, 1 -> +1
    # kind 1: 1 episode x 2 requests at chance 0.9, shares 0.95 each -> +0.5
    S = np.array([[1.0, 1.9], [1.0, 0.0], [1.0, 0.0]])
    C = np.array([[0.5, 1.8], [0.5, 0.0], [0.5, 0.0]])
    N = np.array([[1, 2], [1, 0], [1, 0]])
    value, lo, hi, per_kind = M.macro_chance_normalised(S, C, N, n_resamples=200)
    assert value == pytest.approx(0.75)  # pooled over the 5 requests it would be 0.8
    assert per_kind == {0: pytest.approx(1.0), 1: pytest.approx(0.5)}
    assert lo <= value <= hi


def test_macro_chance_normalised_noise_is_zero_within_its_ci():
    # random top-10 lists, request by request, for kinds as rare and as common as ml-100k's, some with few episodes
    chances = np.array([0.03, 0.3, 0.92, 0.96])
    sizes = np.array([200, 200, 40, 12])  # episodes with a request of each kind
    covered, values = 0, []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        S, C, N = np.zeros((200, 4)), np.zeros((200, 4)), np.zeros((200, 4))
        for j, (c, n) in enumerate(zip(chances, sizes, strict=True)):
            S[:n, j] = rng.binomial(10, c, size=n) / 10
            C[:n, j], N[:n, j] = c, 1
        value, lo, hi, _ = M.macro_chance_normalised(S, C, N, n_resamples=300, seed=seed)
        covered += lo <= 0.0 <= hi
        values.append(value)
    assert covered >= 34  # ~95 % intervals: at most a few of 40 miss 0
    assert abs(np.mean(values)) < 2 * np.std(values) / np.sqrt(len(values)) + 0.005


def test_region_entropy_reduction():
    assert M.region_bits(10, 10) == pytest.approx(-math.log2(10.5 / 11))
    assert M.region_entropy_reduction(4, 4, 10) == 0.0
    assert M.region_entropy_reduction(2, 10, 10) > 0 > M.region_entropy_reduction(10, 2, 10)
    assert M.region_entropy_reduction(0, 10, 10) == pytest.approx(math.log2(10.5 / 0.5))
    with pytest.raises(ValueError):
        M.region_bits(11, 10)
    assert M.mass_entropy_reduction(0.1, 0.4) == pytest.approx(2.0)
    assert M.mass_entropy_reduction(0.0, 0.4) is None


def test_undo_share_and_ratio_of_sums():
    assert M.undo_share(1.0, 0.3) is None  # the steer did not move the list: nothing to undo
    moved, undone = M.undo_share(0.2, 1.0)
    assert moved == pytest.approx(0.8) and undone == pytest.approx(0.8)
    assert M.undo_share(0.2, 0.2)[1] == 0.0  # go back left the list where the steer took it
    value, lo, hi = M.ratio_of_sums(np.array([0.8, 0.0, 0.4]), np.array([0.8, 0.4, 0.8]), n_resamples=200)
    assert value == pytest.approx(1.2 / 2.0) and lo <= value <= hi
    assert M.ratio_of_sums(np.array([0.0]), np.array([0.0])) is None


def test_diversity_slope():
    assert M.diversity_slope(0.8, 0.5, 0.2) == pytest.approx(0.3)
    assert M.diversity_slope(0.5, 0.5, 0.5) == 0.0
    assert M.diversity_slope(0.2, 0.5, 0.8) == pytest.approx(-0.3)
    assert M.diversity_slope(float("nan"), 0.5, 0.2) is None


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
