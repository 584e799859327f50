"""Prompts and training examples for the semantic-id LLM.

Kinds (seeds 000 and 003): ``next_item`` (real training histories -> the next
item), ``steered`` (history + a request phrased with this module's *training*
templates -> an item satisfying it, the user's own later item when one does),
``predict_semantic_id`` (description -> id), ``predict_attribute`` (id ->
attribute) and ``explain`` (history, request and the recommended id -> a short
explanation built from the card: what the item is, which request it meets,
which history items it shares a genre or era with). Evaluation phrasings of the
suites are never used here.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from systems.semid.lm import REC, SID_END, SID_START, code_token

# fallback training phrasings (when talkwalk_bench.steering is absent); {a} is a card alias
TRAIN_TEMPLATES = (
    "something {a}",
    "i want {a}",
    "show me {a} please",
    "in the mood for {a}",
    "more {a}",
    "{a} for me",
)


def sid_text(sid: Sequence[int]) -> str:
    return "".join(code_token(lv, c) for lv, c in enumerate(sid))


def wrap(sid: Sequence[int]) -> str:
    return SID_START + sid_text(sid) + SID_END


def rec_prompt(
    history: Sequence[Sequence[int]], utterance: str = "", *, max_history: int = 10
) -> str:
    """The recommendation prompt; the id is decoded right after its final ``<|sid_start|>``."""
    parts = []
    if history:
        parts.append("User history: " + " ".join(wrap(s) for s in history[-max_history:]))
    if utterance:
        parts.append("Request: " + utterance)
    return "\n".join(parts) + "\n" + REC + SID_START


def target_text(sid: Sequence[int]) -> str:
    return sid_text(sid) + SID_END


@dataclass(frozen=True)
class Example:
    prompt: str
    target: str
    kind: str


@dataclass(frozen=True)
class Constraint:
    """One steering request: ways users may say it, and the items that satisfy it."""

    attribute: str
    value: str
    phrases: tuple[str, ...]
    items: frozenset[str]


def constraints(
    card: Any, items: Mapping[str, Mapping[str, Any]], seed: int = 0
) -> list[Constraint]:
    """Steering requests for training: the harness's ``train`` phrasings when available.

    Falls back to this module's templates over the card's aliases (categorical
    values and ordinal bins) when the steering package is absent.
    """
    if card is None:
        return []
    try:
        from talkwalk_bench.steering import train_phrasings
        from talkwalk_bench.steering.predicates import ItemValues, predicate_from_dict
    except ImportError:
        return _card_constraints(card, items)
    ids = list(items)
    values = ItemValues(card, items, ids)
    grouped: dict[str, list[str]] = {}
    sat: dict[str, frozenset[str]] = {}
    for ph in train_phrasings(card, seed=seed):
        if ph.predicate is None:
            continue
        key = repr(sorted(ph.predicate.items()))
        if key not in sat:
            mask = values.mask(predicate_from_dict(ph.predicate))
            sat[key] = frozenset(it for it, m in zip(ids, mask, strict=False) if m)
        grouped.setdefault(key, []).append(ph.text)
    return [Constraint("steer", k, tuple(v), sat[k]) for k, v in grouped.items() if sat[k]]


def _card_constraints(card: Any, items: Mapping[str, Mapping[str, Any]]) -> list[Constraint]:
    out = []
    for name, attr in card.item.attributes.items():
        if attr.kind in ("multi_categorical", "categorical"):
            for v, text in attr.values.items():
                sat = frozenset(
                    it
                    for it, row in items.items()
                    if (
                        v in attr.value_of(row)
                        if attr.kind == "multi_categorical"
                        else attr.value_of(row) == v
                    )
                )
                if sat:
                    aliases = tuple(text.aliases) or (v.lower(),)
                    out.append(
                        Constraint(
                            name,
                            v,
                            tuple(t.format(a=a) for t in TRAIN_TEMPLATES for a in aliases),
                            sat,
                        )
                    )
        elif attr.kind == "ordinal":
            for b in attr.bins:
                sat = frozenset(
                    it for it, row in items.items() if attr.bin_of(attr.value_of(row)) is b
                )
                if sat:
                    aliases = tuple(
                        f"something from the {a}" if a[0].isdigit() else a
                        for a in (b.aliases or (b.label,))
                    )
                    out.append(
                        Constraint(
                            name,
                            b.label,
                            tuple(t.format(a=a) for t in TRAIN_TEMPLATES for a in aliases),
                            sat,
                        )
                    )
    return out


def describe(card: Any, row: Mapping[str, Any], item_id: str) -> str:
    if card is None:
        return " ".join(str(v) for v in row.values()) or f"item {item_id}"
    return card.item.describe(dict(row), include_title=True) or f"{card.item.noun} {item_id}"


def attribute_answers(card: Any, row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(question, answer) pairs for ``predict_attribute``."""
    out = []
    if card is None:
        return out
    noun = card.item.noun
    for name, attr in card.item.attributes.items():
        v = attr.value_of(dict(row))
        if attr.kind == "multi_categorical" and v:
            out.append((f"What {name} is this {noun}?", ", ".join(sorted(v))))
        elif attr.kind == "ordinal":
            b = attr.bin_of(v)
            if b is not None:
                out.append((f"What {name} is this {noun} from?", b.label))
        elif attr.kind == "text" and v:
            out.append((f"What is the {name} of this {noun}?", str(v)))
        elif v is not None and attr.kind == "categorical":
            out.append((f"What {name} is this {noun}?", str(v)))
    return out


