"""Bootstrap confidence intervals and paired tests."""

from __future__ import annotations

import numpy as np

from talkwalk_bench.metrics.stats import mean_ci, paired_significant


def test_ci_contains_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = mean_ci(rng.random(50), seed=1)
    large = mean_ci(rng.random(5000), seed=1)
    assert small.ci_low <= small.value <= small.ci_high
    assert (large.ci_high - large.ci_low) < (small.ci_high - small.ci_low)
    assert small.n == 50 and large.n == 5000


def test_ci_is_deterministic_for_a_seed():
    x = np.random.default_rng(3).random(100)
    assert mean_ci(x, seed=5) == mean_ci(x, seed=5)


def test_constant_and_nan_values():
    est = mean_ci([1.0, 1.0, float("nan")])
    assert est.value == 1.0 and est.ci_low == est.ci_high == 1.0 and est.n == 2
    na = mean_ci([float("nan")])
    assert na.value is None and "no episode" in na.reason


def test_normal_mean_coverage_roughly_95_percent():
    rng = np.random.default_rng(42)
    inside = 0
    for s in range(200):
        x = rng.normal(0.3, 1.0, 80)
        e = mean_ci(x, seed=s, n_resamples=500)
        inside += e.ci_low <= 0.3 <= e.ci_high
    assert 170 <= inside <= 200  # ~95 % nominal, percentile bootstrap slightly under-covers


def test_paired_significance():
    rng = np.random.default_rng(1)
    a = rng.random(300)
    assert paired_significant(a + 0.1, a)
    assert not paired_significant(a + rng.normal(0, 0.01, 300), a)


def test_many_equals_one_by_one_in_value_and_close_in_ci():
    from talkwalk_bench.metrics.stats import mean_ci_many

    rng = np.random.default_rng(2)
    cols = {"a": rng.random(400), "b": (rng.random(400) > 0.7).astype(float), "c": np.ones(400),
            "d": np.where(rng.random(400) > 0.5, np.nan, 1.0)}
    many = mean_ci_many(cols, seed=0)
    for name, x in cols.items():
        one = mean_ci(x, seed=0)
        assert many[name].value == one.value and many[name].n == one.n
        assert abs(many[name].ci_low - one.ci_low) < 0.02 and abs(many[name].ci_high - one.ci_high) < 0.02
    assert many["c"].ci_low == many["c"].ci_high == 1.0
