"""From a dataset card to steering requests: what can be asked, in which words, checked by which predicate."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from talkwalk_bench.data.card import Attribute, Bin, DatasetCard
from talkwalk_bench.errors import DataFormatError
from talkwalk_bench.steering.predicates import (
    AllOf,
    DifferentFrom,
    HasValue,
    InRange,
    LacksValue,
    Predicate,
    Relative,
    SimilarTo,
)

ALIASES_PER_VALUE = 2


@dataclass(frozen=True)
class Steer:
    """A steering request before phrasing: its kind, its predicate, and its slot fillings."""

    kind: str
    predicate: Predicate | None = None
    slots: Mapping[str, str] = field(default_factory=dict)

    def say(self, template: str, *, noun: str = "item") -> str:
        """Fill a template's slots (``{noun}``/``{nouns}`` default to the card noun in ``slots``)."""
        fill = {"noun": noun, "nouns": noun + "s", **self.slots}
        return " ".join(template.format(**fill).split())


class Vocabulary:
    """The steerable attributes of a card and the words for their values.

    The categorical attribute is the first item attribute of kind
    ``multi_categorical`` or ``categorical`` with described values; the
    ordinal one is the first ``ordinal`` attribute with bins.
    """

    def __init__(self, card: DatasetCard) -> None:
        self.card = card
        self.noun = card.item.noun
        attrs = card.item.attributes
        self.categorical: str | None = next(
            (n for n, a in attrs.items() if a.kind in ("multi_categorical", "categorical") and a.values), None)
        self.ordinal: str | None = next((n for n, a in attrs.items() if a.kind == "ordinal" and a.bins), None)
        if self.categorical is None and self.ordinal is None:
            raise DataFormatError(f"card '{card.dataset}': item.attributes: no categorical attribute with values and no ordinal attribute with bins; steering needs at least one")

    # -- what exists ---------------------------------------------------------
    @property
    def cat_attr(self) -> Attribute | None:
        return self.card.item.attributes[self.categorical] if self.categorical else None

    @property
    def ord_attr(self) -> Attribute | None:
        return self.card.item.attributes[self.ordinal] if self.ordinal else None

    def values(self) -> list[str]:
        return list(self.cat_attr.values) if self.cat_attr else []

    def bins(self) -> list[Bin]:
        return list(self.ord_attr.bins) if self.ord_attr else []

    def bounds(self) -> list[float]:
        """Bin edges usable as bounds: every bin's low end but the first."""
        return [b.low for b in self.bins()[1:]]

    def bin(self, label: str) -> Bin:
        return next(b for b in self.bins() if b.label == label)

    def bin_of(self, x: Any) -> Bin | None:
        return self.ord_attr.bin_of(x) if self.ord_attr else None

    # -- words ---------------------------------------------------------------
    def value_words(self, value: str) -> list[str]:
        vt = self.cat_attr.values[value]
        return list(vt.aliases[:ALIASES_PER_VALUE]) or [value.lower()]

    def bin_words(self, b: Bin) -> list[str]:
        return list(b.aliases) or [b.label]

    @staticmethod
    def bound_word(bound: float) -> str:
        return str(int(bound)) if float(bound).is_integer() else str(bound)

    def _pick(self, words: list[str], rng: random.Random | None) -> str:
        return words[0] if rng is None else rng.choice(words)

    # -- requests ------------------------------------------------------------
    def include(self, value: str, rng: random.Random | None = None) -> Steer:
        return Steer("include", HasValue(attribute=self.categorical, value=value),
                     {"value": self._pick(self.value_words(value), rng), "description": self.cat_attr.values[value].description})

    def exclude(self, value: str, rng: random.Random | None = None) -> Steer:
        return Steer("exclude", LacksValue(attribute=self.categorical, value=value),
                     {"value": self._pick(self.value_words(value), rng), "description": self.cat_attr.values[value].description})

    def bin_range(self, b: Bin) -> InRange:
        return InRange(attribute=self.ordinal, low=b.low, high=b.high, label=b.label)

    def range_bin(self, label: str, rng: random.Random | None = None) -> Steer:
        b = self.bin(label)
        return Steer("range_bin", self.bin_range(b), {"bin": self._pick(self.bin_words(b), rng)})

    def before(self, bound: float) -> Steer:
        return Steer("before", InRange(attribute=self.ordinal, high=bound, high_strict=True), {"bound": self.bound_word(bound)})

    def after(self, bound: float) -> Steer:
        return Steer("after", InRange(attribute=self.ordinal, low=bound), {"bound": self.bound_word(bound)})

    def include_range(self, value: str, label: str, rng: random.Random | None = None) -> Steer:
        inc, rb = self.include(value, rng), self.range_bin(label, rng)
        return Steer("include_range", AllOf(parts=(inc.predicate, rb.predicate)), {**inc.slots, **rb.slots})

    def include_exclude(self, value: str, other: str, rng: random.Random | None = None) -> Steer:
        inc, exc = self.include(value, rng), self.exclude(other, rng)
        return Steer("include_exclude", AllOf(parts=(inc.predicate, exc.predicate)), {**inc.slots, "other": exc.slots["value"]})

    def relative(self, kind: str, anchor: str, values: Mapping[str, Any], title: str) -> Steer:
        """older / newer / similar / contrast, anchored on a shown item (its parsed values and title)."""
        title = title or f"that {self.noun}"
        if kind in ("older", "newer"):
            x = values.get(self.ordinal, math.nan)
            pred: Predicate = Relative(attribute=self.ordinal, anchor=anchor, anchor_value=float(x),
                                       direction="lower" if kind == "older" else "higher")
        elif kind == "similar":
            pred = SimilarTo(attribute=self.categorical, anchor=anchor, anchor_values=frozenset(_as_set(values.get(self.categorical))),
                             exclude_items=frozenset([anchor]))
        elif kind == "contrast":
            pred = DifferentFrom(attribute=self.categorical, anchor=anchor, anchor_values=frozenset(_as_set(values.get(self.categorical))))
        else:
            raise ValueError(f"not an anchored kind: {kind}")
        return Steer(kind, pred, {"title": title})

    def plain(self, kind: str) -> Steer:
        """Kinds without a predicate: neutral, go_back, more_variety, stay_close."""
        return Steer(kind)

    def all_steers(self, kind: str) -> list[Steer]:
        """Every filling of a kind the card allows (anchored kinds get the generic "that <noun>")."""
        vals, bins = self.values(), self.bins()
        if kind in ("neutral", "go_back", "more_variety", "stay_close"):
            return [self.plain(kind)]
        if kind in ("older", "newer", "similar", "contrast"):
            return [Steer(kind, None, {"title": f"that {self.noun}"})]
        out: list[Steer] = []
        if kind in ("include", "exclude") and vals:
            for v in vals:
                for w in self.value_words(v):
                    s = getattr(self, kind)(v)
                    out.append(Steer(kind, s.predicate, {**s.slots, "value": w}))
        elif kind == "range_bin":
            for b in bins:
                for w in self.bin_words(b):
                    out.append(Steer(kind, self.bin_range(b), {"bin": w}))
        elif kind == "before":
            out = [self.before(x) for x in self.bounds()]
        elif kind == "after":
            out = [self.after(x) for x in self.bounds()]
        elif kind == "include_range" and vals and bins:
            out = [self.include_range(v, b.label) for v in vals for b in bins]
        elif kind == "include_exclude" and vals:
            out = [self.include_exclude(v, o) for v in vals for o in vals if o != v]
        return out


def _as_set(x: Any) -> frozenset:
    if isinstance(x, frozenset):
        return x
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return frozenset()
    return frozenset([x])
