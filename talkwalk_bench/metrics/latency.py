"""Latency and throughput: percentiles with order-statistic CIs, and the hardware they ran on.

- ``latency_pXX_ms``: the XX-th percentile of single-request latencies (linear
  interpolation between order statistics, numpy's default), in milliseconds.
  Its 95 % CI is distribution-free: with n sorted samples ``x_(1) <= ... <=
  x_(n)`` and ``B ~ Binomial(n, q)``, the interval ``[x_(l), x_(u)]`` with
  ``l = F_B^{-1}(alpha/2)`` and ``u = F_B^{-1}(1 - alpha/2) + 1`` (1-based,
  clipped to ``[1, n]``) covers the q-quantile with probability >= 1 - alpha
  when no clipping happens. Clipping (a high percentile of few samples)
  makes the interval narrower than nominal, so enough samples matter.
- ``throughput_rps``: requests answered per second when sent in one batch,
  ``batch size / wall time`` of one batched call.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from talkwalk_bench.metrics.stats import Estimate, not_available

PERCENTILES = (50, 95, 99)


def quantile_ci(samples: Sequence[float], q: float, *, confidence: float = 0.95) -> Estimate:
    """The q-quantile (0 < q < 1) of the samples with an order-statistic CI."""
    if not 0.0 < q < 1.0:
        raise ValueError("q must lie strictly between 0 and 1")
    x = np.sort(np.asarray(samples, dtype=np.float64))
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n == 0:
        return not_available("no timed request")
    value = float(np.percentile(x, 100.0 * q))
    alpha = 1.0 - confidence
    lo_rank = int(stats.binom.ppf(alpha / 2, n, q))
    hi_rank = int(stats.binom.ppf(1 - alpha / 2, n, q)) + 1
    lo_rank = min(max(lo_rank, 1), n)
    hi_rank = min(max(hi_rank, 1), n)
    return Estimate(value, min(float(x[lo_rank - 1]), value), max(float(x[hi_rank - 1]), value), n)


def latency_percentiles(seconds: Sequence[float], *, confidence: float = 0.95,
                        percentiles: Sequence[int] = PERCENTILES) -> dict[str, Estimate]:
    """``latency_p50_ms`` etc. from per-request wall times in seconds."""
    ms = [1000.0 * s for s in seconds]
    return {f"latency_p{p}_ms": quantile_ci(ms, p / 100.0, confidence=confidence) for p in percentiles}


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo on Linux, else what platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def hardware() -> dict[str, Any]:
    """Where a timing was taken: CPU, cores, torch threads, accelerator, OS, Python."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count_logical": os.cpu_count(),
        "cpu_count_usable": usable,
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch_threads": None,
        "accelerator": None,
    }
    # Only report torch when the system under test loaded it: importing it here
    # would cost seconds and say nothing about the measured code.
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            info["torch_version"] = str(torch.__version__)
            info["torch_threads"] = int(torch.get_num_threads())
            info["torch_interop_threads"] = int(torch.get_num_interop_threads())
            if torch.cuda.is_available():
                info["accelerator"] = torch.cuda.get_device_name(0)
        except Exception:  # a partial torch install must not break the result
            pass
    else:
        info["torch_threads_note"] = "torch not loaded by the system"
    return info
