"""Judge calibration: known-answer cases from the dataset card and the steering predicates, and their scores.

A case is one steering request (a request kind, its predicate, an eval-set
phrasing) with two lists whose answer is known from item metadata: a *good*
list where every item satisfies the predicate and a *bad* list where every
item violates it (its attributes known, the predicate false). The judge sees
each list alone (the instruction-following rubric) and both together in
both orders (the pairwise rubric). Per case:

- ``judge_accuracy`` (main): the share of the four known-answer questions
  answered right: good list passes (score >= ``judge_pass``), bad list fails,
  good list preferred with it shown as A, and with it shown as B (a tie
  counts 1/2). A constant judge, an always-"A" judge and a coin all score 1/2:
  the chance level.
- ``judge_pointwise_accuracy``: the two pointwise questions alone; chance 1/2.
- ``judge_good_above_bad``: 1 when the good list scores higher, 1/2 on a tie,
  0 otherwise; chance 1/2 (a constant judge ties every case).
- ``judge_score_gap``: good score minus bad score (1-5 scale); chance 0.
- ``judge_pairwise_accuracy``: the pairwise verdict debiased by asking both
  orders: the mean of the two answers' correctness (good wins both: 1; one
  each, or ties: 1/2; bad wins both: 0). Chance 1/2; an always-"A" judge 1/2.
- ``judge_position_bias``: 1 when both orders got the same letter (A, A or
  B, B: the answer followed the position, not the list), else 0. A perfect
  judge 0, an always-"A" judge 1, a coin 1/2 (its chance level).

Scores are the expected score from the score token's probabilities where the
endpoint returns logprobs (``talkwalk_bench.judge.logprobs``), the generated
integer otherwise. ``summarize`` adds ``judge_score_variance`` (variance of
all scores; 0 for a judge that says the same thing whatever it reads), and
``verdict`` says whether the accuracy's CI lies above chance.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from talkwalk_bench.metrics.stats import Estimate, mean_ci, not_available

CALIBRATION_METRICS = ("judge_accuracy", "judge_pointwise_accuracy", "judge_good_above_bad", "judge_score_gap",
                       "judge_pairwise_accuracy", "judge_position_bias")
# what a judge that does not read the lists scores (constant, always-"A", coin)
CHANCE = {"judge_accuracy": 0.5, "judge_pointwise_accuracy": 0.5, "judge_good_above_bad": 0.5, "judge_score_gap": 0.0,
          "judge_pairwise_accuracy": 0.5, "judge_position_bias": 0.5}
MAIN = "judge_accuracy"


@dataclass(frozen=True)
class Case:
    """One known-answer case: a request and a list that honours it and one that violates it (item ids)."""

    id: str
    kind: str
    request: str
    predicate: dict[str, Any]
    good: tuple[str, ...]
    bad: tuple[str, ...]


def _violates(iv: Any, predicate: Any, item: str) -> bool:
    """The item's values for every attribute of the request are known and the predicate is false."""
    values = iv[item]
    for attr in predicate.attributes():
        v = values.get(attr)
        if v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, frozenset) and not v):
            return False
    return not iv.satisfies(predicate, item)


def build_cases(card: Any, items: dict[str, dict[str, Any]], item_ids: Sequence[str], *, n_cases: int,
                kinds: Sequence[str], list_length: int, seed: int,
                templates: dict[str, tuple[str, ...]]) -> list[Case]:
    """``n_cases`` cases, request kinds cycled, drawn deterministically from ``seed``.

    A draw whose request has fewer than ``list_length`` satisfying or violating
    items is redrawn (bounded); kinds the card cannot express are skipped.
    """
    from talkwalk_bench.steering import ItemValues, Vocabulary
    from talkwalk_bench.tasks.judge import JudgeFamily

    vocab = Vocabulary(card)
    iv = ItemValues(card, items, item_ids)
    ids = list(iv.item_ids)
    cases: list[Case] = []
    pools: dict[str, tuple[list[str], list[str]]] = {}
    usable = [k for k in kinds if templates.get(k)]
    for n in range(n_cases):
        if not usable:
            break
        kind = usable[n % len(usable)]
        rng = random.Random(f"judge_calibration:{seed}:{n}")
        for _ in range(20):
            steer = JudgeFamily._draw(kind, rng, vocab)
            if steer is None:
                break
            key = json.dumps(steer.predicate.to_dict(), sort_keys=True)
            if key not in pools:
                mask = iv.mask(steer.predicate)
                pools[key] = ([it for it, m in zip(ids, mask, strict=True) if m],
                              [it for it, m in zip(ids, mask, strict=True) if not m and _violates(iv, steer.predicate, it)])
            good, bad = pools[key]
            if len(good) < list_length or len(bad) < list_length:
                continue
            template = rng.choice(list(templates[kind]))
            cases.append(Case(id=f"c{n}", kind=kind, request=steer.say(template, noun=vocab.noun),
                              predicate=steer.predicate.to_dict(), good=tuple(rng.sample(good, list_length)),
                              bad=tuple(rng.sample(bad, list_length))))
            break
    return cases


