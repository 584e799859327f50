"""Training pairs from the dataset card's language bridge.

Descriptions are assembled from the card's per-key/value texts and varied
with templates (part order, lead-in, title or not, exact number or bin), so
consecutive epochs see different strings for the same entity. Steering
phrasings come from the steering module's ``train`` set only (never its
``eval`` set); without that module, a small set of the card's own aliases is
used.
"""

from __future__ import annotations

import inspect
import math
import random
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from talkwalk_bench.data.card import DatasetCard, EntityCard

ITEM_LEADS = ("{noun}: ", "this is ", "", "a {noun} that is ")
USER_LEADS = ("a {noun} who is ", "{noun} profile: ", "", "someone who is ")
JOINS = (". ", "; ", ", ", " and ")
POP_TEXT = ((0.85, "a very popular, widely seen {noun}"), (0.6, "a well-known {noun}"),
            (0.3, "a lesser-known {noun}"), (-1.0, "an obscure, rarely seen {noun}"))


def _stable(*parts: Any) -> int:
    """A seed that is the same in every process (``hash`` of a str is salted per process)."""
    return zlib.crc32(repr(parts).encode())


def _parts(ent: EntityCard, row: Mapping[str, Any], rng: random.Random, *, exact: bool, keep: set[str] | None = None) -> list[str]:
    parts = []
    for name, attr in ent.attributes.items():
        if keep is not None and name not in keep:
            continue
        v = attr.value_of(dict(row))
        if attr.kind == "multi_categorical":
            texts = [attr.values[x].description for x in sorted(v) if x in attr.values]
            if texts:
                parts.append(" and ".join(texts) if rng.random() < 0.5 else "; ".join(texts))
        elif attr.kind == "ordinal":
            b = attr.bin_of(v)
            if b is not None:
                if exact and rng.random() < 0.5:
                    unit = "released in" if ent.noun != "viewer" and "year" in name else f"with {name}"
                    parts.append(f"{unit} {int(v)}" if not (isinstance(v, float) and math.isnan(v)) else b.description)
                else:
                    parts.append(b.description)
        elif attr.kind == "categorical":
            if v is not None and v in attr.values:
                parts.append(attr.values[v].description)
    return parts


def popularity_text(pop: float, noun: str) -> str:
    for thr, text in POP_TEXT:
        if pop >= thr:
            return text.format(noun=noun)
    return POP_TEXT[-1][1].format(noun=noun)


