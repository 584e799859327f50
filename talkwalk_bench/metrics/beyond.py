"""Beyond-accuracy metrics: catalog coverage, exposure Gini, intra-list diversity, novelty, popularity.

Notation: ``L_u`` is the top-K list shown to user u (K = the cutoff), ``U``
the set of lists, ``I`` the catalog, ``c(i)`` the number of training
interactions of item i and ``N = sum_i c(i)``.

Run-level (one number for all lists together):

- ``coverage@K``  = | union_u L_u | / |I|                       (RecBole ``ItemCoverage``)
- ``Gini@K``      = sum_{j=1}^{|I|} (2j - |I| - 1) e_(j) / (|I| sum_j e_(j)),
  where ``e(i)`` is how many lists show item i and ``e_(j)`` is those exposure
  counts sorted ascending, items never shown counting 0 (RecBole
  ``GiniIndex``). 0 = every item shown equally often; ->1 = one item takes
  all the exposure.

Per list (averaged over lists by the caller):

- ``ILD@K`` (intra-list diversity) = 1 - mean_{i<j in L_u} Jaccard(A(i), A(j)),
  with ``A(i)`` the item's attribute value set (genres) and
  ``Jaccard(a, b) = |a & b| / |a | b|``. Pairs of two items that both lack
  the attribute carry no information and are skipped; a list with no
  usable pair has no value (None).
- ``novelty@K``   = mean_{i in L_u} -log2 p(i), with the Laplace-smoothed
  training popularity share ``p(i) = (c(i) + 1) / (N + |I|)``, so an item
  never seen in training (a cold-start item) has a finite, maximal value.
- ``ARP@K`` (average recommendation popularity) = mean_{i in L_u} c(i)
  (RecBole ``AveragePopularity``).
- ``tail_share@K`` = | L_u & T | / |L_u|, with ``T`` the long-tail items
  (RecBole ``TailPercentage``): for a ratio r <= 1, the ``max(1,
  floor(r * |C|))`` items of the count table ``C`` with the fewest training
  interactions (ties by item id); for r > 1, every item with ``c(i) <= r``.

Lists are cut at K; a list shorter than K (a system that returned fewer
items) contributes the items it has.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from itertools import combinations

import numpy as np

from talkwalk_bench.metrics.stats import Estimate, not_available

Lists = Sequence[Sequence[Hashable]]


def encode_lists(lists: Lists, item_index: Mapping[Hashable, int], k: int) -> np.ndarray:
    """Lists as an int matrix (n_lists x k) of catalog positions, -1 where a list is short.

    Items not in ``item_index`` raise ``KeyError``: an item outside the catalog
    cannot be counted against it.
    """
    M = np.full((len(lists), k), -1, dtype=np.int64)
    for r, lst in enumerate(lists):
        for c, item in enumerate(list(lst)[:k]):
            M[r, c] = item_index[item]
    return M


def exposure(M: np.ndarray, n_items: int) -> np.ndarray:
    """How many times each catalog item appears in the encoded lists."""
    return np.bincount(M[M >= 0].ravel(), minlength=n_items).astype(np.float64)


def coverage_from_matrix(M: np.ndarray, n_items: int) -> float:
    return float(np.count_nonzero(exposure(M, n_items))) / n_items


def gini_from_exposure(e: np.ndarray) -> float:
    """Gini index of an exposure vector over the whole catalog (NaN when nothing is shown)."""
    n = e.size
    total = e.sum()
    if n == 0 or total <= 0:
        return math.nan
    s = np.sort(e)
    j = np.arange(1, n + 1, dtype=np.float64)
    return float(np.sum((2 * j - n - 1) * s) / (n * total))


def gini_from_matrix(M: np.ndarray, n_items: int) -> float:
    return gini_from_exposure(exposure(M, n_items))


def catalog_coverage(lists: Lists, item_ids: Sequence[Hashable], k: int) -> float:
    """``coverage@K``: share of the catalog that appears in at least one top-K list."""
    index = {it: j for j, it in enumerate(item_ids)}
    return coverage_from_matrix(encode_lists(lists, index, k), len(item_ids))


def gini_index(lists: Lists, item_ids: Sequence[Hashable], k: int) -> float:
    """``Gini@K`` of item exposure across all top-K lists (see the module docstring)."""
    index = {it: j for j, it in enumerate(item_ids)}
    return gini_from_matrix(encode_lists(lists, index, k), len(item_ids))


def jaccard(a: frozenset, b: frozenset) -> float | None:
    """|a & b| / |a | b|; None when both sets are empty."""
    union = len(a | b)
    if union == 0:
        return None
    return len(a & b) / union


def intra_list_diversity(items: Sequence[Hashable], features: Mapping[Hashable, frozenset], k: int) -> float | None:
    """``ILD@K`` = 1 - mean pairwise Jaccard similarity of the items' attribute sets."""
    sets = [features.get(i, frozenset()) for i in list(items)[:k]]
    sims = [s for a, b in combinations(sets, 2) if (s := jaccard(a, b)) is not None]
    if not sims:
        return None
    return 1.0 - float(np.mean(sims))