def score_of(value: dict[str, Any]) -> float:
    """The probability-weighted score where the judgment has one, the generated integer otherwise."""
    es = value.get("expected_score")
    return float(es) if es is not None else float(value["score"])


def case_metrics(s_good: float | None, s_bad: float | None, ab: str | None, ba: str | None, *,
                 judge_pass: float) -> dict[str, float | None]:
    """Per-case metrics from the two scores and the two pairwise choices (None: that judgment failed).

    ``ab`` is the choice with the good list shown as A, ``ba`` with it shown as B.
    """
    m: dict[str, float | None] = dict.fromkeys(CALIBRATION_METRICS)
    answers: list[float] = []
    if s_good is not None:
        answers.append(float(s_good >= judge_pass))
    if s_bad is not None:
        answers.append(float(s_bad < judge_pass))
    if s_good is not None and s_bad is not None:
        m["judge_pointwise_accuracy"] = (float(s_good >= judge_pass) + float(s_bad < judge_pass)) / 2
        m["judge_good_above_bad"] = 1.0 if s_good > s_bad else 0.5 if s_good == s_bad else 0.0
        m["judge_score_gap"] = float(s_good - s_bad)
    right = []
    for choice, good_is in ((ab, "A"), (ba, "B")):
        if choice is not None:
            right.append(0.5 if choice == "tie" else float(choice == good_is))
    answers.extend(right)
    if len(right) == 2:
        m["judge_pairwise_accuracy"] = (right[0] + right[1]) / 2
        m["judge_position_bias"] = float(ab == ba and ab in ("A", "B"))
    if answers:
        m["judge_accuracy"] = float(np.mean(answers))
    return m


def variance_ci(per_case: list[list[float]], *, seed: int = 0, n_resamples: int = 1000) -> Estimate:
    """Variance of all scores, with a percentile bootstrap CI over cases (both of a case's scores move together)."""
    cases = [c for c in per_case if c]
    if len(cases) < 2:
        return not_available(f"fewer than 2 cases with a score ({len(cases)})", n=len(cases))
    flat = np.concatenate([np.asarray(c, dtype=float) for c in cases])
    value = float(flat.var())
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_resamples):
        idx = rng.integers(0, len(cases), len(cases))
        boots.append(float(np.concatenate([np.asarray(cases[i], dtype=float) for i in idx]).var()))
    return Estimate(value, float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975)), len(cases))


def verdict(est: Estimate | dict[str, Any] | None, chance: float = CHANCE[MAIN]) -> str:
    """'calibrated' when the accuracy's CI lies above chance; 'no better than chance' when it covers
    or lies below it; 'uncalibrated' when there is no accuracy (no judgment)."""
    if est is None:
        return "uncalibrated"
    low = est.get("ci_low") if isinstance(est, dict) else est.ci_low
    value = est.get("value") if isinstance(est, dict) else est.value
    if value is None or low is None:
        return "uncalibrated"
    return "calibrated" if low > chance else "no better than chance"


def per_kind(records: list[dict[str, Any]], *, seed: int = 0, n_resamples: int = 1000) -> dict[str, dict[str, Any]]:
    """``judge_accuracy`` per request kind, with n and CI."""
    by: dict[str, list[float]] = {}
    for r in records:
        v = (r.get("metrics") or {}).get(MAIN)
        if r.get("status") == "ok" and v is not None:
            by.setdefault(r["kind"], []).append(float(v))
    return {k: {**mean_ci(v, seed=seed, n_resamples=n_resamples).as_dict(), "chance": CHANCE[MAIN]} for k, v in sorted(by.items())}
