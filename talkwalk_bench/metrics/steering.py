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
    """Share of the distribution shift that lands on the requested attribute.

    precision = JS_target / (JS_target + JS_off), with JS the Jensen-Shannon
    divergence between the attribute's distribution in the list before and
    after the steer. 1 = only the requested attribute moved; 0 = only the
    others moved; undefined (None) when nothing moved.
    """
    if np.isnan(target_js) or np.isnan(off_target_js):
        return None
    total = target_js + off_target_js
    if total <= 0:
        return None
    return float(target_js / total)


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


def preference_sensitivity(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """preference_sensitivity@K = 1 - Jaccard@K between two lists for the same history
    under different steering. 0 = the text changed nothing."""
    return 1.0 - jaccard_at_k(a, b, k)


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


def mean_or_none(values: Iterable[float | None]) -> float | None:
    """Mean of the defined values; None when none is defined."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def chance_mean(per_episode: Iterable[Mapping[str, float]], name: str) -> float | None:
    """Average of one chance level over the episodes that define it."""
    return mean_or_none(c.get(name) for c in per_episode)
