"""Latency: in-process wall time of single requests after warm-up, and batched throughput.

Two episode kinds. ``single`` episodes each time one call
``TaskContext.recommend([request], k)`` (the harness's answer check
included, request construction not); ``batch`` episodes each time one call
with ``throughput_batch`` requests. Before the first timed call of a process
the system answers ``warmup`` untimed requests from other test users (lazy
initialisation, caches, JIT), so a resumed run warms up again.

Metrics: ``latency_mean_ms`` (mean over single requests), ``latency_p50_ms``,
``latency_p95_ms``, ``latency_p99_ms`` (order-statistic CIs, see
``talkwalk_bench.metrics.latency``) and ``throughput_rps`` (mean over batches
of batch size / wall time). The hardware goes into the result's extras.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from talkwalk_bench.metrics.latency import hardware, latency_percentiles
from talkwalk_bench.metrics.stats import Estimate, not_available
from talkwalk_bench.tasks.base import Episode, Family, register_family
from talkwalk_bench.tasks.ranking import next_item_requests, sample_users


class LatencyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_requests: int = Field(200, ge=1, description="timed single requests, one per sampled test user")
    warmup: int = Field(20, ge=0, description="untimed requests first, from other test users")
    throughput_batch: int = Field(64, ge=1, description="requests per batched call")
    throughput_repeats: int = Field(5, ge=0, description="timed batched calls")


@register_family
class LatencyFamily(Family):
    """Latency: p50/p95/p99 of single requests after warm-up, and batched throughput, in-process."""

    name = "latency"
    produces = ("latency_mean_ms", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "throughput_rps")
    Params = LatencyParams

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self._warm = False

    def protocol(self) -> dict[str, Any]:
        p = self.params
        return {
            **super().protocol(),
            "timing": "time.perf_counter around TaskContext.recommend in the harness process (system call + answer check)",
            "single_requests": p.n_requests,
            "warmup_requests": p.warmup,
            "throughput_batch": p.throughput_batch,
            "throughput_repeats": p.throughput_repeats,
        }

    @cached_property
    def users(self) -> tuple[list[str], list[str]]:
        """(warm-up users, timed users), disjoint when there are enough test users."""
        split = self.ctx.split
        held = split.test_item if self.ctx.stage == "test" else split.valid_item
        pool = list(held)
        p = self.params
        picked = sample_users(pool, p.warmup + p.n_requests, self.ctx.seed)
        if len(picked) < p.warmup + p.n_requests:  # small datasets: reuse users for warm-up
            return picked[: p.warmup], picked
        return picked[: p.warmup], picked[p.warmup:]

    def episodes(self) -> list[Episode]:
        _, timed = self.users
        p = self.params
        out = [Episode(id=f"single/u{u}", user_id=u, data={"kind": "single"}) for u in timed]
        for b in range(p.throughput_repeats):
            batch = [timed[(b * p.throughput_batch + j) % len(timed)] for j in range(p.throughput_batch)]
            out.append(Episode(id=f"batch/{b}", user_id=batch[0], data={"kind": "batch", "users": batch}))
        return out

    def _warm_up(self) -> None:
        warm, _ = self.users
        k = self.spec.k_max
        for u in warm:
            self.ctx.recommend(next_item_requests(self, [Episode(id=f"warmup/u{u}", user_id=u)]), k)
        gc.collect()
        self._warm = True

    def play(self, episodes: Sequence[Episode]) -> list[dict[str, Any]]:
        if not self._warm:
            self._warm_up()
        k = self.spec.k_max
        out = []
        for ep in episodes:
            if ep.data["kind"] == "single":
                requests = next_item_requests(self, [ep])
            else:
                requests = next_item_requests(self, [Episode(id=f"{ep.id}/u{u}", user_id=u) for u in ep.data["users"]])
            t0 = time.perf_counter()
            rankings = self.ctx.recommend(requests, k)
            dt = time.perf_counter() - t0
            n_items = sum(len(r.items) for r in rankings)
            if ep.data["kind"] == "single":
                out.append({"kind": "single", "seconds": dt, "n_items": n_items, "metrics": {"latency_mean_ms": 1000.0 * dt}})
            else:
                rps = len(requests) / dt if dt > 0 else None
                out.append({"kind": "batch", "seconds": dt, "batch": len(requests), "n_items": n_items,
                            "metrics": {"throughput_rps": rps}})
        return out

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Estimate]:
        singles = [r["seconds"] for r in records if r.get("kind") == "single" and r.get("status", "ok") == "ok"]
        out = latency_percentiles(singles, confidence=self.spec.bootstrap.confidence)
        if not any(r.get("kind") == "batch" for r in records):
            out["throughput_rps"] = not_available("throughput_repeats is 0 in the task spec")
        return out

    def extras(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"hardware": hardware()}
