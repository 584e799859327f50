"""Judge calibration: does the LLM judge tell a list that honours a request from one that violates it?

No system runs: the cases (``talkwalk_bench.judge.calibration``) are built
from the dataset card and the steering predicates, their answers are known,
and the judge behind ``--judge-base-url``/``--judge-model`` is scored against
them with a CI and its chance level. The result is stored like any other (the
row is named after the judge model); judged results elsewhere record the
calibration that backs their judge. Run with ``talkwalk-bench run --task
judge_calibration --judge-base-url URL`` or ``talkwalk-bench judge-calibrate``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from talkwalk_bench.errors import BenchError
from talkwalk_bench.metrics.stats import Estimate
from talkwalk_bench.tasks.base import Episode, Family, register_family

Kind = Literal["include", "exclude", "range_bin", "include_range", "include_exclude"]


class CalibrationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_cases: int = Field(60, ge=2, le=5000, description="known-answer cases, request kinds cycled")
    kinds: list[Kind] = Field(default_factory=lambda: ["include", "exclude", "range_bin", "include_range", "include_exclude"],
                              min_length=1, description="steering request kinds")
    list_length: int = Field(5, ge=1, le=20, description="items in each list shown to the judge")
    judge_pass: float = Field(3, ge=1, le=5, description="a list 'passes' at this instruction-following score or above")


@dataclass(frozen=True)
class _JudgeMeta:
    name: str
    version: str = "0"
    capabilities: frozenset[str] = field(default_factory=frozenset)
    is_oracle: bool = False


class JudgeStandIn:
    """What the runner records in the system's place: the judge model under test."""

    def __init__(self, name: str) -> None:
        self.meta = _JudgeMeta(name)

    def fit(self, data: Any, *, seed: int) -> None:
        return None

    def recommend(self, requests: Any, *, k: int) -> list:
        raise BenchError("judge_calibration runs no system")


def stand_in_name(model: str | None) -> str:
    """A row and file name for a judge model: ``judge-<model>`` with path-unsafe characters replaced."""
    return "judge-" + re.sub(r"[^A-Za-z0-9._-]+", "_", model or "none").strip("_")


