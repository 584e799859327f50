"""Machine-checkable predicates over item metadata, built from a dataset card.

A predicate answers "does this item satisfy the request?" from the item's
attribute values as the card parses them (``Attribute.value_of``): a
frozenset for a multi-valued attribute, a float (NaN when unknown) for an
ordinal one, a string or None for a categorical one. An item whose value
is unknown on the requested attribute satisfies no predicate on it,
positive or negative. ``ItemValues`` parses a whole catalog once so
predicates can be checked fast, and ``unknown_report`` says which items
have unknown values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from talkwalk_bench.data.card import DatasetCard

Values = Mapping[str, Any]  # attribute name -> parsed value, for one item


class ItemValues:
    """Parsed attribute values of every catalog item, in ``item_ids`` order."""

    def __init__(self, card: DatasetCard, items: Mapping[str, Mapping[str, Any]], item_ids: Iterable[str]) -> None:
        self.card = card
        self.item_ids: tuple[str, ...] = tuple(item_ids)
        self.index = {it: j for j, it in enumerate(self.item_ids)}
        attrs = {n: a for n, a in card.item.attributes.items() if a.kind != "text"}
        self.raw = {it: dict(items.get(it, {})) for it in self.item_ids}
        self.values: dict[str, dict[str, Any]] = {
            it: {n: a.value_of(dict(items.get(it, {}))) for n, a in attrs.items()} for it in self.item_ids
        }
        title = card.item.title
        self.titles: dict[str, str] = {}
        if title and title in card.item.attributes:
            ta = card.item.attributes[title]
            for it in self.item_ids:
                v = ta.value_of(dict(items.get(it, {})))
                self.titles[it] = str(v) if v else ""

    def __getitem__(self, item: str) -> Values:
        return self.values.get(item, {})

    def mask(self, predicate: Predicate) -> np.ndarray:
        """Boolean array over ``item_ids``: which items satisfy ``predicate``."""
        return np.fromiter((holds_for(predicate, it, self.values[it]) for it in self.item_ids), dtype=bool,
                           count=len(self.item_ids))

    def unknown_report(self, attributes: Iterable[str], examples: int = 5) -> dict[str, dict[str, Any]]:
        """Per attribute: how many catalog items have no known value, a few of them (id, title, raw value), and the rule."""
        out = {}
        for attr in attributes:
            a = self.card.item.attributes.get(attr)
            if a is None:
                continue
            bad = [it for it in self.item_ids if not _known_value(self.values[it].get(attr))]
            out[attr] = {
                "count": len(bad),
                "examples": [{"item": it, "title": self.titles.get(it, ""), "raw": self.raw.get(it, {}).get(a.field)} for it in bad[:examples]],
                "treated_as": "unknown: satisfies no steering predicate on this attribute (has, lacks, range, relative, similar, different)",
            }
        return out

    def satisfies(self, predicate: Predicate, item: str) -> bool:
        """Whether one item satisfies ``predicate`` (unknown items never do)."""
        return item in self.values and holds_for(predicate, item, self.values[item])


def _known(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _known_value(x: Any) -> bool:
    return _known(x) and not (isinstance(x, frozenset) and not x)


def _as_set(x: Any) -> frozenset:
    if isinstance(x, frozenset):
        return x
    return frozenset() if not _known(x) else frozenset([x])


@dataclass(frozen=True)
class Predicate:
    """Base class. ``holds(values)`` checks one item; ``to_dict()`` is JSON for records."""

    kind: str = ""

    def holds(self, values: Values) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def attributes(self) -> frozenset[str]:
        """The attributes the request is about (the others should not move)."""
        return frozenset()

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class HasValue(Predicate):
    """The item has ``value`` (categorical: equals it; multi-valued: among its values)."""

    attribute: str = ""
    value: str = ""
    kind: str = "has"

    def holds(self, values: Values) -> bool:
        return self.value in _as_set(values.get(self.attribute))

    def attributes(self) -> frozenset[str]:
        return frozenset([self.attribute])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "attribute": self.attribute, "value": self.value}


@dataclass(frozen=True)
class LacksValue(Predicate):
    """The item has a known value on ``attribute`` and ``value`` is not among them.

    An item whose value is unknown (ml-100k: two films of genre "unknown")
    does not satisfy it: nothing shows that it lacks the value, and
    counting it would let a system satisfy every exclusion by showing the
    same unlabelled item (text-only put one in 198 of 200 neutral lists).
    Every predicate treats unknown values the same way: never satisfied.
    """

    attribute: str = ""
    value: str = ""
    kind: str = "lacks"

    def holds(self, values: Values) -> bool:
        have = _as_set(values.get(self.attribute))
        return bool(have) and self.value not in have

    def attributes(self) -> frozenset[str]:
        return frozenset([self.attribute])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "attribute": self.attribute, "value": self.value}


@dataclass(frozen=True)
class InRange(Predicate):
    """low <= x <= high on an ordinal attribute (either end may be open or strict).

    An item whose value is unknown never satisfies a range.
    """

    attribute: str = ""
    low: float | None = None
    high: float | None = None
    low_strict: bool = False
    high_strict: bool = False
    label: str = ""  # the bin label when the range is a card bin
    kind: str = "range"

    def holds(self, values: Values) -> bool:
        x = values.get(self.attribute)
        if not _known(x) or isinstance(x, frozenset):
            return False
        if self.low is not None and (x <= self.low if self.low_strict else x < self.low):
            return False
        if self.high is not None and (x >= self.high if self.high_strict else x > self.high):
            return False
        return True

    def attributes(self) -> frozenset[str]:
        return frozenset([self.attribute])

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "attribute": self.attribute, "low": self.low, "high": self.high,
               "low_strict": self.low_strict, "high_strict": self.high_strict}
        if self.label:
            out["label"] = self.label
        return out


@dataclass(frozen=True)
class Relative(Predicate):
    """Ordinal value strictly below ("lower", e.g. older) or above ("higher") an anchor item's."""

    attribute: str = ""
    anchor: str = ""
    anchor_value: float = math.nan
    direction: str = "lower"
    kind: str = "relative"

    def holds(self, values: Values) -> bool:
        x = values.get(self.attribute)
        if not _known(x) or isinstance(x, frozenset) or not _known(self.anchor_value):
            return False
        return x < self.anchor_value if self.direction == "lower" else x > self.anchor_value

    def attributes(self) -> frozenset[str]:
        return frozenset([self.attribute])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "attribute": self.attribute, "anchor": self.anchor,
                "anchor_value": self.anchor_value, "direction": self.direction}


