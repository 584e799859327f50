"""Metrics by family: ranking, steering, beyond-accuracy, latency; and their aggregation."""

from talkwalk_bench.metrics.ranking import RANKING_METRICS, hit_matrix, ranking_metrics
from talkwalk_bench.metrics.stats import (
    Estimate,
    mean_ci,
    not_available,
    paired_difference,
    paired_significant,
)

__all__ = [
    "RANKING_METRICS",
    "Estimate",
    "hit_matrix",
    "mean_ci",
    "not_available",
    "paired_difference",
    "paired_significant",
    "ranking_metrics",
]
