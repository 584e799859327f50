"""Steering metrics: pure functions over recommendation lists and attribute distributions.

Every function takes plain Python / numpy values (no harness objects) so it
can be tested against hand-computed fixtures and peer libraries. Formulas are
in the docstrings; ``docs/steering.md`` explains how the steerability task
combines them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def satisfied_share(items: Sequence[str], holds: Callable[[str], bool], k: int) -> float:
    """constraint_following@K = |{i in top-K : P(i)}| / K.

    A list shorter than K still divides by K: an empty slot does not satisfy the request.
    """
    if k < 1:
        raise ValueError("k must be positive")
    return sum(1 for i in items[:k] if holds(i)) / k


def value_mass(values: Sequence[Iterable[Any]], target: Any) -> float:
    """Share of the attribute mass on ``target``.

    Each item spreads a mass of 1 evenly over its values (a film that is
    Comedy and Romance gives 1/2 to each); items without a value give
    nothing. attribute_control = sum_i [target in V_i] / |V_i| / n, where n
    counts every item of the list (an item without a value dilutes the share).
    """
    if not values:
        return 0.0
    total = 0.0
    for v in values:
        v = list(v)
        if v and target in v:
            total += 1.0 / len(v)
    return total / len(values)


def distribution(values: Sequence[Iterable[Any]], support: Sequence[Any]) -> np.ndarray:
    """Normalised attribute distribution over ``support``: each item spreads mass 1 over its values.

    Values outside ``support`` are ignored. All zeros when no item has a value in the support.
    """
    index = {s: j for j, s in enumerate(support)}
    p = np.zeros(len(support), dtype=np.float64)
    for v in values:
        v = [x for x in v if x in index]
        for x in v:
            p[index[x]] += 1.0 / len(v)
    s = p.sum()
    return p / s if s > 0 else p


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence in bits, in [0, 1].

    JS(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2, log base 2.
    (scipy's ``jensenshannon`` returns its square root, the JS distance.)
    Inputs are normalised first; an all-zero input makes the result NaN.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    return float(0.5 * _kl2(p, m) + 0.5 * _kl2(q, m))


def _kl2(p: np.ndarray, q: np.ndarray) -> float:
    nz = p > 0
    return float(np.sum(p[nz] * np.log2(p[nz] / q[nz])))


def steering_precision(target_js: float, off_target_js: float) -> float | None:
    """Balance of the distribution shift between the requested attribute and the others.

    precision = (JS_target - JS_off) / (JS_target + JS_off), with JS the
    Jensen-Shannon divergence between an attribute's distribution in the
    list before and after the steer. 1 = only the requested attribute moved;
    0 = it moved no more than the others (a noise system: on ml-100k the JS
    noise floors of genre and decade are within 0.01 bits of each other);
    -1 = only the others moved. Undefined (None) when nothing moved (a
    text-ignoring system).

    The share form JS_target / (JS_target + JS_off) put noise at 0.5, which
    reads as "half precise"; this is the same quantity as 2 * share - 1.
    """
    if np.isnan(target_js) or np.isnan(off_target_js):
        return None
    total = target_js + off_target_js
    if total <= 0:
        return None
    return float((target_js - off_target_js) / total)


def entropy_bits(p: Sequence[float]) -> float:
    """Shannon entropy in bits: H(p) = -sum_i p_i log2 p_i (0 log 0 = 0), p normalised first."""
    p = np.asarray(p, dtype=np.float64)
    s = p.sum()
    if s <= 0:
        return float("nan")
    p = p / s
    nz = p > 0
    return float(-np.sum(p[nz] * np.log2(p[nz])))


def softmax(scores: Sequence[float], mask: Sequence[bool] | None = None) -> np.ndarray:
    """softmax(s)_i = exp(s_i - max s) / sum_j exp(s_j - max s), over the items where ``mask`` is True.

    Masked-out items get probability 0. Non-finite scores (-inf) get 0.
    """
    s = np.asarray(scores, dtype=np.float64).copy()
    keep = np.isfinite(s) if mask is None else (np.asarray(mask, dtype=bool) & np.isfinite(s))
    out = np.zeros_like(s)
    if not keep.any():
        return out
    z = s[keep] - s[keep].max()
    e = np.exp(z)
    out[keep] = e / e.sum()
    return out


def entropy_reduction(h_before: float, h_after: float) -> float | None:
    """Relative entropy reduction = (H_before - H_after) / H_before.

    1 = the steer made the output certain; 0 = no change; negative = the
    steer spread the output. Undefined (None) when H_before is 0 or NaN.
    """
    if not np.isfinite(h_before) or not np.isfinite(h_after) or h_before <= 0:
        return None
    return float((h_before - h_after) / h_before)


def jaccard_at_k(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """Jaccard@K = |A_K ∩ B_K| / |A_K ∪ B_K| over the top-K sets; 1 when both are empty."""
    sa, sb = set(a[:k]), set(b[:k])
    union = sa | sb
    return 1.0 if not union else len(sa & sb) / len(union)


def preference_sensitivity(share_s_in_s: float, share_s_in_a: float, share_a_in_a: float, share_a_in_s: float) -> float:
    """Directional sensitivity for two requests S and S' made from the same state.

    sensitivity = 1/2 [(share(P_S, L_S) - share(P_S, L_S')) + (share(P_S', L_S') - share(P_S', L_S))]

    with share(P, L) the constraint-following share of predicate P in list L.
    Each request's own predicate must be better satisfied by its own list
    than by the list made for the other request. A system that ignores the
    text (L_S = L_S') scores exactly 0; a noise system scores 0 in
    expectation (both lists are exchangeable); a list that moves *away* from
    what was asked scores below 0. In [-1, 1].

    This replaces 1 - Jaccard(L_S, L_S'), which measures only that the
    lists differ: a random ranker scored 0.997 on it, first of all systems.
    """
    return 0.5 * ((share_s_in_s - share_s_in_a) + (share_a_in_a - share_a_in_s))


def list_change(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """1 - Jaccard@K between two lists: how much they differ, whatever the direction (noise scores ~1)."""
    return 1.0 - jaccard_at_k(a, b, k)


def chance_normalised(share: float, chance: float) -> float | None:
    """Constraint following placed on a scale where chance is 0: max(-1, (s - c) / (1 - c)).

    1 = every item satisfies the request; 0 = the share expected of a list
    drawn without regard to the request; negative = below chance, floored
    at -1 (a shortfall at least as large as the room above chance). Applied
    to a request kind's mean share and mean chance, not per request.

    Why not the plain (s - c) / (1 - c): it is unbounded below as c nears 1.
    On ml-100k, ``exclude`` has chance 0.91; text-only follows it at 0.16,
    which maps to -8.1, and one failing easy kind then outweighs every
    other kind in a macro average (text-only: -0.68 overall, although it
    follows ``include`` at +0.86). The floor keeps each kind in [-1, 1] and
    changes nothing within (1 - c) of chance, so noise stays unbiased.

    Why not two slopes, (s - c) / c below chance: symmetric and bounded,
    but a random list's kind mean scatters around c, and unequal slopes
    turn that scatter into a bias. Simulated random top-10 lists over
    ml-100k's mix of kinds (chance 0.03 to 0.96, 12 to 160 requests per
    kind) average -0.031 (sd 0.032) with two slopes and +0.0003 (sd 0.016)
    with the floored single slope. None when c is not in [0, 1).
    """
    if not (0.0 <= chance < 1.0) or not np.isfinite(share):
        return None
    return float(max(-1.0, (share - chance) / (1.0 - chance)))


def region_bits(n_satisfied: int, k: int) -> float:
    """Cross-entropy, in bits, of a request's region under a top-K list: -log2((n + 1/2) / (K + 1)).

    n of the K items satisfy the request; the add-half (Jeffreys) smoothing
    keeps an empty region finite. 0.07 bits at n = K = 10, 4.46 bits at n = 0.
    """
    if k < 1 or not 0 <= n_satisfied <= k:
        raise ValueError("need 0 <= n_satisfied <= k, k >= 1")
    return float(-np.log2((n_satisfied + 0.5) / (k + 1)))


def region_entropy_reduction(n_before: int, n_after: int, k: int) -> float:
    """steering_entropy_reduction = H(P; L_before) - H(P; L_after), in bits, with H = ``region_bits``.

    How many bits of uncertainty about "is this what I asked for?" the steer
    removed, measured on the request's own region of the catalog. 0 when the
    list did not change with respect to the request (a text-ignoring system,
    exactly), 0 in expectation for noise, >= 0 whenever the steered list
    satisfies the request at least as often as the neutral one (the oracle),
    negative when the steer moved the list away from the request.

    The attribute-entropy version, (H(L0) - H(LS)) / H(L0) over the
    requested attribute's distribution in the list, rewards narrowing
    whatever its direction: "before 1980" spreads a 1990s-heavy list over
    four decades, so perfect compliance scored negative.
    """
    return region_bits(n_before, k) - region_bits(n_after, k)


def mass_entropy_reduction(mass_before: float, mass_after: float) -> float | None:
    """The same cross-entropy reduction over the full catalog: log2(m_after / m_before).

    m is the probability mass a system's softmaxed catalog scores put on the
    request's region (unseen items only). None when either mass is 0.
    """
    if not (mass_before > 0 and mass_after > 0) or not (np.isfinite(mass_before) and np.isfinite(mass_after)):
        return None
    return float(np.log2(mass_after / mass_before))


def undo_share(rbo_steer: float, rbo_back: float) -> tuple[float, float] | None:
    """(moved, undone) for one go-back: moved = 1 - RBO(L0, LS), undone = RBO(L0, LB) - RBO(L0, LS).

    None when the steer did not move the list (moved = 0): there is nothing
    to undo, and a list that never moved is not evidence of reversibility.
    The task reports reversibility = sum(undone) / sum(moved) over the
    episodes where the list moved (``ratio_of_sums``): 1 = "go back"
    restored the neutral list, 0 = it stayed where the steer took it (or a
    noise system: every list is as far from L0 as any other), negative = it
    went further away. A per-episode ratio undone / moved is unstable when
    the move is tiny (a swap at rank 10 divides by ~0.01).
    """
    moved = 1.0 - rbo_steer
    if moved <= 1e-12:
        return None
    return moved, rbo_back - rbo_steer


def diversity_slope(ild_variety: float, ild_neutral: float, ild_close: float) -> float | None:
    """Least-squares slope of ILD against the requested diversity (-1 "stay close", 0 neutral, +1 "more variety").

    slope = (ILD_variety - ILD_close) / 2 (the neutral point has no weight
    in a three-point slope at -1, 0, 1; it is kept for the ordering check).
    0 for a system that ignores the text, 0 in expectation for noise,
    positive when diversity follows the request. None when any ILD is undefined.
    """
    vals = (ild_variety, ild_neutral, ild_close)
    if any(v is None or not np.isfinite(v) for v in vals):
        return None
    return float((ild_variety - ild_close) / 2.0)


def rbo(a: Sequence[str], b: Sequence[str], p: float = 0.9, depth: int | None = None) -> float:
    """Rank-biased overlap, extrapolated (Webber, Moffat and Zobel 2010, eq. 32, equal lengths).

    With X_d = |A_{:d} ∩ B_{:d}| and A_d = X_d / d, evaluated to depth k:

        RBO_ext = (X_k / k) p^k + (1 - p) / p * sum_{d=1..k} A_d p^d

    1 for identical lists, 0 for disjoint ones. Lists are cut at ``depth``
    (default: the shorter length). Two empty lists give 1.
    """
    if not 0 < p < 1:
        raise ValueError("p must be in (0, 1)")
    k = min(len(a), len(b)) if depth is None else min(depth, len(a), len(b))
    if k == 0:
        return 1.0 if not a and not b else 0.0
    total = 0.0
    overlap = 0
    for d in range(1, k + 1):
        overlap = len(set(a[:d]) & set(b[:d]))
        total += (overlap / d) * p**d
    return float((overlap / k) * p**k + (1 - p) / p * total)


def intra_list_diversity(vectors: np.ndarray) -> float:
    """ILD = 1 - ILS, with ILS the mean cosine similarity over the n(n-1)/2 distinct pairs.

    Rows are item feature vectors; a zero row has similarity 0 to every
    other row. NaN for lists with fewer than two items.
    """
    x = np.asarray(vectors, dtype=np.float64)
    n = len(x)
    if n < 2:
        return float("nan")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    sim = x @ x.T
    iu = np.triu_indices(n, 1)
    return float(1.0 - sim[iu].mean())


def diversity_ordering(ild_variety: float, ild_neutral: float, ild_close: float) -> float | None:
    """1.0 when ILD("more variety") > ILD(neutral) > ILD("stay close") strictly, else 0.0.

    None when any of the three is undefined. For three exchangeable lists
    (a system that ignores the text, but whose lists differ) the chance of
    the strict ordering is 1/6.
    """
    vals = (ild_variety, ild_neutral, ild_close)
    if any(v is None or not np.isfinite(v) for v in vals):
        return None
    return 1.0 if ild_variety > ild_neutral > ild_close else 0.0


def cosine(u: Sequence[float], v: Sequence[float]) -> float | None:
    """cos(u, v) = u·v / (|u| |v|); None when either vector is zero."""
    u = np.asarray(u, dtype=np.float64).ravel()
    v = np.asarray(v, dtype=np.float64).ravel()
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0 or u.shape != v.shape:
        return None
    return float(u @ v / (nu * nv))


def traceability(q_before: Sequence[float], q_after: Sequence[float], direction: Sequence[float]) -> float | None:
    """steering_traceability = cos(q_after - q_before, d).

    q are the system's query vectors before and after the steer; d is the
    requested attribute's direction in the same space. 1 = the query moved
    straight toward the request; 0 = sideways; negative = away. None when
    the query did not move or d is zero.
    """
    move = np.asarray(q_after, dtype=np.float64).ravel() - np.asarray(q_before, dtype=np.float64).ravel()
    return cosine(move, direction)


def hit_and_rr(items: Sequence[str], target: str, k: int) -> tuple[float, float]:
    """(Hit@K, RR@K) of one held-out item: Hit = [rank <= K], RR = 1/rank if rank <= K else 0."""
    for r, it in enumerate(items[:k], start=1):
        if it == target:
            return 1.0, 1.0 / r
    return 0.0, 0.0


def ratio_of_sums(num: np.ndarray, den: np.ndarray, *, seed: int = 0, n_resamples: int = 2000,
                  confidence: float = 0.95) -> tuple[float, float, float] | None:
    """sum(num) / sum(den) over episodes with a percentile bootstrap CI (episodes resampled): (value, low, high)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    if num.size == 0 or den.sum() <= 0:
        return None
    value = float(num.sum() / den.sum())
    if num.size == 1:
        return value, value, value
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num.size, size=(n_resamples, num.size))
    d = den[idx].sum(axis=1)
    r = num[idx].sum(axis=1) / np.where(d > 0, d, np.nan)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.nanquantile(r, [alpha, 1.0 - alpha])
    return value, float(min(lo, value)), float(max(hi, value))


