"""Judge metrics for steering episodes, usable by any task family.

``SteeringJudge`` takes, per episode, the request text, the system's list
(described from the dataset card), its explanation, the machine check (share
of the list satisfying the request's predicate) and optionally a reference
list, and returns the per-episode judge metrics:

- ``judge_instruction_following``: the 1-5 rubric score (the expected score
  from the score token's probabilities where the endpoint returns logprobs);
- ``judge_explanation_coherence``: 1-5, for systems with the ``explanations``
  capability that returned an explanation;
- ``judge_pairwise_win_rate``: the judge is asked in both orders (system as
  A, then as B) and each answer scores 1 / 0.5 / 0 when it prefers the
  system's list / calls a tie / prefers the reference list; the episode's
  value is their mean, so a judge that always answers "A" scores 0.5 whatever
  the lists (one shuffled order, as before, only averaged that bias out over
  episodes and left each verdict a coin toss on position);
- ``judge_agreement``: 1 when the judge's verdict (score >= ``judge_pass``)
  equals the machine's (share >= ``machine_pass``), else 0.

``extras`` records the judge calibration (``judge_calibration`` task) that
backs these numbers: ``-O judge_calibration=RESULT.json``, else the newest
successful calibration in ``runs/judge_calibration`` of the same model,
endpoint and rubric versions; without one the judge is "uncalibrated".

A failed judgment leaves its metric None for that episode (not a score);
``summarize`` turns metrics without any judgment into "n/a" with the reason
and adds the judge/machine Spearman correlation. A family adds these to its
own ``play``/``summarize``/``extras``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from talkwalk_bench.judge.calibration import score_of
from talkwalk_bench.metrics.stats import Estimate, not_available

JUDGE_METRICS = ("judge_instruction_following", "judge_explanation_coherence", "judge_pairwise_win_rate", "judge_agreement")


@dataclass
class JudgeItem:
    """One episode to judge."""

    episode: str
    request: str
    items: str  # the system's list, numbered, one described item a line
    machine_share: float | None = None
    explanation: str | None = None
    reference_items: str | None = None


def describe_list(items: Sequence[str], rows: dict[str, dict[str, Any]], card: Any, limit: int = 10) -> str:
    """A numbered list of items in words, from the dataset card's language bridge."""
    lines = []
    for n, it in enumerate(items[:limit], 1):
        row = dict(rows.get(it, {}))
        text = card.item.describe(row, include_title=True) if card is not None else str(row)
        lines.append(f"{n}. {text or it}")
    return "\n".join(lines) if lines else "(empty list)"


