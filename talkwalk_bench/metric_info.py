"""Every reported metric, declared once: its name, direction, one-line definition, doc anchor and column group.

Task families say which of these they produce (``Family.produces``); specs,
suites and gates are checked against that list before anything runs; the
gate, the leaderboard ranking and arrows, the site, the viewer and the plots
read direction and definition from here. A family from another package
declares a new metric by putting a :class:`Metric` in its ``produces``.

Names follow ``base@K/slice``: ``@K`` stands for each cutoff in the spec's
``k``; ``/slice`` is a per-kind or per-part value of the same metric (a
request kind, a list), whose direction is the metric's unless ``slices``
says otherwise.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from talkwalk_bench.errors import BenchError

Direction = Literal["higher", "lower", "none"]
GROUPS = ("following the request", "steering effects", "relevance", "diversity and exposure", "conversation", "speed",
          "id validity", "LLM judge", "calibration", "other")


@dataclass(frozen=True)
class Metric:
    """One declared metric. ``name`` holds ``@K`` where the metric has a cutoff (``nDCG@K``)."""

    name: str
    direction: Direction
    definition: str
    doc: str = ""  # path under docs/ with an anchor
    group: str = "other"
    slices: Direction | None = None  # direction of ``name/slice`` values when it differs from ``direction``

    @property
    def has_cutoff(self) -> bool:
        return "@K" in self.name

    @property
    def stem(self) -> str:
        """The name without its cutoff (``nDCG``), as the spec's ``metrics:`` list selects it."""
        return self.name.replace("@K", "")

    def concrete(self, ks: Iterable[int]) -> list[str]:
        return [self.name.replace("@K", f"@{k}") for k in ks] if self.has_cutoff else [self.name]


def _group(group: str, doc: str, *rows: tuple) -> list[Metric]:
    """Rows of (name, direction, definition[, doc[, slices]]) sharing a group and, unless a row names its own, a doc."""
    out = []
    for name, direction, definition, *rest in rows:
        out.append(Metric(name, direction, definition, rest[0] if rest else doc, group, *rest[1:]))
    return out