def macro_chance_normalised(shares: np.ndarray, chances: np.ndarray, counts: np.ndarray, *, seed: int = 0,
                            n_resamples: int = 2000, confidence: float = 0.95
                            ) -> tuple[float, float, float, dict[int, float | None]] | None:
    """Macro average over request kinds of ``chance_normalised(mean share, mean chance)``, with a bootstrap CI.

    Each kind counts once, whatever its number of requests: a headline that
    pooled requests would be carried by the kinds drawn most often.

    ``shares``, ``chances`` and ``counts`` are (episodes x kinds): the sum of
    the episode's shares and chances over its requests of each kind, and how
    many there were. Episodes are resampled whole (an episode's requests of
    different kinds stay together); a kind missing from a resample is left
    out of that resample's average. Returns (value, low, high, per-kind value).
    """
    S, C, N = (np.asarray(a, dtype=np.float64) for a in (shares, chances, counts))
    if S.ndim != 2 or S.shape[0] == 0:
        return None

    def macro(s: np.ndarray, c: np.ndarray, n: np.ndarray) -> np.ndarray:
        # s, c, n: (resamples x kinds) sums; returns (resamples,) macro averages
        with np.errstate(invalid="ignore", divide="ignore"):
            ms, mc = s / n, c / n
            v = np.maximum(-1.0, (ms - mc) / (1.0 - mc))
        ok = (n > 0) & (mc >= 0) & (mc < 1) & np.isfinite(v)
        v = np.where(ok, v, 0.0)
        return v.sum(axis=1) / np.maximum(ok.sum(axis=1), 1) + np.where(ok.any(axis=1), 0.0, np.nan)

    per_kind = {}
    tot_s, tot_c, tot_n = S.sum(0), C.sum(0), N.sum(0)
    for j in range(S.shape[1]):
        per_kind[j] = chance_normalised(tot_s[j] / tot_n[j], tot_c[j] / tot_n[j]) if tot_n[j] > 0 else None
    value = float(macro(tot_s[None], tot_c[None], tot_n[None])[0])
    if not np.isfinite(value):
        return None
    n = S.shape[0]
    if n == 1:
        return value, value, value, per_kind
    rng = np.random.default_rng(seed)
    boot = np.empty(n_resamples)
    block = max(1, min(n_resamples, 5_000_000 // max(n, 1)))
    for b0 in range(0, n_resamples, block):
        nb = min(block, n_resamples - b0)
        draws = rng.integers(0, n, size=(nb, n)) + (np.arange(nb) * n)[:, None]
        W = np.bincount(draws.ravel(), minlength=nb * n).reshape(nb, n).astype(np.float64)
        boot[b0:b0 + nb] = macro(W @ S, W @ C, W @ N)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.nanquantile(boot, [alpha, 1.0 - alpha])
    return value, float(min(lo, value)), float(max(hi, value)), per_kind


def mean_or_none(values: Iterable[float | None]) -> float | None:
    """Mean of the defined values; None when none is defined."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def chance_mean(per_episode: Iterable[Mapping[str, float]], name: str) -> float | None:
    """Average of one chance level over the episodes that define it."""
    return mean_or_none(c.get(name) for c in per_episode)