@register_family
class JudgeCalibrationFamily(Family):
    """Calibration of the LLM judge on known-answer cases (good vs violating lists, both pairwise orders)."""

    name = "judge_calibration"
    produces = ("judge_accuracy", "judge_pointwise_accuracy", "judge_good_above_bad", "judge_score_gap",
                "judge_pairwise_accuracy", "judge_position_bias", "judge_score_variance")
    Params = CalibrationParams
    needs_card = True
    reads_steering_file = True
    system_free = True
    options = ("judge",)

    @cached_property
    def judge(self) -> Any:
        from talkwalk_bench.judge.client import Judge, JudgeConfig

        cfg = JudgeConfig.from_options(self.ctx.options).with_served_model()
        why = cfg.missing()
        if why:
            raise BenchError(f"judge_calibration measures a judge: {why}")
        return Judge(cfg)

    @cached_property
    def rubrics(self) -> dict[str, Any]:
        from talkwalk_bench.judge.rubrics import load_rubric

        return {n: load_rubric(n) for n in ("instruction_following", "pairwise_preference")}

    def stand_in(self) -> JudgeStandIn:
        return JudgeStandIn(stand_in_name(self.judge.config.model))

    def protocol(self) -> dict[str, Any]:
        cfg = self.judge.config
        return {"cases": "known answers from the dataset card and steering predicates: a list that honours the request "
                         "and one that violates it; pairwise asked in both orders",
                "stage": self.ctx.stage, "k": self.spec.k, "judge_model": cfg.model, "judge_endpoint": cfg.endpoint,
                "rubrics": {n: r.id for n, r in self.rubrics.items()}, "judge_pass": self.params.judge_pass}

    def episodes(self) -> list[Episode]:
        from talkwalk_bench.judge.calibration import build_cases
        from talkwalk_bench.tasks.steering_eval import eval_templates

        templates, _ = eval_templates(self.ctx.steering_file)
        ds = self.ctx.dataset
        p = self.params
        cases = build_cases(self.ctx.card, ds.items, ds.item_ids, n_cases=p.n_cases, kinds=p.kinds,
                            list_length=p.list_length, seed=self.ctx.seed, templates=templates)
        if not cases:
            raise BenchError(f"no known-answer case could be built from the card of {ds.name} for kinds {', '.join(p.kinds)}")
        return [Episode(id=c.id, user_id="", data={"kind": c.kind, "request": c.request, "predicate": c.predicate,
                                                     "good": list(c.good), "bad": list(c.bad)}) for c in cases]

    def play(self, episodes: Sequence[Episode]) -> list[dict[str, Any]]:
        from talkwalk_bench.judge.calibration import case_metrics, score_of
        from talkwalk_bench.judge.scoring import describe_list

        ds, card = self.ctx.dataset, self.ctx.card
        rif, rpw = self.rubrics["instruction_following"], self.rubrics["pairwise_preference"]
        jobs = []
        for ep in episodes:
            good = describe_list(ep.data["good"], ds.items, card, self.params.list_length)
            bad = describe_list(ep.data["bad"], ds.items, card, self.params.list_length)
            req = ep.data["request"]
            jobs += [(rif, {"request": req, "items": good}), (rif, {"request": req, "items": bad}),
                     (rpw, {"request": req, "items_a": good, "items_b": bad}),
                     (rpw, {"request": req, "items_a": bad, "items_b": good})]
        results = self.judge.judge_many(jobs)
        out = []
        for n, ep in enumerate(episodes):
            jg, jb, jab, jba = results[4 * n: 4 * n + 4]
            s_good = score_of(jg.value) if jg.ok else None
            s_bad = score_of(jb.value) if jb.ok else None
            ab = jab.value["choice"] if jab.ok else None
            ba = jba.value["choice"] if jba.ok else None
            out.append({"kind": ep.data["kind"], "request": ep.data["request"], "predicate": ep.data["predicate"],
                        "good": ep.data["good"], "bad": ep.data["bad"],
                        "scores": {"good": s_good, "bad": s_bad}, "choices": {"good_as_A": ab, "good_as_B": ba},
                        "judge": {"good": jg.as_record(), "bad": jb.as_record(), "good_as_A": jab.as_record(),
                                  "good_as_B": jba.as_record()},
                        "metrics": case_metrics(s_good, s_bad, ab, ba, judge_pass=self.params.judge_pass)})
        return out

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Estimate]:
        from talkwalk_bench.judge.calibration import variance_ci

        ok = [r for r in records if r.get("status") == "ok"]
        scores = [[s for s in (r.get("scores") or {}).values() if s is not None] for r in ok]
        return {"judge_score_variance": variance_ci(scores, seed=self.ctx.seed,
                                                    n_resamples=min(1000, self.spec.bootstrap.n_resamples))}

    def extras(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        from talkwalk_bench.judge.calibration import CHANCE, per_kind

        ok = [r for r in records if r.get("status") == "ok"]
        n_j = n_f = n_es = 0
        letters = {"A": 0, "B": 0, "tie": 0}
        for r in ok:
            for name, jr in (r.get("judge") or {}).items():
                n_j += 1
                n_f += not jr.get("ok")
                n_es += jr.get("expected_score") is not None
                if name.startswith("good_as") and jr.get("ok"):
                    letters[jr["choice"]] = letters.get(jr["choice"], 0) + 1
        cfg = self.judge.config
        return {"chance": dict(CHANCE),
                "judge": {"available": True, "judgments_in_records": n_j, "failed_in_records": n_f,
                          "with_expected_score": n_es, "pairwise_letters": letters,
                          "rubrics": {n: r.id for n, r in self.rubrics.items()},
                          "score_source": "expected score from logprobs" if n_es else "generated integer",
                          "model": cfg.model, "endpoint": cfg.endpoint, "this_process": self.judge.describe()},
                "per_kind": per_kind(records, seed=self.ctx.seed, n_resamples=min(1000, self.spec.bootstrap.n_resamples))}
