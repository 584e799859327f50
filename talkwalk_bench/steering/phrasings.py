"""Paraphrase templates: the built-in train set and users' own steering files.

A template file (and a steering file, same format) maps each request kind
to lists of templates, ``train`` and ``eval``. The built-in file here holds
``train`` only: what a system may learn from (``train_templates``,
``train_phrasings``). The built-in evaluation phrasings live in the task
package (``talkwalk_bench.tasks.steering_eval``), which systems never
import, so no system can read them by accident.

A steering file may also hold literal ``utterances``: fixed texts, each
with its own predicate in the card's terms (from user studies or logs);
see ``Utterance`` and docs/steering.md.
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from talkwalk_bench.data.card import DatasetCard
from talkwalk_bench.errors import DataFormatError
from talkwalk_bench.registry import did_you_mean
from talkwalk_bench.yamlio import read_yaml, validate

BUILTIN_PATH = Path(__file__).resolve().parent / "templates.yaml"
MIN_BUILTIN_PER_KIND = 3
COMMON_SLOTS = frozenset({"noun", "nouns"})


@dataclass(frozen=True)
class KindSlots:
    """Slots a kind's templates must use (all of ``required``, one of ``any_of``) or may use."""

    required: frozenset[str] = frozenset()
    any_of: frozenset[str] = frozenset()
    description: str = ""

    @property
    def allowed(self) -> frozenset[str]:
        return self.required | self.any_of | COMMON_SLOTS