MIXES = {
    # seed 000 / 002: interactions and content
    "full": {
        "next_item": 0.4,
        "steered": 0.3,
        "predict_semantic_id": 0.2,
        "predict_attribute": 0.1,
    },
    # seeds 003/004: content only, no interaction logs
    "content": {"steered": 0.45, "predict_semantic_id": 0.4, "predict_attribute": 0.15},
}


EXPLAIN_PROMPT = " Why this one?\n"


def explanation(
    card: Any,
    items: Mapping[str, Mapping[str, Any]],
    item_id: str,
    history: Sequence[str] = (),
    request: str = "",
) -> str:
    """A short, true explanation of a recommendation, assembled from the card's attributes."""
    row = dict(items.get(item_id, {}))
    if card is None:
        return f"It is {item_id}."
    noun = card.item.noun
    title_attr = card.item.title or next((n for n, a in card.item.attributes.items() if a.kind == "text"), None)
    multi = [n for n, a in card.item.attributes.items() if a.kind == "multi_categorical"]
    ordinal = [n for n, a in card.item.attributes.items() if a.kind == "ordinal"]
    mine = {n: set(card.item.attributes[n].value_of(row) or ()) for n in multi}
    bins = {n: card.item.attributes[n].bin_of(card.item.attributes[n].value_of(row)) for n in ordinal}
    title = str(card.item.attributes[title_attr].value_of(row) or "") if title_attr else ""
    what = ", ".join(sorted(v for n in multi for v in mine[n]))
    when = " ".join(f"from the {b.label}" for b in bins.values() if b is not None)
    article = "an" if (what or noun)[:1].lower() in "aeiou" else "a"
    parts = [" ".join(x for x in (f'"{title}"' if title else "It", "is", article, what, noun, when) if x) + "."]
    if request:
        parts.append(f'It fits "{request}".')
    for h in reversed(list(history)):
        hrow = dict(items.get(h, {}))
        name = str(card.item.attributes[title_attr].value_of(hrow)) if title_attr else h
        for n in multi:
            shared = sorted(mine[n] & set(card.item.attributes[n].value_of(hrow) or ()))
            if shared:
                parts.append(f"Like {name}, it is {', '.join(shared)}.")
                return " ".join(parts)
        for n in ordinal:
            b = bins[n]
            if b is not None and card.item.attributes[n].bin_of(card.item.attributes[n].value_of(hrow)) is b:
                parts.append(f"Like {name}, it is from the {b.label}.")
                return " ".join(parts)
    return " ".join(parts)


