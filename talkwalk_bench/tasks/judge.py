"""Judge: an LLM rates single-turn steering lists; its verdicts are checked against the predicates.

Each episode is a real test user (history, metadata) with one steering
request built from the dataset card (``talkwalk_bench.steering``: include,
exclude, decade, genre+decade, genre-but-not-genre), phrased with an
``eval``-set template, and with at least K unseen items satisfying it. The
system answers with a top-K list; the harness checks the list against the
request's predicate (``constraint_following@K``) and asks the judge (any
OpenAI-compatible endpoint, ``-O judge_base_url=... -O judge_model=...``) for
the rubric scores listed in ``talkwalk_bench.judge.scoring``. The pairwise
reference is the popularity list over the user's unseen items, or another
run's lists (``-O judge_reference=RESULT.json`` of the same task and seed).

Without an endpoint every judge metric is "n/a" with the reason; the machine
check is still reported.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from talkwalk_bench.errors import BenchError
from talkwalk_bench.metrics.stats import Estimate
from talkwalk_bench.tasks.base import Episode, Family, register_family
from talkwalk_bench.tasks.ranking import sample_users
from talkwalk_bench.types import ORACLE_KEY, Request, Turn

Kind = Literal["include", "exclude", "range_bin", "include_range", "include_exclude"]


class JudgeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_users: int | None = Field(100, ge=1, description="sample this many test users (seeded); all when null")
    kinds: list[Kind] = Field(default_factory=lambda: ["include", "exclude", "range_bin", "include_range", "include_exclude"],
                              min_length=1, description="steering request kinds, cycled over users")
    pairwise: bool = Field(True, description="also ask which of the system's and the reference list is better")
    machine_pass: float = Field(0.5, ge=0, le=1, description="the machine says 'honoured' when this share of the top-K satisfies the predicate")
    judge_pass: int = Field(3, ge=1, le=5, description="the judge says 'honoured' at this instruction-following score or above")
    list_length: int = Field(10, ge=1, le=20, description="items shown to the judge (the top of the list)")


@register_family
class JudgeFamily(Family):
    """LLM-as-judge of steering lists (instruction following, explanation coherence, pairwise), checked against predicates."""

    name = "judge"
    produces = ("constraint_following@K", "judge_instruction_following", "judge_explanation_coherence",
                "judge_pairwise_win_rate", "judge_agreement", "judge_machine_spearman")
    reads_steering_file = True
    Params = JudgeParams
    needs_card = True
    options = ("judge", "judge_reference")

    @cached_property
    def _steering(self) -> tuple[Any, Any, dict[str, tuple[str, ...]]]:
        from talkwalk_bench.steering import ItemValues, Vocabulary
        from talkwalk_bench.steering.phrasings import _eval_templates

        ds = self.ctx.dataset
        templates, _ = _eval_templates(self.ctx.steering_file)
        return Vocabulary(self.ctx.card), ItemValues(self.ctx.card, ds.items, ds.item_ids), templates

    @cached_property
    def scorer(self) -> Any:
        from talkwalk_bench.judge.scoring import SteeringJudge

        meta = getattr(self.ctx.system, "meta", None)
        explanations = bool(meta is not None and hasattr(meta, "has") and meta.has("explanations"))
        reference = None
        if self.params.pairwise:
            reference = "popularity over the user's unseen items"
            if self.ctx.options.get("judge_reference"):
                reference = f"lists of {self.ctx.options['judge_reference']}"
        return SteeringJudge.from_options(self.ctx.options, seed=self.ctx.seed, explanations=explanations,
                                          machine_pass=self.params.machine_pass, judge_pass=self.params.judge_pass,
                                          reference=reference)

    @cached_property
    def _reference_lists(self) -> dict[str, list[str]] | None:
        ref = self.ctx.options.get("judge_reference")
        if not ref:
            return None
        p = Path(str(ref))
        if p.suffix == ".json":
            p = p.with_suffix(".episodes.jsonl")
        if not p.exists():
            raise BenchError(f"-O judge_reference={ref}: {p} not found; pass a result JSON (its .episodes.jsonl beside it) of the judge task")
        out = {}
        with p.open(encoding="utf-8") as f:
            for line in f:
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if r.get("status") == "ok" and isinstance(r.get("ranked"), list):
                    out[r["episode"]] = r["ranked"]
        return out

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "request": "one steering request per test user, eval-set phrasing",
                "judge_reference": self.scorer.reference if self.params.pairwise else None}

    # -- episodes ----------------------------------------------------------------
    def episodes(self) -> list[Episode]:
        vocab, iv, templates = self._steering
        split, stage = self.ctx.split, self.ctx.stage
        held = split.test_item if stage == "test" else split.valid_item
        users = sample_users(list(held), self.params.max_users, self.ctx.seed)
        kinds = self.params.kinds
        k = self.spec.k_max
        masks: dict[str, np.ndarray] = {}
        out = []
        for n, u in enumerate(users):
            rng = random.Random(f"judge:{self.ctx.seed}:{u}")
            hist_idx = np.array([iv.index[i] for i in split.history(u, stage) if i in iv.index], dtype=int)
            for j in range(len(kinds)):
                kind = kinds[(n + j) % len(kinds)]
                steer = self._draw(kind, rng, vocab)
                if steer is None:
                    continue
                key = json.dumps(steer.predicate.to_dict(), sort_keys=True)
                if key not in masks:
                    masks[key] = iv.mask(steer.predicate)
                m = masks[key]
                if int(m.sum() - m[hist_idx].sum()) < k:
                    continue
                options = templates.get(kind) or ()
                if not options:
                    continue
                template = rng.choice(list(options))
                out.append(Episode(id=f"u{u}", user_id=u, data={
                    "kind": kind, "template": template, "utterance": steer.say(template, noun=vocab.noun),
                    "predicate": steer.predicate.to_dict()}))
                break
        return out

    @staticmethod
    def _draw(kind: str, rng: random.Random, vocab: Any) -> Any:
        values, bins = vocab.values(), vocab.bins()
        if kind in ("include", "exclude", "include_exclude") and not values:
            return None
        if kind in ("range_bin", "include_range") and not bins:
            return None
        if kind == "include":
            return vocab.include(rng.choice(values), rng)
        if kind == "exclude":
            return vocab.exclude(rng.choice(values), rng)
        if kind == "range_bin":
            return vocab.range_bin(rng.choice(bins).label, rng)
        if kind == "include_range":
            return vocab.include_range(rng.choice(values), rng.choice(bins).label, rng)
        a, b = rng.sample(values, 2)
        return vocab.include_exclude(a, b, rng)

    # -- play --------------------------------------------------------------------
    def _is_oracle(self) -> bool:
        return bool(getattr(getattr(self.ctx.system, "meta", None), "is_oracle", False))

    def play(self, episodes: Sequence[Episode]) -> list[dict[str, Any]]:
        from talkwalk_bench.judge.scoring import JudgeItem, describe_list
        from talkwalk_bench.steering import predicate_from_dict

        _, iv, _ = self._steering
        split, ds, stage = self.ctx.split, self.ctx.dataset, self.ctx.stage
        k, length = self.spec.k_max, self.params.list_length
        oracle = self._is_oracle()
        preds = [predicate_from_dict(ep.data["predicate"]) for ep in episodes]
        requests = []
        for ep, pred in zip(episodes, preds, strict=True):
            hist = split.history(ep.user_id, stage)
            context = {ORACLE_KEY: pred} if oracle else {}
            requests.append(Request(user_id=ep.user_id, history=hist, user=ds.users.get(ep.user_id, {}), context=context,
                                    conversation=(Turn(ep.data["utterance"]),), exclude=frozenset(hist), session_id=ep.id))
        rankings = self.ctx.recommend(requests, k)
        refs = self._reference(requests) if self.params.pairwise else [None] * len(episodes)
        card = self.ctx.card
        items, out = [], []
        for ep, pred, r, ref in zip(episodes, preds, rankings, refs, strict=True):
            ranked = list(r.items[:k])
            share = float(np.mean([iv.satisfies(pred, i) for i in ranked])) if ranked else 0.0
            ref_items = ref.get(ep.id) if isinstance(ref, dict) else ref
            items.append(JudgeItem(episode=ep.id, request=ep.data["utterance"], items=describe_list(ranked, ds.items, card, length),
                                   machine_share=share, explanation=r.explanation,
                                   reference_items=describe_list(ref_items, ds.items, card, length) if ref_items is not None else None))
            out.append({"kind": ep.data["kind"], "utterance": ep.data["utterance"], "predicate": ep.data["predicate"],
                        "ranked": ranked, "explanation": r.explanation, "machine_share": share,
                        "metrics": {f"constraint_following@{k}": share}})
        for rec, js in zip(out, self.scorer.score(items), strict=True):
            rec["metrics"].update(js["metrics"])
            rec["judge"] = js["judge"]
        return out

    def _reference(self, requests: Sequence[Request]) -> list[list[str] | None]:
        k = self.spec.k_max
        lists = self._reference_lists
        if lists is not None:
            return [lists.get(r.session_id) for r in requests]
        pop = self._popularity_order
        return [[i for i in pop if i not in r.exclude][:k] for r in requests]

    @cached_property
    def _popularity_order(self) -> list[str]:
        counts = self.ctx.split.item_popularity
        ids = self.ctx.dataset.item_ids
        return sorted(ids, key=lambda i: (-counts.get(i, 0), (0, int(i)) if i.isdigit() else (1, i)))

    # -- summary -----------------------------------------------------------------
    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Estimate]:
        name = getattr(getattr(self.ctx.system, "meta", None), "name", "system")
        return self.scorer.summarize(records, system_name=name, n_resamples=min(1000, self.spec.bootstrap.n_resamples))

    def extras(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        _, iv, _ = self._steering
        from talkwalk_bench.steering import predicate_from_dict

        ok = [r for r in records if r.get("status") == "ok"]
        k = self.spec.k_max
        # chance: the share of the catalog that satisfies each episode's predicate
        chance = [float(iv.mask(predicate_from_dict(r["predicate"])).mean()) for r in ok]
        out: dict[str, Any] = {"judge": self.scorer.extras(records)}
        if chance:
            out["chance"] = {f"constraint_following@{k}": float(np.mean(chance))}
        return out