def expected_pair_diversity(features: Mapping[Hashable, frozenset], items: Sequence[Hashable]) -> float | None:
    """1 - mean Jaccard over all pairs of distinct catalog items (pairs without values skipped).

    The expected ``ILD@K`` of a list drawn uniformly from the catalog: the
    chance level beside a system's ``ILD@K``. Computed over the distinct value
    sets, weighted by how many items carry each, so it is cheap for large catalogs.
    """
    groups = Counter(features.get(i, frozenset()) for i in items)
    sets, weights = list(groups), list(groups.values())
    total = 0.0
    n_pairs = 0.0
    for a_idx, a in enumerate(sets):
        for b_idx in range(a_idx, len(sets)):
            b = sets[b_idx]
            sim = jaccard(a, b)
            if sim is None:
                continue
            wa, wb = weights[a_idx], weights[b_idx]
            pairs = wa * (wa - 1) / 2 if a_idx == b_idx else wa * wb
            total += pairs * sim
            n_pairs += pairs
    if n_pairs == 0:
        return None
    return 1.0 - total / n_pairs


def self_information(counts: Mapping[Hashable, float], item_ids: Sequence[Hashable]) -> dict[Hashable, float]:
    """-log2 p(i) with ``p(i) = (c(i) + 1) / (N + |I|)`` for every catalog item."""
    n_total = float(sum(counts.get(i, 0) for i in item_ids))
    denom = n_total + len(item_ids)
    return {i: -math.log2((counts.get(i, 0) + 1.0) / denom) for i in item_ids}


def novelty(items: Sequence[Hashable], info: Mapping[Hashable, float], k: int) -> float | None:
    """``novelty@K``: mean self-information of the top-K items (None for an empty list)."""
    top = list(items)[:k]
    if not top:
        return None
    return float(np.mean([info[i] for i in top]))


def average_popularity(items: Sequence[Hashable], counts: Mapping[Hashable, float], k: int) -> float | None:
    """``ARP@K``: mean training interaction count of the top-K items."""
    top = list(items)[:k]
    if not top:
        return None
    return float(np.mean([counts.get(i, 0) for i in top]))


def long_tail_items(counts: Mapping[Hashable, float], ratio: float) -> frozenset:
    """The long tail ``T`` of a count table, by RecBole's ``TailPercentage`` rule.

    ratio <= 1: the ``max(1, floor(ratio * len(counts)))`` least-interacted items,
    ties broken by item id; ratio > 1: the items with at most ``ratio`` interactions.
    Items absent from ``counts`` are never in the tail, so pass every catalog item
    (with 0 for items without training interactions) to count them.
    """
    if ratio <= 0:
        raise ValueError("tail ratio must be positive")
    if ratio > 1:
        return frozenset(i for i, c in counts.items() if c <= ratio)
    ordered = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))
    cut = max(int(len(ordered) * ratio), 1)
    return frozenset(i for i, _ in ordered[:cut])


def tail_share(items: Sequence[Hashable], tail: frozenset, k: int) -> float | None:
    """``tail_share@K``: share of the top-K items that are in the long tail."""
    top = list(items)[:k]
    if not top:
        return None
    return sum(1 for i in top if i in tail) / len(top)


def list_bootstrap(
    M: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    *,
    seed: int = 0,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> Estimate:
    """A run-level statistic of the lists with a re-centred bootstrap CI over lists.

    Lists (rows of ``M``) are resampled with replacement. A resample repeats
    some lists and drops others, which shifts set statistics (coverage falls,
    Gini rises) by an amount unrelated to the sampling error, so the plain
    percentile interval would not even contain the estimate ``t``. The
    interval is therefore the bootstrap distribution re-centred on ``t``:
    ``[t + q_lo - m, t + q_hi - m]`` with ``m`` the bootstrap mean and
    ``q_lo, q_hi`` its quantiles; it measures how much the statistic moves
    with the sample of users, clipped to ``bounds`` (the statistic's range).
    """
    n = M.shape[0]
    if n == 0:
        return not_available("no recommendation lists")
    t = statistic(M)
    if math.isnan(t):
        return not_available("no item was recommended", n)
    if n == 1:
        return Estimate(t, t, t, n)
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples)
    for b in range(n_resamples):
        stats[b] = statistic(M[rng.integers(0, n, n)])
    alpha = 1.0 - confidence
    q_lo, q_hi = np.nanquantile(stats, [alpha / 2, 1 - alpha / 2])
    shift = t - float(np.nanmean(stats))
    lo = min(max(float(q_lo + shift), bounds[0]), t)
    hi = max(min(float(q_hi + shift), bounds[1]), t)
    return Estimate(t, lo, hi, n)