@dataclass(frozen=True)
class SimilarTo(Predicate):
    """Jaccard(values, anchor values) >= ``min_jaccard`` on a categorical attribute; not the anchor.

    The anchor item itself is marked by its values only, so the task also
    lists it in ``exclude_items``.
    """

    attribute: str = ""
    anchor: str = ""
    anchor_values: frozenset[str] = frozenset()
    min_jaccard: float = 0.5
    exclude_items: frozenset[str] = frozenset()
    kind: str = "similar"

    def holds(self, values: Values) -> bool:
        v = _as_set(values.get(self.attribute))
        if not v or not self.anchor_values:
            return False
        return len(v & self.anchor_values) / len(v | self.anchor_values) >= self.min_jaccard

    def holds_item(self, item: str, values: Values) -> bool:
        return item not in self.exclude_items and self.holds(values)

    def attributes(self) -> frozenset[str]:
        return frozenset([self.attribute])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "attribute": self.attribute, "anchor": self.anchor,
                "anchor_values": sorted(self.anchor_values), "min_jaccard": self.min_jaccard}


@dataclass(frozen=True)
class DifferentFrom(Predicate):
    """Shares no value with the anchor on a categorical attribute (items without a value fail)."""

    attribute: str = ""
    anchor: str = ""
    anchor_values: frozenset[str] = frozenset()
    kind: str = "different"

    def holds(self, values: Values) -> bool:
        v = _as_set(values.get(self.attribute))
        return bool(v) and not (v & self.anchor_values)

    def attributes(self) -> frozenset[str]:
        return frozenset([self.attribute])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "attribute": self.attribute, "anchor": self.anchor,
                "anchor_values": sorted(self.anchor_values)}


@dataclass(frozen=True)
class AllOf(Predicate):
    """Every part holds (a combination of constraints)."""

    parts: tuple[Predicate, ...] = ()
    kind: str = "all"

    def holds(self, values: Values) -> bool:
        return all(p.holds(values) for p in self.parts)

    def attributes(self) -> frozenset[str]:
        return frozenset().union(*(p.attributes() for p in self.parts)) if self.parts else frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "parts": [p.to_dict() for p in self.parts]}


def holds_for(predicate: Predicate, item: str, values: Values) -> bool:
    """Check one catalog item, honouring predicates that exclude specific items (the anchor)."""
    if isinstance(predicate, SimilarTo):
        return predicate.holds_item(item, values)
    return predicate.holds(values)


def predicate_from_dict(d: Mapping[str, Any]) -> Predicate:
    """Inverse of ``to_dict`` (anchored similarity loses its excluded anchor; it is re-added)."""
    kind = d["kind"]
    if kind == "has":
        return HasValue(attribute=d["attribute"], value=d["value"])
    if kind == "lacks":
        return LacksValue(attribute=d["attribute"], value=d["value"])
    if kind == "range":
        return InRange(attribute=d["attribute"], low=d.get("low"), high=d.get("high"), low_strict=d.get("low_strict", False),
                       high_strict=d.get("high_strict", False), label=d.get("label", ""))
    if kind == "relative":
        return Relative(attribute=d["attribute"], anchor=d["anchor"], anchor_value=d["anchor_value"], direction=d["direction"])
    if kind == "similar":
        return SimilarTo(attribute=d["attribute"], anchor=d["anchor"], anchor_values=frozenset(d["anchor_values"]),
                         min_jaccard=d.get("min_jaccard", 0.5), exclude_items=frozenset([d["anchor"]]))
    if kind == "different":
        return DifferentFrom(attribute=d["attribute"], anchor=d["anchor"], anchor_values=frozenset(d["anchor_values"]))
    if kind == "all":
        return AllOf(parts=tuple(predicate_from_dict(p) for p in d["parts"]))
    raise ValueError(f"unknown predicate kind {kind!r}")