_VALUE = frozenset({"value", "description"})
REQUEST_KINDS: dict[str, KindSlots] = {
    "neutral": KindSlots(description="no steering: a plain request for recommendations"),
    "include": KindSlots(any_of=_VALUE, description="items with a categorical value ('a comedy')"),
    "exclude": KindSlots(required=frozenset({"value"}), description="items without a categorical value ('no horror')"),
    "range_bin": KindSlots(required=frozenset({"bin"}), description="an ordinal bin ('a seventies film')"),
    "before": KindSlots(required=frozenset({"bound"}), description="ordinal value below a bound ('older than 1980')"),
    "after": KindSlots(required=frozenset({"bound"}), description="ordinal value at or above a bound ('1980 or later')"),
    "older": KindSlots(required=frozenset({"title"}), description="ordinal value below a shown item's ('older than that')"),
    "newer": KindSlots(required=frozenset({"title"}), description="ordinal value above a shown item's ('newer than that')"),
    "similar": KindSlots(required=frozenset({"title"}), description="categorical values like a shown item's ('more like that')"),
    "contrast": KindSlots(required=frozenset({"title"}), description="no categorical value in common with a shown item ('something different')"),
    "go_back": KindSlots(description="reversal: undo the previous steer ('go back')"),
    "more_variety": KindSlots(description="diversity up ('more variety')"),
    "stay_close": KindSlots(description="diversity down ('stay close')"),
    "include_range": KindSlots(required=frozenset({"bin"}), any_of=_VALUE, description="a value and an ordinal bin ('a seventies comedy')"),
    "include_exclude": KindSlots(required=frozenset({"other"}), any_of=_VALUE, description="a value but not another ('comedy but no romance')"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KindPhrasings(_Strict):
    train: list[str] = Field(default_factory=list)
    eval: list[str] = Field(default_factory=list)


class RangeBound(_Strict):
    """An ordinal range: ``min``/``max`` inclusive, ``above``/``below`` strict; any end may be left open."""

    min: float | None = None
    max: float | None = None
    above: float | None = None
    below: float | None = None


class UtteranceModel(_Strict):
    """One literal utterance and its predicate: every condition given must hold (``has``, ``lacks``, ``range``)."""

    text: str
    has: dict[str, str | list[str]] = Field(default_factory=dict)
    lacks: dict[str, str | list[str]] = Field(default_factory=dict)
    range: dict[str, RangeBound] = Field(default_factory=dict)
    source: str = ""  # where it came from (a study, a log); recorded, never read


class SteeringFileModel(_Strict):
    """Schema of a template / steering file (see docs/steering.md)."""

    version: Literal[1] = 1
    description: str = ""
    templates: dict[str, KindPhrasings] = Field(default_factory=dict)
    utterances: list[UtteranceModel] = Field(default_factory=list)


@dataclass(frozen=True)
class Utterance:
    """A literal utterance with its own predicate (a ``Predicate`` dict once checked against a card).

    ``conditions`` keeps the file's conditions as (op, attribute, value) with
    op ``has``/``lacks`` (value a string) or ``range`` (value a ``RangeBound``
    dict); ``Utterance.predicate(card)`` turns them into a predicate.
    ``kind`` is derived: include (has), exclude (lacks), range_bin (a range
    with both ends), before / after (one end), include_range (has + range),
    include_exclude (has + lacks), combined (anything else).
    """

    text: str
    kind: str
    conditions: tuple[tuple[str, str, Any], ...]
    where: str  # "<file>: utterances.<i>", for messages
    source: str = ""


@dataclass(frozen=True)
class TemplateSet:
    """Validated templates per request kind (and literal utterances), with the file they came from."""

    path: str
    train: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    eval: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    utterances: tuple[Utterance, ...] = ()

    def kinds(self) -> list[str]:
        return [k for k in REQUEST_KINDS if self.train.get(k) or self.eval.get(k)]


def template_slots(template: str) -> list[str]:
    """The ``{slot}`` names used by a template; ValueError on malformed braces."""
    out = []
    for _, name, spec, conv in string.Formatter().parse(template):
        if name is None:
            continue
        if name == "" or spec or conv or not name.isidentifier():
            raise ValueError(f"malformed slot '{{{name}}}'; write slots as {{name}} (use {{{{ and }}}} for literal braces)")
        out.append(name)
    return out


def _utterance_kind(has: bool, lacks: bool, ranges: list[RangeBound]) -> str:
    if ranges and not has and not lacks and len(ranges) == 1:
        r = ranges[0]
        low = r.min is not None or r.above is not None
        high = r.max is not None or r.below is not None
        return "range_bin" if low and high else ("before" if high else "after")
    if has and not lacks and not ranges:
        return "include"
    if lacks and not has and not ranges:
        return "exclude"
    if has and ranges and not lacks:
        return "include_range"
    if has and lacks and not ranges:
        return "include_exclude"
    return "combined"


def _check_utterances(model: SteeringFileModel, path: str) -> tuple[Utterance, ...]:
    out = []
    seen: dict[str, str] = {}
    for i, u in enumerate(model.utterances):
        where = f"{path}: utterances.{i}"
        text = " ".join(u.text.split())
        if not text:
            raise DataFormatError(f"{where}.text: empty utterance; remove it")
        if "{" in text or "}" in text:
            raise DataFormatError(f"{where}.text: {u.text!r} has a slot; a literal utterance is said as written (put templates under templates:)")
        if not (u.has or u.lacks or u.range):
            raise DataFormatError(f"{where}: {u.text!r} has no predicate; give at least one of has, lacks, range")
        conds: list[tuple[str, str, Any]] = []
        for op in ("has", "lacks"):
            for attr, vals in getattr(u, op).items():
                vals = [vals] if isinstance(vals, str) else list(vals)
                if not vals or any(not str(v).strip() for v in vals):
                    raise DataFormatError(f"{where}.{op}.{attr}: give a value (or a list of values)")
                conds += [(op, attr, str(v)) for v in vals]
        both = {(a, v) for op, a, v in conds if op == "has"} & {(a, v) for op, a, v in conds if op == "lacks"}
        if both:
            a, v = sorted(both)[0]
            raise DataFormatError(f"{where}: {u.text!r} both has and lacks {a}={v!r}; no item can satisfy it")
        for attr, r in u.range.items():
            if r.min is not None and r.above is not None or r.max is not None and r.below is not None:
                raise DataFormatError(f"{where}.range.{attr}: give min or above (and max or below), not both")
            lo = r.min if r.min is not None else r.above
            hi = r.max if r.max is not None else r.below
            if lo is None and hi is None:
                raise DataFormatError(f"{where}.range.{attr}: an empty range; give min/above and/or max/below")
            if lo is not None and hi is not None and (lo > hi or (lo == hi and (r.above is not None or r.below is not None))):
                raise DataFormatError(f"{where}.range.{attr}: the range is empty ({lo} .. {hi})")
            conds.append(("range", attr, r.model_dump()))
        key = text.lower()
        if key in seen:
            raise DataFormatError(f"{where}.text: {u.text!r} repeats {seen[key]}")
        seen[key] = f"utterances.{i}"
        kind = _utterance_kind(bool(u.has), bool(u.lacks), list(u.range.values()))
        out.append(Utterance(text=text, kind=kind, conditions=tuple(conds), where=where, source=u.source))
    return tuple(out)


def _check(model: SteeringFileModel, path: str, *, builtin: Literal["train", "eval"] | None) -> TemplateSet:
    """Validate a parsed file; ``builtin`` names the one part a built-in template file must hold (None: a user's file)."""
    kinds = list(REQUEST_KINDS)
    utterances = _check_utterances(model, path)
    if not model.templates and not utterances:
        raise DataFormatError(f"{path}: templates: no request kind given and no utterances; add at least one of {', '.join(kinds)}, or utterances")
    seen: dict[str, str] = {}
    for kind, ph in model.templates.items():
        if kind not in REQUEST_KINDS:
            raise DataFormatError(f"{path}: templates.{kind}: unknown request kind.{did_you_mean(kind, kinds)} Known: {', '.join(kinds)}")
        if not ph.train and not ph.eval:
            raise DataFormatError(f"{path}: templates.{kind}: no phrasings; add at least one under train or eval")
        slots = REQUEST_KINDS[kind]
        for part in ("train", "eval"):
            for i, t in enumerate(getattr(ph, part)):
                where = f"{path}: templates.{kind}.{part}.{i}"
                if not t.strip():
                    raise DataFormatError(f"{where}: empty phrasing; remove it")
                try:
                    used = set(template_slots(t))
                except ValueError as exc:
                    raise DataFormatError(f"{where}: {exc}") from None
                unknown = sorted(used - slots.allowed)
                if unknown:
                    allowed = ", ".join("{" + s + "}" for s in sorted(slots.allowed))
                    raise DataFormatError(f"{where}: unknown slot {{{unknown[0]}}} in {t!r}; slots allowed for {kind}: {allowed}")
                missing = sorted(slots.required - used)
                if missing:
                    raise DataFormatError(f"{where}: {t!r} lacks the slot {{{missing[0]}}} that {kind} needs")
                if slots.any_of and not (used & slots.any_of):
                    need = " or ".join("{" + s + "}" for s in sorted(slots.any_of))
                    raise DataFormatError(f"{where}: {t!r} needs {need}")
                key = t.strip().lower()
                if key in seen:
                    raise DataFormatError(f"{where}: {t!r} repeats {seen[key]}; train and eval phrasings must be disjoint and unique")
                seen[key] = f"templates.{kind}.{part}"
        if builtin:
            part = "train" if builtin == "train" else "eval"
            other = "eval" if part == "train" else "train"
            if len(getattr(ph, part)) < MIN_BUILTIN_PER_KIND or getattr(ph, other):
                raise DataFormatError(f"{path}: templates.{kind}: the built-in {part} set needs at least {MIN_BUILTIN_PER_KIND} "
                                      f"{part} phrasings and no {other} ones (has {len(getattr(ph, part))} + {len(getattr(ph, other))})")
    if builtin:
        missing = [k for k in kinds if k not in model.templates]
        if missing:
            raise DataFormatError(f"{path}: templates.{missing[0]}: required key is missing; the built-in set covers every kind")
        if utterances:
            raise DataFormatError(f"{path}: utterances: the built-in sets hold templates only")
    return TemplateSet(
        path=path,
        train={k: tuple(v.train) for k, v in model.templates.items()},
        eval={k: tuple(v.eval) for k, v in model.templates.items()},
        utterances=utterances,
    )


def load_steering_file(path: str | Path, card: DatasetCard | None = None) -> TemplateSet:
    """Read and validate a steering file (YAML, same format as the built-in templates).

    With ``card``, literal utterances are also checked against it (known
    attributes and values, ranges on ordinal attributes). Raises
    ``DataFormatError`` with one line naming the file and the field.
    """
    path = Path(path)
    data = read_yaml(path, DataFormatError)
    model = validate(SteeringFileModel, data, path, DataFormatError)
    out = _check(model, str(path), builtin=None)
    if card is not None:
        for u in out.utterances:
            utterance_predicate(u, card)
    return out


def read_template_file(path: Path, part: Literal["train", "eval"]) -> TemplateSet:
    """A built-in template file holding one part (train or eval) for every kind."""
    data = read_yaml(path, DataFormatError)
    model = validate(SteeringFileModel, data, path, DataFormatError)
    return _check(model, str(path), builtin=part)


@lru_cache(maxsize=1)
def _builtin() -> TemplateSet:
    return read_template_file(BUILTIN_PATH, "train")


def utterance_predicate(u: Utterance, card: DatasetCard) -> Any:
    """The ``Predicate`` of a literal utterance, checked against the card (one-line ``DataFormatError`` otherwise)."""
    from talkwalk_bench.steering.predicates import AllOf, HasValue, InRange, LacksValue

    attrs = card.item.attributes
    parts = []
    for op, attr, val in u.conditions:
        where = f"{u.where}.{op}.{attr}"
        a = attrs.get(attr)
        if a is None or a.kind == "text":
            known = [n for n, x in attrs.items() if x.kind != "text"]
            raise DataFormatError(f"{where}: unknown attribute '{attr}' in card '{card.dataset}'.{did_you_mean(attr, known)} Known: {', '.join(known)}")
        if op in ("has", "lacks"):
            if a.kind not in ("categorical", "multi_categorical"):
                raise DataFormatError(f"{where}: '{attr}' is {a.kind}; has/lacks need a categorical attribute (use range for ordinal ones)")
            if a.values and val not in a.values:
                raise DataFormatError(f"{where}: unknown value '{val}'.{did_you_mean(val, list(a.values))} Values: {', '.join(a.values)}")
            parts.append((HasValue if op == "has" else LacksValue)(attribute=attr, value=val))
        else:
            if a.kind != "ordinal":
                raise DataFormatError(f"{where}: '{attr}' is {a.kind}; range needs an ordinal attribute")
            low = val["min"] if val["min"] is not None else val["above"]
            high = val["max"] if val["max"] is not None else val["below"]
            parts.append(InRange(attribute=attr, low=low, high=high, low_strict=val["above"] is not None,
                                 high_strict=val["below"] is not None))
    return parts[0] if len(parts) == 1 else AllOf(parts=tuple(parts))


def train_templates() -> dict[str, tuple[str, ...]]:
    """The built-in ``train`` templates per request kind: what a system may learn from."""
    return {k: tuple(v) for k, v in _builtin().train.items()}


def _eval_templates(steering_file: str | Path | None = None) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """Harness only; kept for tasks that import it from here. See ``talkwalk_bench.tasks.steering_eval``.

    The evaluation phrasings are not in this package: this reads them from
    the task package on call. Systems must not call it (tests/test_eval_wall.py).
    """
    from talkwalk_bench.tasks.steering_eval import eval_templates

    return eval_templates(steering_file)


@dataclass(frozen=True)
class Phrasing:
    """One training example: a template, its text with the slots filled, and the predicate it asks for.

    ``predicate`` is None for kinds whose predicate depends on an item shown
    in the conversation (older/newer/similar/contrast; ``{title}`` is filled
    with "that <noun>") and for kinds without one (neutral, go_back,
    more_variety, stay_close).
    """

    kind: str
    template: str
    text: str
    predicate: dict[str, Any] | None = None


def train_phrasings(card: DatasetCard, *, per_template: int = 20, seed: int = 0) -> list[Phrasing]:
    """Training examples rendered from the built-in ``train`` templates over the card's vocabulary.

    Every template is filled with every value / bin / bound the card offers
    (each value said with its first two aliases); templates with more than
    ``per_template`` fillings keep a seeded sample of them.
    """
    from talkwalk_bench.steering.render import Vocabulary

    vocab = Vocabulary(card)
    rng = random.Random(seed)
    out: list[Phrasing] = []
    for kind, templates in train_templates().items():
        steers = vocab.all_steers(kind)
        for t in templates:
            chosen = steers if len(steers) <= per_template else rng.sample(steers, per_template)
            for s in chosen:
                out.append(Phrasing(kind, t, s.say(t, noun=vocab.noun), s.predicate.to_dict() if s.predicate is not None else None))
    return out