_TASKS, _STEER, _JUDGE, _SEMID = "tasks.md#task-families", "steering.md#metrics", "judge.md", "semid.md#semantic-ids"
_BUILTIN: list[Metric] = [
    *_group("relevance", _TASKS,
            ("Hit@K", "higher", "share of users whose held-out item is in the top K"),
            ("Recall@K", "higher", "held-out items found in the top K / held-out items"),
            ("Precision@K", "higher", "held-out items found in the top K / K"),
            ("nDCG@K", "higher", "discounted gain of the held-out item's rank, 1/log2(rank+1), normalised by the ideal"),
            ("MRR@K", "higher", "1 / rank of the held-out item (0 beyond K)"),
            ("MAP@K", "higher", "mean average precision of the held-out items in the top K")),
    *_group("relevance", "tasks.md#cold-start-cold_start",
            ("new_users/Hit@K", "higher", "Hit@K for users never seen in training (metadata only)"),
            ("new_users/nDCG@K", "higher", "nDCG@K for users never seen in training"),
            ("new_users/Recall@K", "higher", "Recall@K for users never seen in training"),
            ("new_users/Precision@K", "higher", "Precision@K for users never seen in training"),
            ("new_users/MRR@K", "higher", "MRR@K for users never seen in training"),
            ("new_users/MAP@K", "higher", "MAP@K for users never seen in training"),
            ("new_items/Hit@K", "higher", "Hit@K when the held-out item was never trained on"),
            ("new_items/nDCG@K", "higher", "nDCG@K when the held-out item was never trained on"),
            ("new_items/Recall@K", "higher", "Recall@K when the held-out item was never trained on"),
            ("new_items/Precision@K", "higher", "Precision@K when the held-out item was never trained on"),
            ("new_items/MRR@K", "higher", "MRR@K when the held-out item was never trained on"),
            ("new_items/MAP@K", "higher", "MAP@K when the held-out item was never trained on")),
    *_group("diversity and exposure", "tasks.md#beyond-accuracy-beyond",
            ("coverage@K", "higher", "share of the catalog recommended to at least one user"),
            ("Gini@K", "lower", "inequality of exposure across the catalog (0 equal, near 1 a few items get all)"),
            ("ILD@K", "higher", "intra-list diversity: mean pairwise distance of a list's items"),
            ("novelty@K", "higher", "mean self-information -log2 p(i) of the recommended items"),
            ("ARP@K", "none", "average recommendation popularity (interactions per recommended item); descriptive"),
            ("tail_share@K", "higher", "share of recommended items from the long tail")),
    *_group("speed", "tasks.md#latency-latency",
            ("latency_mean_ms", "lower", "mean time per single request, after warm-up"),
            ("latency_p50_ms", "lower", "median time per single request"),
            ("latency_p95_ms", "lower", "95th percentile time per single request"),
            ("latency_p99_ms", "lower", "99th percentile time per single request"),
            ("throughput_rps", "higher", "requests served per second in batches")),
    *_group("relevance", _SEMID, *((f"L{d}@K", "higher", f"the target's first {d} semantic-id level(s) appear among the top K ids")
                                   for d in range(1, 9))),
    *_group("id validity", _SEMID,
            ("valid_id", "higher", "share of generated ids that name a catalog item"),
            ("duplicate_rate", "lower", "share of generated ids repeated within a list"),
            ("copy_of_history", "lower", "share of generated items copied from the user's history")),
    *_group("following the request", _STEER,
            ("constraint_following@K", "higher", "share of the top K satisfying the request's predicate (raw; compare with its chance level)"),
            ("constraint_following_norm@K", "higher", "constraint following rescaled by chance: 0 = chance, 1 = every item satisfies",
             "steering.md#chance-and-the-main-score"),
            ("steering_lift@K", "higher", "share satisfying the request in the steered list minus in the system's own neutral list"),
            ("attribute_control@K", "higher", "mass share of the requested attribute value in the top K")),
    *_group("steering effects", _STEER,
            ("preference_sensitivity@K", "higher", "how much two different requests move their own predicates apart (0 = text ignored)"),
            ("steering_entropy_reduction", "higher", "bits of uncertainty about the predicate removed by the request"),
            ("steering_precision", "higher", "(JS target - JS off-target) / sum: the requested attribute moves, the others stay",
             _STEER, "none"),
            ("reversibility", "higher", "share of the steer's movement undone by 'go back'", _STEER, "none"),
            ("steering_traceability", "higher", "cosine between the query's move and the probe direction of the request")),
    *_group("diversity and exposure", _STEER,
            ("diversity_gradient", "higher", "slope of ILD from 'stay close' to 'more variety'"),
            ("ild", "none", "intra-list diversity of the list after one request (the slice names the request)")),
    *_group("relevance", _STEER,
            ("relevance_under_steering@K", "higher", "Hit@K of the held-out item in the list steered toward it"),
            ("relevance_under_steering/RR@K", "higher", "reciprocal rank of the held-out item in the list steered toward it (0 beyond K)"),
            ("relevance_neutral@K", "none", "Hit@K of the held-out item in the neutral list")),
    *_group("conversation", "judge.md",
            ("turns_to_satisfaction", "lower", "critique turns until the simulated user accepts (cap when never)"),
            ("turns_to_satisfaction_when_satisfied", "lower", "turns to acceptance, over the conversations that ended in acceptance"),
            ("turns_to_satisfaction_no_critique", "lower", "turns to acceptance when the user only repeats the opening request"),
            ("turns_saved", "higher", "turns to acceptance without critiques minus with them (what listening saves)"),
            ("success_rate", "higher", "share of conversations where the simulated user accepts an item"),
            ("success_rate_no_critique", "higher", "share accepted when the user only repeats the opening request"),
            ("success_lift", "higher", "success rate with critiques minus without them"),
            ("exploration_velocity", "none", "new attribute cells shown per turn; descriptive"),
            ("first_turn_relevance", "higher", "share of the first list that satisfies the user's hidden target")),
    *_group("LLM judge", _JUDGE,
            ("judge_instruction_following", "higher", "LLM judge's 1-5 rating of how well the steered list follows the request"),
            ("judge_explanation_coherence", "higher", "LLM judge's 1-5 rating of the system's explanation"),
            ("judge_pairwise_win_rate", "higher", "share of pairs where the judge prefers the steered list over the neutral one"),
            ("judge_agreement", "higher", "agreement of the judge with the machine-checked predicate"),
            ("judge_machine_spearman", "higher", "Spearman correlation of judge ratings with the machine-checked share")),
    *_group("calibration", _JUDGE,
            ("judge_accuracy", "higher", "share of known-answer checks the judge gets right (pointwise and pairwise)"),
            ("judge_pointwise_accuracy", "higher", "share of lists the judge scores on the right side of the pass mark"),
            ("judge_good_above_bad", "higher", "share of cases where the honouring list scores above the violating one"),
            ("judge_score_gap", "higher", "mean score of the honouring list minus the violating one"),
            ("judge_pairwise_accuracy", "higher", "share of pairwise choices that pick the honouring list, both orders"),
            ("judge_position_bias", "lower", "share of cases where the judge picks the same position in both orders"),
            ("judge_score_variance", "none", "variance of the judge's pointwise scores; descriptive")),
]

METRICS: dict[str, Metric] = {}


