"""What each reported metric means: its direction, a one-line definition and the doc that defines it.

The leaderboard site (header arrows, tooltips, links), the episode viewer
and the plots ask here; the direction of lower-is-better metrics comes from
``results.lower_is_better`` so the gate and the pages cannot disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from talkwalk_bench.results import lower_is_better

Direction = Literal["higher", "lower", "none"]

# base name (cutoff replaced by @K, per-kind suffix dropped) -> (definition, doc anchor)
_DEFS: dict[str, tuple[str, str]] = {
    "Hit@K": ("share of users whose held-out item is in the top K", "tasks.md#task-families"),
    "Recall@K": ("held-out items found in the top K / held-out items", "tasks.md#task-families"),
    "Precision@K": ("held-out items found in the top K / K", "tasks.md#task-families"),
    "nDCG@K": ("discounted gain of the held-out item's rank, 1/log2(rank+1), normalised by the ideal", "tasks.md#task-families"),
    "MRR@K": ("1 / rank of the held-out item (0 beyond K)", "tasks.md#task-families"),
    "MAP@K": ("mean average precision of the held-out items in the top K", "tasks.md#task-families"),
    "coverage@K": ("share of the catalog recommended to at least one user", "tasks.md#beyond-accuracy-beyond"),
    "Gini@K": ("inequality of exposure across the catalog (0 equal, near 1 a few items get all)", "tasks.md#beyond-accuracy-beyond"),
    "ILD@K": ("intra-list diversity: mean pairwise distance of a list's items", "tasks.md#beyond-accuracy-beyond"),
    "novelty@K": ("mean self-information -log2 p(i) of the recommended items", "tasks.md#beyond-accuracy-beyond"),
    "ARP@K": ("average recommendation popularity (interactions per recommended item); descriptive", "tasks.md#beyond-accuracy-beyond"),
    "tail_share@K": ("share of recommended items from the long tail", "tasks.md#beyond-accuracy-beyond"),
    "latency_mean_ms": ("mean time per single request, after warm-up", "tasks.md#latency-latency"),
    "latency_p50_ms": ("median time per single request", "tasks.md#latency-latency"),
    "latency_p95_ms": ("95th percentile time per single request", "tasks.md#latency-latency"),
    "latency_p99_ms": ("99th percentile time per single request", "tasks.md#latency-latency"),
    "throughput_rps": ("requests served per second in batches", "tasks.md#latency-latency"),
    "new_users/Hit@K": ("Hit@K for users never seen in training (metadata only)", "tasks.md#cold-start-cold_start"),
    "new_users/nDCG@K": ("nDCG@K for users never seen in training", "tasks.md#cold-start-cold_start"),
    "new_items/Hit@K": ("Hit@K when the held-out item was never trained on", "tasks.md#cold-start-cold_start"),
    "new_items/nDCG@K": ("nDCG@K when the held-out item was never trained on", "tasks.md#cold-start-cold_start"),
    "L1@K": ("the target's first semantic-id level appears among the top K ids", "semid.md#semantic-ids"),
    "L2@K": ("the target's first two semantic-id levels appear among the top K ids", "semid.md#semantic-ids"),
    "L3@K": ("the target's first three semantic-id levels appear among the top K ids", "semid.md#semantic-ids"),
    "valid_id": ("share of generated ids that name a catalog item", "semid.md#semantic-ids"),
    "duplicate_rate": ("share of generated ids repeated within a list", "semid.md#semantic-ids"),
    "copy_of_history": ("share of generated items copied from the user's history", "semid.md#semantic-ids"),
    "constraint_following@K": ("share of the top K satisfying the request's predicate (raw; compare with its chance level)", "steering.md#metrics"),
    "constraint_following_norm@K": ("constraint following rescaled by chance: 0 = chance, 1 = every item satisfies", "steering.md#chance-and-the-main-score"),
    "steering_lift@K": ("share satisfying the request in the steered list minus in the system's own neutral list", "steering.md#metrics"),
    "attribute_control@K": ("mass share of the requested attribute value in the top K", "steering.md#metrics"),
    "preference_sensitivity@K": ("how much two different requests move their own predicates apart (0 = text ignored)", "steering.md#metrics"),
    "steering_entropy_reduction": ("bits of uncertainty about the predicate removed by the request", "steering.md#metrics"),
    "steering_precision": ("(JS target - JS off-target) / sum: the requested attribute moves, the others stay", "steering.md#metrics"),
    "reversibility": ("share of the steer's movement undone by 'go back'", "steering.md#metrics"),
    "diversity_gradient": ("slope of ILD from 'stay close' to 'more variety'", "steering.md#metrics"),
    "steering_traceability": ("cosine between the query's move and the probe direction of the request", "steering.md#metrics"),
    "relevance_under_steering@K": ("Hit@K of the held-out item in the list steered toward it", "steering.md#metrics"),
    "relevance_neutral@K": ("Hit@K of the held-out item in the neutral list", "steering.md#metrics"),
    "turns_to_satisfaction": ("critique turns until the simulated user accepts (cap when never)", "judge.md"),
    "turns_to_satisfaction_when_satisfied": ("turns to acceptance, over the conversations that ended in acceptance", "judge.md"),
    "success_rate": ("share of conversations where the simulated user accepts an item", "judge.md"),
    "exploration_velocity": ("new items shown per turn; descriptive", "judge.md"),
    "first_turn_relevance": ("share of the first list that satisfies the user's hidden target", "judge.md"),
    "judge_instruction_following": ("LLM judge's 1-5 rating of how well the steered list follows the request", "judge.md"),
    "judge_explanation_coherence": ("LLM judge's 1-5 rating of the system's explanation", "judge.md"),
    "judge_pairwise_win_rate": ("share of pairs where the judge prefers the steered list over the neutral one", "judge.md"),
    "judge_agreement": ("agreement of the judge with the machine-checked predicate", "judge.md"),
    "judge_machine_spearman": ("Spearman correlation of judge ratings with the machine-checked share", "judge.md"),
}
# descriptive numbers: neither larger nor smaller is better by itself
_NEUTRAL = ("ARP@", "exploration_velocity", "ild/", "steering_precision/", "relevance_neutral")


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


def base_name(metric: str) -> tuple[str, str]:
    """``constraint_following@10/include`` -> (``constraint_following@K``, ``include``)."""
    generic = re.sub(r"@\d+", "@K", metric)
    for known in sorted(_DEFS, key=len, reverse=True):
        if generic == known:
            return known, ""
        if generic.startswith(known + "/"):
            return known, generic[len(known) + 1:]
    return generic, ""


def info(metric: str) -> MetricInfo:
    base, part = base_name(metric)
    if lower_is_better(metric):
        direction: Direction = "lower"
    elif metric.startswith(_NEUTRAL):
        direction = "none"
    else:
        direction = "higher"
    if base in _DEFS:
        text, doc = _DEFS[base]
        if part:
            text = f"{text}; {part.replace('_', ' ')} only"
    elif metric.startswith("ild/"):
        text, doc = f"intra-list diversity of the list after the '{metric[4:].replace('_', ' ')}' request", "steering.md#metrics"
    else:
        text, doc = "", ""
    return MetricInfo(name=metric, direction=direction, definition=text, doc=doc)


def group(metric: str) -> str:
    """Column group of a metric on a wide table (the family it reads)."""
    base, _ = base_name(metric)
    if base.startswith(("constraint_following", "attribute_control", "steering_lift")):
        return "following the request"
    if base.startswith(("preference_sensitivity", "steering_", "reversibility")):
        return "steering effects"
    if base.startswith(("diversity_gradient", "ild/", "ILD", "coverage", "Gini", "novelty", "ARP", "tail_share")):
        return "diversity and exposure"
    if base.startswith(("relevance", "Hit", "Recall", "Precision", "nDCG", "MRR", "MAP", "new_", "L1", "L2", "L3", "first_turn")):
        return "relevance"
    if base.startswith("judge"):
        return "LLM judge"
    if base.startswith(("latency", "throughput")):
        return "speed"
    if base.startswith(("turns", "success", "exploration")):
        return "conversation"
    if base.startswith(("valid", "duplicate", "copy")):
        return "id validity"
    return "other"