def make_examples(
    n: int,
    *,
    sids: Mapping[str, tuple[int, ...]],
    items: Mapping[str, Mapping[str, Any]],
    card: Any,
    sequences: Mapping[str, Sequence[str]],
    mix: str = "full",
    max_history: int = 10,
    eos: str = "",
    seed: int = 0,
    explain: float = 0.0,
) -> list[Example]:
    """``n`` training examples drawn from the mixture ``mix`` (deterministic in ``seed``).

    ``explain`` is the share of ``explain`` examples (0 keeps the mixture, and the
    examples drawn, exactly as without it).
    """
    rng = random.Random(seed)
    weights = dict(MIXES[mix])
    if explain > 0:
        weights = {k: v * (1 - explain) for k, v in weights.items()}
        weights["explain"] = explain
    users = [u for u, s in sequences.items() if len(s) >= 2] if mix == "full" else []
    if not users:
        weights.pop("next_item", None)
    cons = constraints(card, {it: items.get(it, {}) for it in sids}, seed=seed)
    if not cons:
        weights.pop("steered", None)
    catalog = list(sids)
    pop = Counter(it for s in sequences.values() for it in s) if mix == "full" else Counter()
    kinds, probs = list(weights), list(weights.values())
    out: list[Example] = []
    while len(out) < n:
        kind = rng.choices(kinds, probs)[0]
        if kind == "next_item":
            seq = [it for it in sequences[rng.choice(users)] if it in sids]
            if len(seq) < 2:
                continue
            t = rng.randrange(1, len(seq))
            hist = [sids[it] for it in seq[max(0, t - max_history) : t]]
            out.append(
                Example(rec_prompt(hist, max_history=max_history), target_text(sids[seq[t]]), kind)
            )
        elif kind == "explain":
            phrase, hist_items = "", []
            if users:
                seq = [it for it in sequences[rng.choice(users)] if it in sids]
                t = rng.randrange(1, len(seq))
                hist_items, target = seq[max(0, t - max_history) : t], seq[t]
            else:
                target = rng.choice(catalog)
            if cons and rng.random() < 0.5:
                fits = [c for c in cons if target in c.items]
                if fits:
                    phrase = rng.choice(rng.choice(fits).phrases)
            hist = [sids[it] for it in hist_items]
            prompt = rec_prompt(hist, phrase, max_history=max_history) + target_text(sids[target])
            text = explanation(card, items, target, hist_items, phrase)
            out.append(Example(prompt + EXPLAIN_PROMPT, f" {text}{eos}", kind))
        elif kind == "steered":
            c = rng.choice(cons)
            phrase = rng.choice(c.phrases)
            hist_items: list[str] = []
            target = None
            if users:
                seq = [it for it in sequences[rng.choice(users)] if it in sids]
                t = rng.randrange(1, len(seq)) if len(seq) > 1 else 0
                hist_items = seq[max(0, t - max_history) : t]
                future = [it for it in seq[t:] if it in c.items]
                target = future[0] if future else None
            if target is None:
                pool = sorted(c.items - set(hist_items))
                if not pool:
                    continue
                w = [1 + pop.get(it, 0) for it in pool] if pop else None
                target = rng.choices(pool, w)[0]
            hist = [sids[it] for it in hist_items]
            out.append(
                Example(
                    rec_prompt(hist, phrase, max_history=max_history),
                    target_text(sids[target]),
                    kind,
                )
            )
        elif kind == "predict_semantic_id":
            it = rng.choice(catalog)
            text = describe(card, items.get(it, {}), it)
            out.append(
                Example(
                    f"Which {card.item.noun if card else 'item'} is this? {text}\n{REC}{SID_START}",
                    target_text(sids[it]),
                    kind,
                )
            )
        else:
            it = rng.choice(catalog)
            qa = attribute_answers(card, items.get(it, {}))
            if not qa:
                continue
            q, a = rng.choice(qa)
            out.append(Example(f"{wrap(sids[it])} {q}\n", f" {a}{eos}", kind))
    return out
