"""Task families: how episodes are built, played against a system, and scored.

A family turns a spec into episodes (deterministically from the seed), plays
a batch of episodes against a system through ``TaskContext.recommend`` (which
times the system and checks its answers), and returns one JSON record per
episode with its per-episode metric values. The runner checkpoints records,
aggregates them with bootstrap CIs, and adds the family's run-level metrics
from ``summarize``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from talkwalk_bench.data.card import DatasetCard, load_card
from talkwalk_bench.data.dataset import Dataset
from talkwalk_bench.data.split import Split, leave_one_out
from talkwalk_bench.errors import BenchError, SpecError, SystemFailure
from talkwalk_bench.metric_info import Metric, check_name, check_selection, resolve
from talkwalk_bench.metrics.stats import Estimate
from talkwalk_bench.registry import Registry
from talkwalk_bench.types import Ranking, Request, TrainData
from talkwalk_bench.yamlio import first_error

if TYPE_CHECKING:  # annotations only: spec.py imports this module (to check a spec's family), never the reverse
    from talkwalk_bench.tasks.spec import TaskSpec

class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Episode:
    """One scored unit. ``data`` is JSON-serialisable and family-specific."""

    id: str
    user_id: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskContext:
    spec: TaskSpec
    params: BaseModel
    dataset: Dataset
    seed: int
    system: Any = None
    card_path: Path | None = None
    steering_file: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    recommend_seconds: float = 0.0
    n_requests: int = 0

    @cached_property
    def split(self) -> Split:
        return leave_one_out(self.dataset)

    @cached_property
    def card(self) -> DatasetCard:
        card = load_card(self.dataset.name, self.card_path)
        card.check_against(self.dataset.item_types, self.dataset.user_types, self.card_path or self.dataset.name)
        return card

    def card_or_none(self) -> DatasetCard | None:
        try:
            return self.card
        except Exception:
            return None

    @property
    def stage(self) -> str:
        return self.spec.split.stage

    def recommend(self, requests: Sequence[Request], k: int) -> list[Ranking]:
        """Call the system, timing it and checking the shape of its answer.

        Items in ``request.exclude`` are removed from the returned lists (a
        system that returns them loses those slots).
        """
        if not requests:
            return []
        t0 = time.perf_counter()
        out = self.system.recommend(list(requests), k=k)
        self.recommend_seconds += time.perf_counter() - t0
        self.n_requests += len(requests)
        name = getattr(getattr(self.system, "meta", None), "name", "system")
        if not isinstance(out, list) or len(out) != len(requests):
            got = len(out) if isinstance(out, list) else type(out).__name__
            raise SystemFailure(f"system '{name}' returned {got} rankings for {len(requests)} requests; recommend() must return one Ranking per request")
        clean = []
        for req, r in zip(requests, out, strict=True):
            if not isinstance(r, Ranking):
                raise SystemFailure(f"system '{name}' returned a {type(r).__name__}, not a Ranking")
            if req.exclude and any(i in req.exclude for i in r.items):
                keep = [j for j, i in enumerate(r.items) if i not in req.exclude]
                r = Ranking(
                    tuple(r.items[j] for j in keep),
                    tuple(r.scores[j] for j in keep) if r.scores else (),
                    r.explanation,
                    r.trace,
                )
            clean.append(r)
        return clean

    def score_catalog(self, requests: Sequence[Request]):
        t0 = time.perf_counter()
        out = self.system.score_catalog(list(requests))
        self.recommend_seconds += time.perf_counter() - t0
        return out


class Family:
    """Base class of task families; subclasses register with ``FAMILIES.add``."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    needs_card: ClassVar[bool] = False
    # Task options (-O KEY=VALUE) the family reads; "judge" stands for every judge_* option.
    # None: look the family up in FAMILY_OPTIONS. Any other key is rejected before a run starts.
    options: ClassVar[tuple[str, ...] | None] = None
    # Whether the family reads --steering-file; a run of any other family given one is refused.
    reads_steering_file: ClassVar[bool] = False
    # A family that runs no system (judge calibration) provides ``stand_in()`` for the result's system row.
    system_free: ClassVar[bool] = False
    # The metrics it reports: names declared in talkwalk_bench/metric_info.py, or new Metric(...) declarations.
    produces: ClassVar[tuple[str | Metric, ...]] = ()
    # Whether the spec's ``metrics:`` list picks among them (by stem: ``nDCG``); otherwise it must stay empty.
    selects_metrics: ClassVar[bool] = False

    @classmethod
    def declared_metrics(cls) -> list[Metric]:
        return resolve(cls.produces, f"task family '{cls.name}'")

    @classmethod
    def selectable(cls) -> list[Metric]:
        """What the spec's ``metrics:`` list may name (by stem)."""
        return cls.declared_metrics() if cls.selects_metrics else []

    @classmethod
    def produced(cls, spec: TaskSpec) -> list[Metric]:
        """The metrics a run of ``spec`` reports (all declared ones, less those ``metrics:`` leaves out)."""
        declared = cls.declared_metrics()
        if not cls.selects_metrics or not spec.metrics:
            return declared
        chosen = set(spec.metrics)
        return [m for m in declared if m.stem.rsplit("/", 1)[-1] in chosen]

    @classmethod
    def check_metrics(cls, spec: TaskSpec, path: Path | str = "") -> None:
        """``metrics:``, ``main_score`` and ``gate.metrics`` name metrics this family reports at the spec's cutoffs."""
        where = str(path or spec.name)
        try:
            if spec.metrics:
                if not cls.selects_metrics:
                    raise BenchError(f"{where}: metrics: the {cls.name} family reports all its metrics; remove metrics:")
                check_selection(spec.metrics, cls.selectable(), where, cls.name)
            produced = cls.produced(spec)
            check_name(spec.main_score, produced, spec.k, f"{where}: main_score", cls.name)
            for name in spec.gate.metrics:
                check_name(name, produced, spec.k, f"{where}: gate.metrics", cls.name)
        except BenchError as exc:
            raise SpecError(str(exc)) from None

    @classmethod
    def parse_params(cls, spec: TaskSpec, path: Path | str = "") -> BaseModel:
        try:
            return cls.Params.model_validate(spec.episodes)
        except ValidationError as exc:
            raise SpecError(f"{path or spec.name}: episodes.{first_error(exc)}") from None

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx

    @property
    def spec(self) -> TaskSpec:
        return self.ctx.spec

    @property
    def params(self) -> Any:
        return self.ctx.params

    def protocol(self) -> dict[str, Any]:
        """Protocol choices written into the result."""
        from talkwalk_bench.data.split import PROTOCOL

        return {**PROTOCOL, "stage": self.ctx.stage, "k": self.spec.k}

    def train_data(self) -> TrainData:
        return self.ctx.split.train_data(self.ctx.card_or_none())

    def episodes(self) -> list[Episode]:
        raise NotImplementedError

    def play(self, episodes: Sequence[Episode]) -> list[dict[str, Any]]:
        """Play episodes; one record per episode with at least ``metrics``."""
        raise NotImplementedError

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Estimate]:
        """Run-level metrics that are not means over episodes (coverage, Gini, latency...)."""
        return {}

    def extras(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Anything else worth recording (chance levels, hardware, codebook stats)."""
        return {}


FAMILIES: Registry[type[Family]] = Registry("task family", lambda: _load_families())

def explain(r: Ranking) -> str:
    """What a system said about one list, for the episode file: its explanation and, when it
    reports one, the constraint it understood (``trace['constraint']``); "" when it said nothing."""
    parts = []
    if r.trace and r.trace.get("constraint") is not None:
        parts.append(f"understood: {r.trace['constraint']}")
    if r.explanation:
        parts.append(str(r.explanation).strip())
    return " | ".join(p for p in parts if p)


# -O options of the families that do not declare ``options`` on their class.
FAMILY_OPTIONS: dict[str, tuple[str, ...]] = {
    "steerability": ("judge", "judge_pairwise"),
    "conversation": ("judge", "simulator"),
}


def option_names(family_cls: type[Family]) -> list[str]:
    """Every -O key a family reads (judge options spelt out)."""
    from talkwalk_bench.judge.client import JudgeConfig

    declared = family_cls.options if family_cls.options is not None else FAMILY_OPTIONS.get(family_cls.name, ())
    out: list[str] = []
    for key in declared:
        out.extend(JudgeConfig.OPTION_KEYS if key == "judge" else [key])
    return out


def _load_families() -> None:
    from talkwalk_bench.registry import TASKS_ENTRY_POINT_GROUP, load_entry_points

    load_entry_points(FAMILIES, TASKS_ENTRY_POINT_GROUP, _broken_family)


def _broken_family(name: str, target: str, exc: Exception) -> type[Family]:
    class Broken(Family):
        __doc__ = f"failed to load ({target})"

        @classmethod
        def parse_params(cls, spec: TaskSpec, path: Path | str = "") -> BaseModel:
            raise SpecError(f"task family '{name}' (entry point {target}) failed to load: {exc}; "
                            "reinstall the package that provides it")

    Broken.name = name
    return Broken


def register_family(cls: type[Family]) -> type[Family]:
    FAMILIES.add(cls.name, cls, (cls.__doc__ or "").strip().split("\n")[0])
    return cls
