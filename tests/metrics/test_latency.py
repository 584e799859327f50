"""Latency percentiles, their order-statistic CIs, and the hardware record."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from talkwalk_bench.metrics.latency import hardware, latency_percentiles, quantile_ci


def test_percentiles_interpolate_between_order_statistics():
    x = np.arange(1, 101, dtype=float)  # 1..100
    # linear interpolation at position (n - 1) q + 1
    assert quantile_ci(x, 0.5).value == pytest.approx(50.5)
    assert quantile_ci(x, 0.95).value == pytest.approx(95.05)
    assert quantile_ci(x, 0.99).value == pytest.approx(99.01)


def test_median_ci_uses_the_binomial_ranks():
    # n = 100, q = 0.5: the classical 95 % interval is [x_(40), x_(61)]
    est = quantile_ci(np.arange(1, 101, dtype=float), 0.5)
    assert (est.ci_low, est.ci_high, est.n) == (40.0, 61.0, 100)


def test_ci_is_clipped_to_the_sample_for_high_percentiles():
    est = quantile_ci([1.0, 2.0, 3.0, 4.0, 5.0], 0.99)
    assert est.ci_high == 5.0
    assert est.ci_low <= est.value <= est.ci_high


def test_ci_covers_the_true_quantile_about_as_often_as_promised():
    rng = np.random.default_rng(0)
    true_p95 = -np.log(0.05)  # exponential(1)
    hits = sum(
        (e := quantile_ci(rng.exponential(size=300), 0.95)).ci_low <= true_p95 <= e.ci_high
        for _ in range(300)
    )
    assert hits / 300 >= 0.9


def test_latency_percentiles_report_milliseconds():
    out = latency_percentiles([0.001, 0.002, 0.003])
    assert list(out) == ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms"]
    assert out["latency_p50_ms"].value == pytest.approx(2.0)


def test_no_samples_is_not_available():
    est = quantile_ci([], 0.5)
    assert est.value is None and est.reason


def test_bad_quantile_is_rejected():
    with pytest.raises(ValueError):
        quantile_ci([1.0], 1.0)


def test_hardware_names_cpu_cores_and_torch_threads_when_loaded():
    hw = hardware()
    assert hw["cpu_model"] and hw["cpu_count_logical"] >= 1 and hw["cpu_count_usable"] >= 1
    torch = pytest.importorskip("torch")
    assert "torch" in sys.modules
    torch.set_num_threads(1)
    assert hardware()["torch_threads"] == 1