class SteeringJudge:
    """Wraps a ``Judge`` (or None with the reason it is unavailable) with the steering rubrics."""

    def __init__(self, judge: Any, unavailable: str | None = None, *, seed: int = 0, explanations: bool = False,
                 machine_pass: float = 0.5, judge_pass: int = 3, reference: str | None = None) -> None:
        self.judge = judge
        self.unavailable = unavailable
        self.seed = seed
        self.explanations = explanations
        self.machine_pass = machine_pass
        self.judge_pass = judge_pass
        self.reference = reference
        if judge is not None:
            from talkwalk_bench.judge.rubrics import load_rubric

            self.rubrics = {n: load_rubric(n) for n in ("instruction_following", "explanation_coherence", "pairwise_preference")}
        else:
            self.rubrics = {}

    @classmethod
    def from_options(cls, options: dict[str, Any], **kw: Any) -> SteeringJudge:
        from talkwalk_bench.judge.client import Judge, JudgeConfig

        cfg = JudgeConfig.from_options(options).with_served_model()
        why = cfg.missing()
        if why:
            return cls(None, why, **kw)
        return cls(Judge(cfg), None, **kw)

    def score(self, batch: Sequence[JudgeItem]) -> list[dict[str, Any]]:
        """Per episode: ``{"metrics": {...}, "judge": {...}}`` to merge into the episode record."""
        if self.judge is None:
            return [{"metrics": dict.fromkeys(JUDGE_METRICS), "judge": {"skipped": self.unavailable}} for _ in batch]
        jobs, where = [], []
        for i, e in enumerate(batch):
            jobs.append((self.rubrics["instruction_following"], {"request": e.request, "items": e.items}))
            where.append((i, "instruction_following"))
            if self.explanations and e.explanation:
                jobs.append((self.rubrics["explanation_coherence"], {"request": e.request, "items": e.items, "explanation": e.explanation}))
                where.append((i, "explanation_coherence"))
            if e.reference_items is not None:
                for a, b, name in ((e.items, e.reference_items, "pairwise_system_as_A"),
                                   (e.reference_items, e.items, "pairwise_system_as_B")):
                    jobs.append((self.rubrics["pairwise_preference"], {"request": e.request, "items_a": a, "items_b": b}))
                    where.append((i, name))
        results = self.judge.judge_many(jobs)
        out = [{"metrics": dict.fromkeys(JUDGE_METRICS), "judge": {}} for _ in batch]
        for (i, rubric), j in zip(where, results, strict=True):
            e, rec = batch[i], out[i]
            rec["judge"][rubric] = j.as_record()
            if not j.ok:
                continue
            m = rec["metrics"]
            if rubric == "instruction_following":
                score = score_of(j.value)
                m["judge_instruction_following"] = score
                if e.machine_share is not None:
                    m["judge_agreement"] = float((score >= self.judge_pass) == (e.machine_share >= self.machine_pass))
            elif rubric == "explanation_coherence":
                m["judge_explanation_coherence"] = score_of(j.value)
            else:
                system_is = rubric[-1]
                choice = j.value["choice"]
                rec["judge"][rubric]["system_was"] = system_is
                rec.setdefault("_wins", []).append(0.5 if choice == "tie" else float(choice == system_is))
        for rec in out:
            wins = rec.pop("_wins", [])
            # both orders answered: their mean; one failed: no debiased value for this episode
            if len(wins) == 2:
                rec["metrics"]["judge_pairwise_win_rate"] = (wins[0] + wins[1]) / 2
        return out

    def summarize(self, records: list[dict[str, Any]], *, system_name: str = "system", n_resamples: int = 1000) -> dict[str, Estimate]:
        """"n/a" with the reason for judge metrics that have no judgment, and the judge/machine Spearman rho."""
        ok = [r for r in records if r.get("status") == "ok"]
        if self.judge is None:
            out = {m: not_available(self.unavailable or "no judge") for m in JUDGE_METRICS}
            out["judge_machine_spearman"] = not_available(self.unavailable or "no judge")
            return out
        out: dict[str, Estimate] = {}
        reasons = Counter()
        for r in ok:
            for jr in (r.get("judge") or {}).values():
                if isinstance(jr, dict) and jr.get("ok") is False:
                    reasons[str(jr.get("error", "?")).split(":")[0]] += 1
        failed = f"every judgment failed ({', '.join(f'{k}: {v}' for k, v in reasons.most_common(3))})" if reasons else "no judgment"
        for m in JUDGE_METRICS:
            if any((r.get("metrics") or {}).get(m) is not None for r in ok):
                continue
            if m == "judge_explanation_coherence" and not self.explanations:
                out[m] = not_available(f"system '{system_name}' does not declare the explanations capability")
            elif m == "judge_explanation_coherence":
                out[m] = not_available(f"system '{system_name}' returned no explanation" if not reasons else failed)
            elif m == "judge_pairwise_win_rate" and self.reference is None:
                out[m] = not_available("no reference list to compare with")
            else:
                out[m] = not_available(failed)
        pairs = [(r["metrics"]["judge_instruction_following"], r.get("machine_share")) for r in ok
                 if (r.get("metrics") or {}).get("judge_instruction_following") is not None and r.get("machine_share") is not None]
        out["judge_machine_spearman"] = spearman_ci(pairs, seed=self.seed, n_resamples=n_resamples)
        return out

    def extras(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        ok = [r for r in records if r.get("status") == "ok"]
        n_j = n_f = 0
        for r in ok:
            for jr in (r.get("judge") or {}).values():
                if isinstance(jr, dict) and "ok" in jr:
                    n_j += 1
                    n_f += not jr["ok"]
        info: dict[str, Any] = {"available": self.judge is not None, "unavailable_reason": self.unavailable,
                                "judgments_in_records": n_j, "failed_in_records": n_f,
                                "agreement_rule": f"judge score >= {self.judge_pass} <=> machine share >= {self.machine_pass}",
                                "reference": self.reference}
        if self.judge is not None:
            info["rubrics"] = {n: r.id for n, r in self.rubrics.items()}
            info["this_process"] = self.judge.describe()
            info["pairwise_orders"] = "both (system as A, then as B); the win rate is their mean"
            info["calibration"] = find_calibration(self.judge.config, info["rubrics"])
        return info


def find_calibration(config: Any, rubrics: dict[str, str]) -> dict[str, Any]:
    """The calibration result backing a judge: {"verdict", "path", "model", "endpoint", "judge_accuracy", ...}.

    ``config.calibration`` names a result file (or "none"); otherwise the newest
    successful ``judge_calibration`` result under ``runs/`` whose model,
    endpoint and rubric versions match is used. Verdict "uncalibrated" when
    there is none, "no better than chance" when its accuracy CI covers chance.
    """
    from pathlib import Path

    from talkwalk_bench.errors import BenchError
    from talkwalk_bench.judge.calibration import CHANCE, MAIN, verdict
    from talkwalk_bench.paths import runs_dir
    from talkwalk_bench.results import read_result

    wanted = {"model": config.model, "endpoint": config.endpoint}
    if config.calibration in ("none", "off"):
        return {"verdict": "uncalibrated", "reason": "-O judge_calibration=none", **wanted}
    if config.calibration:
        candidates = [Path(config.calibration)]
    else:
        folder = runs_dir() / "judge_calibration"
        candidates = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
    why = "no judge_calibration result for this model, endpoint and rubric versions; run `talkwalk-bench judge-calibrate`"
    for path in candidates:
        try:
            res = read_result(path)
        except BenchError as exc:
            if config.calibration:
                why = f"{path}: {exc}"
            continue
        proto = res.protocol or {}
        same = (res.task.family == "judge_calibration" and res.status == "success"
                and proto.get("judge_model") == config.model and proto.get("judge_endpoint") == config.endpoint
                and all(proto.get("rubrics", {}).get(n) == rubrics.get(n) for n in proto.get("rubrics", {}) if n in rubrics))
        if not same:
            if config.calibration:
                why = f"{path}: not a successful judge_calibration of {config.model} at {config.endpoint} with these rubrics"
            continue
        m = res.metrics.get(MAIN)
        est = m.model_dump() if m is not None else None
        return {"verdict": verdict(est), "path": str(path), **wanted, "rubrics": proto.get("rubrics"),
                MAIN: est, "chance": CHANCE[MAIN], "run_id": res.run_id}
    return {"verdict": "uncalibrated", "reason": why, **wanted}


def spearman_ci(pairs: list[tuple[float, float]], *, seed: int = 0, n_resamples: int = 1000) -> Estimate:
    """Spearman's rho with a percentile bootstrap CI over episodes."""
    from scipy import stats

    if len(pairs) < 3:
        return not_available(f"fewer than 3 episodes with both a judge score and a machine check ({len(pairs)})", n=len(pairs))
    x = np.array([p[0] for p in pairs], dtype=float)
    y = np.array([p[1] for p in pairs], dtype=float)
    if np.all(x == x[0]) or np.all(y == y[0]):
        return not_available("judge scores or machine checks are constant: the correlation is undefined", n=len(pairs))
    rho = float(stats.spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_resamples):
        idx = rng.integers(0, len(x), len(x))
        xs, ys = x[idx], y[idx]
        if np.all(xs == xs[0]) or np.all(ys == ys[0]):
            continue
        boots.append(stats.spearmanr(xs, ys).statistic)
    boots = np.array([b for b in boots if not np.isnan(b)])
    if boots.size < 10:
        return Estimate(rho, rho, rho, len(pairs))
    return Estimate(rho, float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975)), len(pairs))
