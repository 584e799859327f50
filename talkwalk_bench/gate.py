"""Regression gate: compare a run with a committed baseline, one-sided.

A metric regresses when it is worse than the baseline by more than the
tolerance (absolute). Improvements never fail. Tolerances come from
``--tolerance``, a calibrated file (``gate --calibrate`` writes one from the
spread across seeds), or the task spec's ``gate.tolerance``, in that order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkwalk_bench.errors import BenchError
from talkwalk_bench.metric_info import lower_is_better
from talkwalk_bench.registry import did_you_mean
from talkwalk_bench.results import MetricEntry, Result


@dataclass
class Check:
    metric: str
    baseline: float | None
    current: float | None
    tolerance: float
    ok: bool
    note: str = ""


def compare(baseline: Result, current: Result, *, tolerance: float | None = None,
            tolerances: dict[str, float] | None = None, metrics: list[str] | None = None) -> list[Check]:
    if baseline.task.name != current.task.name:
        raise BenchError(f"baseline is task '{baseline.task.name}' but current is '{current.task.name}'; compare runs of the same task")
    if baseline.dataset.fingerprint != current.dataset.fingerprint:
        raise BenchError("baseline and current ran on different data (dataset fingerprints differ); regenerate the baseline")
    if current.status != "success":
        raise BenchError(f"current run has status '{current.status}' ({current.error}); fix the run first")
    if tolerance is not None and not (tolerance >= 0 and np.isfinite(tolerance)):
        raise BenchError(f"--tolerance {tolerance}: a tolerance is a finite number >= 0")
    names = metrics or _gate_metrics(baseline)
    known = sorted(set(baseline.metrics) | set(current.metrics))
    for m in names:
        if m not in known:  # a typo would otherwise gate nothing and pass
            raise BenchError(f"--metric {m}: neither result has a metric '{m}'.{did_you_mean(m, known)} "
                             f"Metrics: {', '.join(known)}")
    checks = []
    for m in names:
        b = baseline.metrics.get(m)
        c = current.metrics.get(m)
        tol = tolerance if tolerance is not None else (tolerances or {}).get(m, _spec_tolerance(baseline))
        for side, e in (("baseline", b), ("current", c)):
            if e is not None and e.invalid:
                checks.append(Check(m, None, None, tol, False, f"{side} value is invalid ({e.reason}); rerun it"))
                break
        else:
            checks.append(_check(m, b, c, tol))
    return checks


def _check(m: str, b: MetricEntry | None, c: MetricEntry | None, tol: float) -> Check:
    if b is None or b.value is None:
        return Check(m, None, c.value if c else None, tol, True, "no baseline value")
    if c is None or c.value is None:
        return Check(m, b.value, None, tol, False, "missing in current run")
    delta = c.value - b.value
    worse = -delta if not lower_is_better(m) else delta
    return Check(m, b.value, c.value, tol, worse <= tol + 1e-12)


def _gate_metrics(r: Result) -> list[str]:
    g = r.extras.get("gate_metrics")
    return list(g) if g else [r.task.main_score]


def _spec_tolerance(r: Result) -> float:
    return float(r.extras.get("gate_tolerance", 0.02))


def calibrate(results: list[Result], *, multiplier: float = 3.0, floor: float = 1e-4) -> dict[str, float]:
    """Per-metric tolerance = multiplier x the standard deviation across seeds (at least ``floor``)."""
    if len(results) < 2:
        raise BenchError("calibration needs results of at least two seeds of the same system and task")
    tasks = {r.task.name for r in results}
    systems = {r.system.name for r in results}
    if len(tasks) > 1 or len(systems) > 1:
        raise BenchError(f"calibrate from one system on one task (got tasks {sorted(tasks)}, systems {sorted(systems)})")
    names = set.intersection(*(set(r.metrics) for r in results))
    out = {}
    for m in sorted(names):
        vals = [r.metrics[m].value for r in results if r.metrics[m].value is not None]
        if len(vals) >= 2:
            out[m] = max(floor, multiplier * float(np.std(vals, ddof=1)))
    return out


def read_tolerances(path: Path) -> dict[str, float]:
    try:
        data = json.loads(Path(path).read_text())
        tol = data["tolerances"]
        out = {str(k): float(v) for k, v in tol.items()}
    except FileNotFoundError:
        raise BenchError(f"{path}: tolerance file not found; write one with `talkwalk-bench gate --calibrate`") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        raise BenchError(f"{path}: not a tolerance file (expected JSON with a 'tolerances' mapping of metric -> number)") from None
    bad = sorted(k for k, v in out.items() if not (v >= 0 and np.isfinite(v)))
    if bad:
        raise BenchError(f"{path}: tolerance of '{bad[0]}' is {out[bad[0]]}; tolerances are finite numbers >= 0 (recalibrate with --calibrate)")
    return out
