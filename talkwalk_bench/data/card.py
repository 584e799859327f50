"""Dataset cards: typed attributes plus the language bridge (plain English per key and value).

A card says what each metadata field is (categorical, multi-valued, ordinal,
text) and how to say each value in words. Steering episodes, text baselines
and the contrastive system all read it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from talkwalk_bench.errors import DataFormatError
from talkwalk_bench.paths import tasks_dir
from talkwalk_bench.yamlio import load_model

Kind = Literal["categorical", "multi_categorical", "ordinal", "text"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValueText(Strict):
    description: str
    aliases: tuple[str, ...] = ()


class Bin(Strict):
    """A named range of an ordinal attribute, inclusive on both ends."""

    label: str
    low: float
    high: float
    description: str
    aliases: tuple[str, ...] = ()

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high


class Attribute(Strict):
    field: str
    kind: Kind
    description: str
    values: dict[str, ValueText] = Field(default_factory=dict)
    bins: tuple[Bin, ...] = ()
    unknown: tuple[str, ...] = ("", "unknown")  # raw values that mean "not known"

    @field_validator("values", mode="before")
    @classmethod
    def _short_values(cls, v: Any) -> Any:
        # allow `Comedy: "a funny film"` as shorthand for {description: ...}
        if isinstance(v, dict):
            return {k: ({"description": d} if isinstance(d, str) else d) for k, d in v.items()}
        return v

    def value_of(self, row: dict[str, Any]) -> Any:
        """The attribute's value in a metadata row: a set for multi, a float for ordinal."""
        raw = row.get(self.field)
        if self.kind == "multi_categorical":
            if raw is None:
                return frozenset()
            vals = raw if isinstance(raw, (tuple, list)) else str(raw).split()
            return frozenset(v for v in vals if v not in self.unknown)
        if self.kind == "ordinal":
            try:
                x = float(raw)
            except (TypeError, ValueError):
                return math.nan
            return x
        if raw is None or raw in self.unknown:
            return None
        if isinstance(raw, tuple):
            return " ".join(raw)
        return raw

    def bin_of(self, x: float) -> Bin | None:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return None
        for b in self.bins:
            if b.contains(x):
                return b
        return None


class EntityCard(Strict):
    id_field: str
    noun: str = "item"
    title: str | None = None  # attribute name of the display title
    attributes: dict[str, Attribute]

    def describe(self, row: dict[str, Any], *, include_title: bool = False) -> str:
        """A plain-English description assembled from the language bridge."""
        parts = []
        for _name, attr in self.attributes.items():
            if attr.kind == "text":
                if include_title:
                    v = attr.value_of(row)
                    if v:
                        parts.append(f'"{v}"')
                continue
            v = attr.value_of(row)
            if attr.kind == "multi_categorical":
                texts = [attr.values[x].description for x in sorted(v) if x in attr.values]
                if texts:
                    parts.append("; ".join(texts))
            elif attr.kind == "ordinal":
                b = attr.bin_of(v)
                if b is not None:
                    parts.append(b.description)
            elif v is not None and v in attr.values:
                parts.append(attr.values[v].description)
        return ". ".join(parts)


class DatasetCard(Strict):
    dataset: str
    version: int = 1
    description: str = ""
    item: EntityCard
    user: EntityCard | None = None

    def check_against(self, item_types: dict[str, str], user_types: dict[str, str], path: Path | str) -> None:
        for entity, card, types in (("item", self.item, item_types), ("user", self.user, user_types)):
            if card is None:
                continue
            for name, attr in card.attributes.items():
                if attr.field not in types:
                    raise DataFormatError(
                        f"{path}: {entity}.attributes.{name}.field '{attr.field}' is not a column of the "
                        f"dataset's .{entity} file (columns: {', '.join(types) or 'none'}); fix the field name"
                    )


def card_path(dataset_name: str) -> Path:
    return tasks_dir() / "cards" / f"{dataset_name}.yaml"


def load_card(dataset_name: str, path: Path | None = None) -> DatasetCard:
    path = path or card_path(dataset_name)
    if not path.exists():
        raise DataFormatError(
            f"{path}: no dataset card for '{dataset_name}'; write one (see tasks/cards/ml-100k.yaml) "
            "or pass --card PATH"
        )
    return load_model(DatasetCard, path, DataFormatError)
