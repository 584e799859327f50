"""Paraphrase templates: the built-in train/eval sets and users' own steering files.

A template file (and a steering file, same format) maps each request kind
to two lists of templates, ``train`` and ``eval``. Only ``train`` is exposed
to systems (``train_templates``, ``train_phrasings``); the eval set is read
by the harness alone (``_eval_templates``) to score generalisation to
phrasings a system has never seen.
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
MIN_BUILTIN_PER_KIND = 6
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


class SteeringFileModel(_Strict):
    """Schema of a template / steering file (see docs/steering.md)."""

    version: Literal[1] = 1
    description: str = ""
    templates: dict[str, KindPhrasings]


@dataclass(frozen=True)
class TemplateSet:
    """Validated templates per request kind, with the file they came from."""

    path: str
    train: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    eval: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

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


def _check(model: SteeringFileModel, path: str, *, builtin: bool) -> TemplateSet:
    kinds = list(REQUEST_KINDS)
    if not model.templates:
        raise DataFormatError(f"{path}: templates: no request kind given; add at least one of {', '.join(kinds)}")
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
            n = len(ph.train) + len(ph.eval)
            if n < MIN_BUILTIN_PER_KIND or not ph.train or not ph.eval:
                raise DataFormatError(f"{path}: templates.{kind}: needs at least {MIN_BUILTIN_PER_KIND} phrasings with both train and eval non-empty (has {len(ph.train)} + {len(ph.eval)})")
    if builtin:
        missing = [k for k in kinds if k not in model.templates]
        if missing:
            raise DataFormatError(f"{path}: templates.{missing[0]}: required key is missing; the built-in set covers every kind")
    return TemplateSet(
        path=path,
        train={k: tuple(v.train) for k, v in model.templates.items()},
        eval={k: tuple(v.eval) for k, v in model.templates.items()},
    )


def load_steering_file(path: str | Path) -> TemplateSet:
    """Read and validate a steering file (YAML, same format as the built-in templates).

    Raises ``DataFormatError`` with one line naming the file and the field.
    """
    path = Path(path)
    data = read_yaml(path, DataFormatError)
    model = validate(SteeringFileModel, data, path, DataFormatError)
    return _check(model, str(path), builtin=False)


@lru_cache(maxsize=1)
def _builtin() -> TemplateSet:
    data = read_yaml(BUILTIN_PATH, DataFormatError)
    model = validate(SteeringFileModel, data, BUILTIN_PATH, DataFormatError)
    return _check(model, str(BUILTIN_PATH), builtin=True)


def train_templates() -> dict[str, tuple[str, ...]]:
    """The built-in ``train`` templates per request kind: what a system may learn from."""
    return {k: tuple(v) for k, v in _builtin().train.items()}


def _eval_templates(steering_file: str | Path | None = None) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """Harness only: the templates used to score, and the source of each kind.

    Without a steering file, the built-in ``eval`` set. With one, every
    phrasing in the file (train and eval alike; the system never saw
    either) for the kinds it covers, the built-in eval set for the rest.
    """
    base = _builtin()
    out = {k: tuple(v) for k, v in base.eval.items()}
    source = dict.fromkeys(out, "builtin-eval")
    if steering_file is not None:
        user = load_steering_file(steering_file)
        for k in user.kinds():
            out[k] = tuple(user.train.get(k, ())) + tuple(user.eval.get(k, ()))
            source[k] = str(steering_file)
    return out, source


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