def item_description(card: DatasetCard, row: Mapping[str, Any], pop: float, variant: int, seed: int = 0) -> str:
    ent = card.item
    rng = random.Random(_stable(seed, variant, str(row.get(ent.id_field, ""))))
    parts = _parts(ent, row, rng, exact=variant % 2 == 1)
    if variant % 3 != 2 and not math.isnan(pop):  # unknown popularity (never in training): not described
        parts.append(popularity_text(pop, ent.noun))
    rng.shuffle(parts)
    if ent.title and variant % 2 == 0:
        title = ent.attributes[ent.title].value_of(dict(row))
        if title:
            parts.insert(0, f'"{title}"')
    lead = ITEM_LEADS[variant % len(ITEM_LEADS)].format(noun=ent.noun)
    return lead + JOINS[(variant // 2) % len(JOINS)].join(parts)


def user_description(card: DatasetCard, row: Mapping[str, Any], variant: int, keep: set[str] | None = None, seed: int = 0) -> str:
    ent = card.user
    assert ent is not None
    rng = random.Random(_stable(seed, variant, sorted(map(str, row.items())), sorted(keep or ())))
    parts = _parts(ent, row, rng, exact=variant % 2 == 1, keep=keep)
    rng.shuffle(parts)
    lead = USER_LEADS[variant % len(USER_LEADS)].format(noun=ent.noun)
    return lead + JOINS[(variant + 1) % len(JOINS)].join(parts)


def affinity_description(user_text: str, item_text: str, high: bool, variant: int) -> str:
    verdicts = (("high affinity, a natural fit", "low affinity, avoid unless requested"),
                ("likely to love it", "likely to dislike it"),
                ("a strong match", "a poor match"))
    v = verdicts[variant % len(verdicts)][0 if high else 1]
    return f"{user_text}, watching {item_text}: {v}"


def ordinal_text(card: DatasetCard, entity: str, name: str, value: float) -> str:
    if entity == "item":
        return f"a {card.item.noun} released in {int(round(value))}"
    noun = card.user.noun if card.user else "user"
    return f"a {noun} aged {int(round(value))}"


# ------------------------------------------------------------------ steering phrasings

@dataclass(frozen=True)
class Phrase:
    """A steering phrasing with the catalog mask of items that satisfy it."""

    text: str
    mask: np.ndarray  # bool over the catalog


def _card_phrases(card: DatasetCard, rows: Sequence[Mapping[str, Any]]) -> list[Phrase]:
    """Fallback when no steering train set exists: value names and aliases straight from the card."""
    out: list[Phrase] = []
    for _name, attr in card.item.attributes.items():
        vals = [attr.value_of(dict(r)) for r in rows]
        if attr.kind == "multi_categorical":
            for value, vt in attr.values.items():
                has = np.array([value in v for v in vals])
                if not has.any() or has.all():
                    continue
                for word in (value.lower(), *vt.aliases):
                    out.append(Phrase(f"{word}", has))
                    out.append(Phrase(f"I want {word}", has))
                    out.append(Phrase(f"nothing {word}", ~has))
                    out.append(Phrase(f"I don't want {word}", ~has))
        elif attr.kind == "ordinal":
            xs = np.array(vals, dtype=float)
            for b in attr.bins:
                inb = (xs >= b.low) & (xs <= b.high)
                if not inb.any():
                    continue
                for word in (b.label, *b.aliases):
                    out.append(Phrase(f"{card.item.noun}s of the {word}", inb))
                out.append(Phrase(f"released before {int(b.low)}", xs < b.low))
                out.append(Phrase(f"released after {int(b.high)}", xs > b.high))
    return out


CONTROL_KINDS = {"neutral": "none", "go_back": "back", "similar": "attract", "stay_close": "attract", "contrast": "repel",
                 "more_variety": "diverse", "older": "older", "newer": "newer"}


def steering_phrases(card: DatasetCard, rows: Sequence[Mapping[str, Any]], item_ids: Sequence[str],
                     seed: int = 0) -> tuple[list[Phrase], str]:
    """(phrases with masks, where they came from). Only the steering module's train set is read."""
    try:
        from talkwalk_bench.steering import ItemValues, predicate_from_dict, train_phrasings
    except ImportError:
        return _card_phrases(card, rows), "card aliases (no talkwalk_bench.steering.train_phrasings)"
    values = ItemValues(card, {i: r for i, r in zip(item_ids, rows, strict=False)}, item_ids)
    out = []
    for ph in train_phrasings(card, per_template=60, seed=seed):
        if ph.predicate is None:
            continue
        mask = np.asarray(values.mask(predicate_from_dict(ph.predicate)), dtype=bool)
        if mask.any() and not mask.all():
            out.append(Phrase(ph.text, mask))
    # more surface forms of the same requests, from the card's own aliases
    out += _card_phrases(card, rows)
    return out, "talkwalk_bench.steering.train_phrasings + card aliases"


def control_phrases(card: DatasetCard) -> dict[str, list[str]]:
    """Train-set phrasings of the control kinds (go back, more like that, ...), by intent."""
    try:
        from talkwalk_bench.steering import train_phrasings
    except ImportError:
        return {}
    out: dict[str, list[str]] = {}
    for ph in train_phrasings(card):
        intent = CONTROL_KINDS.get(ph.kind)
        if intent:
            out.setdefault(intent, []).append(ph.text)
    return {k: list(dict.fromkeys(v)) for k, v in out.items()}


def polarity_phrases(card: DatasetCard) -> dict[str, list[str]]:
    """Train-set phrasings that rule a value out ("exclude") and that ask for one ("other": include, ranges)."""
    try:
        from talkwalk_bench.steering import train_phrasings
    except ImportError:
        return {}
    out: dict[str, list[str]] = {"exclude": [], "other": []}
    for ph in train_phrasings(card):
        if ph.kind == "exclude":
            out["exclude"].append(ph.text)
        elif ph.kind in ("include", "range_bin", "include_range", "before", "after"):
            out["other"].append(ph.text)
    return {k: list(dict.fromkeys(v)) for k, v in out.items()}


def train_template_set() -> dict[str, tuple[str, ...]]:
    """The steering module's *train* templates per kind ({} without that module)."""
    try:
        from talkwalk_bench.steering import train_templates
    except ImportError:
        return {}
    return dict(train_templates())


def describe_signature(fn: Any) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(?)"
