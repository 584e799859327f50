"""Aggregation: mean with a 95 % bootstrap confidence interval over episodes, and paired tests."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

DEFAULT_RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    reason: str | None = None  # why value is None ("n/a")

    def as_dict(self) -> dict:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n, **({"reason": self.reason} if self.reason else {})}


def not_available(reason: str, n: int = 0) -> Estimate:
    return Estimate(None, None, None, n, reason)


def mean_ci(values, *, seed: int = 0, n_resamples: int = DEFAULT_RESAMPLES, confidence: float = CONFIDENCE) -> Estimate:
    """Mean of per-episode values with a percentile bootstrap CI (``scipy.stats.bootstrap``).

    NaN values (episodes where the metric is undefined) are dropped first, and
    the n reported is the number kept.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n == 0:
        return not_available("no episode where this metric is defined")
    m = float(x.mean())
    if n == 1 or np.all(x == x[0]):
        return Estimate(m, m, m, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            (x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
            method="percentile", vectorized=True, random_state=np.random.default_rng(seed),
        )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if math.isnan(lo) or math.isnan(hi):
        lo = hi = m
    return Estimate(m, lo, hi, n)


def mean_ci_many(columns: dict[str, np.ndarray], *, seed: int = 0, n_resamples: int = DEFAULT_RESAMPLES,
                 confidence: float = CONFIDENCE) -> dict[str, Estimate]:
    """``mean_ci`` for many metrics over the same episodes, sharing one resampling.

    The percentile bootstrap of a mean, written as multinomial resampling
    weights: ``W`` (resamples x episodes) counts how often each episode is
    drawn, and every metric's resampled means are one product ``W @ X / n``.
    This is the same estimator ``scipy.stats.bootstrap(method="percentile")``
    computes (tests compare the two), at a fraction of the cost when a task
    reports dozens of metrics. Metrics with NaN episodes use ``mean_ci``.
    """
    names = list(columns)
    dense = [k for k in names if not np.isnan(np.asarray(columns[k], dtype=np.float64)).any()]
    out: dict[str, Estimate] = {}
    if dense:
        X = np.vstack([np.asarray(columns[k], dtype=np.float64) for k in dense])  # metrics x episodes
        n = X.shape[1]
        means = X.mean(axis=1)
        if n > 1:
            rng = np.random.default_rng(seed)
            # resamples in blocks so memory stays ~ block x episodes whatever the run size
            block = max(1, min(n_resamples, 20_000_000 // max(n, 1)))
            boot = np.empty((n_resamples, X.shape[0]))
            for b0 in range(0, n_resamples, block):
                nb = min(block, n_resamples - b0)
                draws = rng.integers(0, n, size=(nb, n)) + (np.arange(nb) * n)[:, None]
                W = np.bincount(draws.ravel(), minlength=nb * n).reshape(nb, n).astype(np.float64)
                boot[b0:b0 + nb] = (W @ X.T) / n  # resamples x metrics
            alpha = (1.0 - confidence) / 2.0
            lo, hi = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
        else:
            lo = hi = means
        for i, k in enumerate(dense):
            same = bool(np.all(X[i] == X[i, 0]))
            out[k] = Estimate(float(means[i]), float(means[i] if same else lo[i]), float(means[i] if same else hi[i]), n)
    for k in names:
        if k not in out:
            out[k] = mean_ci(columns[k], seed=seed, n_resamples=n_resamples, confidence=confidence)
    return {k: out[k] for k in names}


def paired_difference(a, b, *, seed: int = 0, n_resamples: int = DEFAULT_RESAMPLES) -> tuple[float, float, float]:
    """Mean of a - b over paired episodes with its 95 % bootstrap CI: (diff, low, high)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[~np.isnan(d)]
    est = mean_ci(d, seed=seed, n_resamples=n_resamples)
    return est.value or 0.0, est.ci_low or 0.0, est.ci_high or 0.0


def paired_significant(a, b, *, seed: int = 0) -> bool:
    """True when the paired 95 % CI of the mean difference excludes zero."""
    _, lo, hi = paired_difference(a, b, seed=seed)
    return lo > 0 or hi < 0
