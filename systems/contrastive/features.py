"""Typed feature encoding of item and user metadata for the shared metadata encoder.

One vector layout for both entities: ``[item block | user block | item?, user?]``.
An item fills the item block, a user the user block, a composite (user x item)
fills both. Categoricals are one-hot, multi-valued categoricals multi-hot,
ordinals a normalised value plus their card bin, text attributes a frozen
sentence embedding; items also carry their training-split popularity and a
"popularity known" flag: an item never seen in training (cold start) has
unknown popularity (flag 0, a neutral imputed value), not "obscure".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from talkwalk_bench.data.card import Attribute, DatasetCard, EntityCard


@dataclass
class _Slot:
    name: str
    attr: Attribute
    start: int
    width: int
    values: list[str] = field(default_factory=list)  # categorical vocabulary
    lo: float = 0.0
    hi: float = 1.0


class FeatureSpace:
    """Maps metadata rows to fixed-width float vectors, from the dataset card.

    ``text_fn`` embeds text attributes (e.g. titles); popularity is log-scaled
    training counts, NaN for items never seen in training (cold start), which
    are encoded as unknown: value ``pop_fill`` (the median known popularity)
    and flag ``pop_known_col`` = 0.
    """

    def __init__(self, card: DatasetCard, items: Mapping[str, Mapping[str, Any]], users: Mapping[str, Mapping[str, Any]],
                 *, text_dim: int = 0, use_text: bool = True) -> None:
        self.card = card
        self.text_dim = text_dim if use_text else 0
        self.item_slots, w_item = self._layout(card.item, items, 0)
        self.pop_col = w_item
        self.pop_known_col = w_item + 1
        self.pop_fill = 0.0
        w_item += 2
        self.user_slots, w_user = self._layout(card.user, users, w_item) if card.user else ([], w_item)
        self.item_width = w_item
        self.user_width = w_user - w_item
        self.flag_item = w_user
        self.flag_user = w_user + 1
        self.dim = w_user + 2

    def _layout(self, ent: EntityCard, rows: Mapping[str, Mapping[str, Any]], start: int) -> tuple[list[_Slot], int]:
        slots, pos = [], start
        for name, attr in ent.attributes.items():
            if attr.kind in ("categorical", "multi_categorical"):
                vals = list(attr.values)
                # values seen in the data but missing from the card still get a column
                seen = set()
                for r in rows.values():
                    v = attr.value_of(dict(r))
                    seen |= set(v) if attr.kind == "multi_categorical" else ({v} if v is not None else set())
                vals += sorted(str(x) for x in seen if x not in attr.values)
                slots.append(_Slot(name, attr, pos, len(vals), vals))
                pos += len(vals)
            elif attr.kind == "ordinal":
                xs = [attr.value_of(dict(r)) for r in rows.values()]
                xs = [x for x in xs if not math.isnan(x)]
                lo, hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
                if attr.bins:
                    lo, hi = min(lo, attr.bins[0].low), max(hi, min(attr.bins[-1].high, max(hi, attr.bins[-1].low)))
                width = 2 + len(attr.bins)
                slots.append(_Slot(name, attr, pos, width, lo=lo, hi=hi if hi > lo else lo + 1))
                pos += width
            elif attr.kind == "text" and self.text_dim:
                slots.append(_Slot(name, attr, pos, self.text_dim))
                pos += self.text_dim
        return slots, pos

    def _fill(self, out: np.ndarray, slots: list[_Slot], row: Mapping[str, Any], text_fn: Callable[[list[str]], np.ndarray] | None,
              overrides: Mapping[str, Any] | None = None) -> None:
        row = dict(row)
        for s in slots:
            if overrides and s.name in overrides:
                v = overrides[s.name]
            else:
                v = s.attr.value_of(row)
            if s.attr.kind == "multi_categorical":
                for x in v:
                    if x in s.values:
                        out[s.start + s.values.index(x)] = 1.0
            elif s.attr.kind == "categorical":
                if v is not None and str(v) in s.values:
                    out[s.start + s.values.index(str(v))] = 1.0
            elif s.attr.kind == "ordinal":
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    continue
                out[s.start] = (float(v) - s.lo) / (s.hi - s.lo) * 2 - 1
                out[s.start + 1] = 1.0
                for j, b in enumerate(s.attr.bins):
                    if b.contains(float(v)):
                        out[s.start + 2 + j] = 1.0
            elif s.attr.kind == "text" and text_fn is not None:
                t = s.attr.value_of(row)
                if t:
                    out[s.start:s.start + s.width] = text_fn([str(t)])[0]

    def item_vectors(self, rows: Sequence[Mapping[str, Any]], popularity: Sequence[float], text_fn=None,
                     overrides: Sequence[Mapping[str, Any] | None] | None = None) -> np.ndarray:
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        for i, row in enumerate(rows):
            self._fill(out[i], self.item_slots, row, text_fn, overrides[i] if overrides else None)
            p = float(popularity[i])
            if math.isnan(p):  # never seen in training: unknown, not "obscure"
                out[i, self.pop_col] = self.pop_fill
            else:
                out[i, self.pop_col] = p
                out[i, self.pop_known_col] = 1.0
            out[i, self.flag_item] = 1.0
        return out

    def user_vectors(self, rows: Sequence[Mapping[str, Any]], overrides: Sequence[Mapping[str, Any] | None] | None = None,
                     keep: Sequence[set[str] | None] | None = None) -> np.ndarray:
        """User rows; ``keep`` restricts a row to some attributes (partial/composite profiles)."""
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        for i, row in enumerate(rows):
            slots = self.user_slots if not keep or keep[i] is None else [s for s in self.user_slots if s.name in keep[i]]
            self._fill(out[i], slots, row, None, overrides[i] if overrides else None)
            out[i, self.flag_user] = 1.0
        return out

    def ordinal_slot(self, entity: str, name: str) -> _Slot | None:
        for s in self.item_slots if entity == "item" else self.user_slots:
            if s.name == name and s.attr.kind == "ordinal":
                return s
        return None


def popularity_feature(counts: Mapping[str, int], item_ids: Sequence[str]) -> np.ndarray:
    """log(1 + count) / log(1 + max count), in [0, 1]; NaN (unknown) for items never seen in training."""
    c = np.array([counts.get(i, 0) for i in item_ids], dtype=np.float64)
    top = math.log1p(max(1.0, float(c.max()) if len(c) else 1.0))
    out = np.log1p(c) / top
    out[c == 0] = np.nan
    return out.astype(np.float32)