def declare(*metrics: Metric) -> None:
    """Add metrics to the catalog; declaring a name again with another meaning is an error."""
    for m in metrics:
        if m.direction not in ("higher", "lower", "none"):
            raise BenchError(f"metric '{m.name}': direction must be higher, lower or none, not {m.direction!r}")
        if m.group not in GROUPS:
            raise BenchError(f"metric '{m.name}': group must be one of {', '.join(GROUPS)}, not {m.group!r}")
        old = METRICS.get(m.name)
        if old is not None and old != m:
            raise BenchError(f"metric '{m.name}' is declared twice with different meanings; keep one declaration")
        METRICS[m.name] = m


declare(*_BUILTIN)


def base_name(metric: str) -> tuple[str, str]:
    """``constraint_following@10/include`` -> (``constraint_following@K``, ``include``)."""
    generic = re.sub(r"@\d+", "@K", metric)
    for known in sorted(METRICS, key=len, reverse=True):
        if generic == known:
            return known, ""
        if generic.startswith(known + "/"):
            return known, generic[len(known) + 1:]
    return generic, ""


def lookup(metric: str) -> tuple[Metric | None, str]:
    """The declaration a reported name belongs to (None when undeclared) and its slice."""
    base, part = base_name(metric)
    return METRICS.get(base), part


def direction(metric: str) -> Direction:
    decl, part = lookup(metric)
    if decl is None:
        return "higher"  # an undeclared name in an old result file: read as most metrics are
    return (decl.slices or decl.direction) if part else decl.direction


def lower_is_better(metric: str) -> bool:
    return direction(metric) == "lower"


@dataclass(frozen=True)
class MetricInfo:
    name: str
    direction: Direction
    definition: str
    doc: str  # path under docs/ with an anchor, "" when none

    @property
    def arrow(self) -> str:
        return {"higher": "↑", "lower": "↓", "none": "·"}[self.direction]

    @property
    def direction_text(self) -> str:
        return {"higher": "higher is better", "lower": "lower is better", "none": "descriptive (no better direction)"}[self.direction]


def info(metric: str) -> MetricInfo:
    decl, part = lookup(metric)
    if decl is None:
        return MetricInfo(name=metric, direction="higher", definition="", doc="")
    text = decl.definition
    if part:
        text = f"{text}; {part.replace('_', ' ')} only" if decl.name != "ild" else (
            f"intra-list diversity of the list after the '{part.replace('_', ' ')}' request")
    return MetricInfo(name=metric, direction=direction(metric), definition=text, doc=decl.doc)


def group(metric: str) -> str:
    """Column group of a metric on a wide table (the family it reads)."""
    decl, _ = lookup(metric)
    return decl.group if decl is not None else "other"


# ----------------------------------------------------------------- families' declarations

def resolve(produces: Iterable[str | Metric], owner: str) -> list[Metric]:
    """A family's ``produces``: names from the catalog, or new :class:`Metric` declarations (declared here)."""
    out = []
    for item in produces:
        if isinstance(item, Metric):
            declare(item)
            out.append(item)
        elif item in METRICS:
            out.append(METRICS[item])
        else:
            raise BenchError(f"{owner} produces '{item}', which no one declares.{_close(item, list(METRICS))} "
                             "Add a Metric(...) to its produces or to talkwalk_bench/metric_info.py")
    return out


def _close(name: str, choices: list[str]) -> str:
    lower = {c.lower(): c for c in choices}
    hit = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.5)
    return f" Did you mean '{lower[hit[0]]}'?" if hit else ""


def check_name(metric: str, produced: list[Metric], ks: list[int], where: str, family: str) -> None:
    """A reported name (``nDCG@10``, ``constraint_following@5/include``) that the family produces at the spec's cutoffs."""
    decl, _ = lookup(metric)
    names = [c for m in produced for c in m.concrete(ks)]
    if decl is None or decl not in produced:
        raise BenchError(f"{where}: '{metric}' is not a metric of the {family} family.{_close(metric, names)} "
                         f"It reports: {', '.join(m.name for m in produced)} (K in the spec's k {ks})")
    cut = re.findall(r"@(\d+)", metric)
    if decl.has_cutoff and (not cut or int(cut[0]) not in ks):
        raise BenchError(f"{where}: '{metric}' needs a cutoff from the spec's k {ks}.{_close(metric, names)}")
    if not decl.has_cutoff and cut:
        raise BenchError(f"{where}: '{metric}' has no cutoff; write '{decl.name}'")


def check_selection(selected: list[str], produced: list[Metric], where: str, family: str) -> None:
    """The spec's ``metrics:`` list: stems (``nDCG``) of metrics the family produces."""
    stems = list(dict.fromkeys(m.stem.rsplit("/", 1)[-1] for m in produced))  # new_users/nDCG -> nDCG
    for name in selected:
        if name not in stems:
            raise BenchError(f"{where}: metrics: '{name}' is not a metric of the {family} family.{_close(name, stems)} "
                             f"Choose from: {', '.join(stems)}")
