"""Utterance -> attribute constraints, through the dataset card's language bridge only.

The traditional pipeline's parser: it looks for value names, aliases and
distinctive description words of the card's categorical attributes
("funny" -> Comedy), decade and year phrases of its ordinal attributes
("from the seventies", "before 1980", "between 1970 and 1985", "newer"),
and negation ("no horror", "without anything scary") or softening ("less
horror"). It reads only the text; it never sees a target.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from talkwalk_bench.data.card import Attribute, DatasetCard

# Cue words are the train templates' wording or everyday English that the evaluation phrasings do not use;
# tests/test_eval_wall.py fails when one of them appears only in the evaluation phrasings.
HARD_NEG = {"no", "not", "without", "except", "exclude", "excluding", "skip", "nothing", "none",
            "never", "hate", "dislike", "don't", "dont", "isn't", "aren't", "nor", "but not",
            "anything but", "anything except", "other than", "rather not"}
SOFT_NEG = {"less", "fewer", "lighter on", "not so much", "not too much", "tone down", "cut down on", "cut back on"}
BOOST = {"more", "extra", "lots of", "plenty of"}
NEWER = {"newer", "more recent", "later", "recent", "latest", "contemporary"}
OLDER = {"older", "earlier", "classic", "classics", "vintage", "old-fashioned"}
BEFORE = {"before", "earlier than", "older than", "until", "up to", "pre"}
AFTER = {"after", "since", "later than", "newer than", "post", "from after"}
# words between a negation cue and the value it negates ("no more horror", "not in the mood for horror")
FILLER = {"more", "any", "anything", "something", "too", "so", "very", "really", "much", "of", "a", "an", "the", "in",
          "mood", "for", "want", "wanna", "like", "to", "see", "watch", "show", "me", "films", "movies", "film", "movie",
          "stuff", "that", "is", "are", "be", "at", "all", "i'm", "im", "i", "am", "please", "kind", "sort", "type"}
CONNECT = {"and", "or", "nor", ",", "/", "&"}
BREAK = {".", ";", "!", "?", "but", "though", "although", "however", "instead", "rather", "just", "only", "prefer", "want"}
STOP = {"about", "their", "there", "which", "where", "while", "other", "these", "those", "film", "films", "movie", "movies",
        "style", "meant", "suitable", "whole", "places", "story", "stories", "things", "people", "events", "set", "full",
        "with", "from", "into", "that", "this", "make", "makes", "you", "your", "real", "the", "and", "for", "drawn"}

_TOKEN = re.compile(r"\d{4}s?|'?\d{2}s|[a-z]+(?:[-'][a-z]+)*|[.,;!?/&]")


@dataclass(frozen=True)
class Constraint:
    """One parsed wish. kind: include | exclude (hard) | demote (soft) | range (ordinal low..high)."""

    attribute: str
    kind: str
    values: frozenset[str] = frozenset()
    low: float = -math.inf
    high: float = math.inf
    phrase: str = ""

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"attribute": self.attribute, "kind": self.kind, "phrase": self.phrase}
        if self.kind == "range":
            d.update(low=None if math.isinf(self.low) else self.low, high=None if math.isinf(self.high) else self.high)
        else:
            d["values"] = sorted(self.values)
        return d


@dataclass
class Parsed:
    constraints: list[Constraint] = field(default_factory=list)
    relative: list[tuple[str, str, str]] = field(default_factory=list)  # (attribute, "newer"|"older", phrase)

    def __bool__(self) -> bool:
        return bool(self.constraints or self.relative)


def tokenize(text: str) -> list[str]:
    text = text.lower().replace("\u2019", "'")
    return _TOKEN.findall(text)


def _stem(w: str) -> str:
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


class Lexicon:
    """Phrase -> (attribute, value) for categorical values, and decade phrases for ordinal bins."""

    def __init__(self, card: DatasetCard) -> None:
        self.card = card
        self.values: dict[tuple[str, ...], set[tuple[str, str]]] = {}
        self.bins: dict[tuple[str, ...], set[tuple[str, float, float]]] = {}
        self.ordinal: str | None = None
        attrs = card.item.attributes
        for name, attr in attrs.items():
            if attr.kind in ("categorical", "multi_categorical"):
                self._add_values(name, attr)
            elif attr.kind == "ordinal":
                self.ordinal = self.ordinal or name
                for b in attr.bins:
                    for phrase in (b.label, *b.aliases):
                        # the card's own words win: where it says "recent" means the 1990s, so does the parser
                        self.bins.setdefault(self._key(phrase), set()).add((name, b.low, b.high))
        self.max_len = max((len(k) for k in list(self.values) + list(self.bins)), default=1)

    @staticmethod
    def _key(phrase: str) -> tuple[str, ...]:
        return tuple(_stem(t) for t in tokenize(phrase))

    def _add_values(self, name: str, attr: Attribute) -> None:
        desc_words: dict[str, set[str]] = {}
        for value, text in attr.values.items():
            for phrase in (value, value.replace("-", " "), *text.aliases):
                key = self._key(phrase)
                if key:
                    self.values.setdefault(key, set()).add((name, value))
            for w in tokenize(text.description):
                if len(w) >= 5 and w not in STOP and w.isalpha():
                    desc_words.setdefault(_stem(w), set()).add(value)
        # description words that point at exactly one value are cues too ("monsters" -> Horror)
        for w, vals in desc_words.items():
            if len(vals) == 1 and (w,) not in self.values:
                self.values[(w,)] = {(name, next(iter(vals)))}

    def match(self, toks: list[str], i: int) -> tuple[int, set[tuple[str, str]], set[tuple[str, float, float]]]:
        """Longest phrase starting at token i: (length, values, bins); length 0 if none."""
        stems = [_stem(t) for t in toks[i:i + self.max_len]]
        for n in range(len(stems), 0, -1):
            key = tuple(stems[:n])
            if key in self.values or key in self.bins:
                return n, self.values.get(key, set()), self.bins.get(key, set())
        return 0, set(), set()


def _phrase_at(toks: list[str], i: int, vocab: Iterable[str]) -> int:
    """Length of the longest phrase from ``vocab`` starting at token i (0 if none)."""
    best = 0
    for p in vocab:
        words = tokenize(p)
        if toks[i:i + len(words)] == words:
            best = max(best, len(words))
    return best


def _year(tok: str) -> float | None:
    m = re.fullmatch(r"(\d{4})", tok)
    if m and 1800 <= int(m.group(1)) <= 2100:
        return float(m.group(1))
    return None


def _decade(tok: str) -> tuple[float, float] | None:
    m = re.fullmatch(r"(\d{4})s", tok)
    if m:
        y = int(m.group(1))
        return float(y), float(y + 9)
    m = re.fullmatch(r"'?(\d{2})s", tok)
    if m:
        y = 1900 + int(m.group(1)) if int(m.group(1)) >= 20 else 2000 + int(m.group(1))
        return float(y), float(y + 9)
    return None


def parse(text: str, lexicon: Lexicon) -> Parsed:
    """Constraints expressed by one utterance."""
    toks = tokenize(text)
    out = Parsed()
    include: dict[str, set[str]] = {}
    mode: str | None = None  # "exclude" | "demote" while inside a negated clause
    matched_in_scope = False
    gap = 0
    i = 0
    ordinal = lexicon.ordinal

    def close_scope() -> None:
        nonlocal mode, matched_in_scope, gap
        mode, matched_in_scope, gap = None, False, 0

    while i < len(toks):
        t = toks[i]
        if t in BREAK:
            close_scope()
            i += 1
            continue
        # year ranges: "between 1970 and 1985", "from 1970 to 1985", "1970-1985"
        if ordinal and t in ("between", "from") and i + 3 < len(toks) and _year(toks[i + 1]) and toks[i + 2] in ("and", "to", "till", "until") and _year(toks[i + 3]):
            lo, hi = sorted((_year(toks[i + 1]), _year(toks[i + 3])))
            out.constraints.append(Constraint(ordinal, "range", low=lo, high=hi, phrase=" ".join(toks[i:i + 4])))
            i += 4
            continue
        n_before, n_after = _phrase_at(toks, i, BEFORE), _phrase_at(toks, i, AFTER)
        if ordinal and (n_before or n_after):
            n = max(n_before, n_after)
            j = i + n + (1 if i + n < len(toks) and toks[i + n] == "the" else 0)
            y = _year(toks[j]) if j < len(toks) else None
            dec = _decade(toks[j]) if j < len(toks) and y is None else None
            if dec is None and j < len(toks):
                _, _, bins = lexicon.match(toks, j)
                if bins:
                    _, lo_b, hi_b = next(iter(bins))
                    dec = (lo_b, hi_b)
            if y is not None or dec is not None:
                before = n_before >= n_after
                if y is not None:
                    lo, hi = (-math.inf, y - 1) if before else (y + 1, math.inf)
                else:
                    lo, hi = (-math.inf, dec[0] - 1) if before else (dec[1] + 1, math.inf)
                phrase = " ".join(toks[i:j + 1])
                if mode is None:
                    out.constraints.append(Constraint(ordinal, "range", low=lo, high=hi, phrase=phrase))
                else:  # "not before 1990": refuse the range instead
                    out.constraints.append(Constraint(ordinal, mode, frozenset({phrase}), low=lo, high=hi, phrase=phrase))
                    matched_in_scope = True
                i = j + 1
                continue
        n_soft, n_hard, n_boost = _phrase_at(toks, i, SOFT_NEG), _phrase_at(toks, i, HARD_NEG), _phrase_at(toks, i, BOOST)
        n_new, n_old = _phrase_at(toks, i, NEWER), _phrase_at(toks, i, OLDER)
        if ordinal and (n_new or n_old) and mode is None:
            n = max(n_new, n_old)
            # "newer than 1980" is handled above; a bare comparative is relative to what was shown
            if not (i + n < len(toks) and toks[i + n] == "than"):
                m, vals, bins = lexicon.match(toks, i)
                if not vals and not (bins and m >= n):  # a card alias ("recent") is a value, not a comparative
                    out.relative.append((ordinal, "newer" if n_new >= n_old else "older", " ".join(toks[i:i + n])))
                    i += n
                    continue
        if n_soft and n_soft >= n_hard:
            mode, matched_in_scope, gap = "demote", False, 0
            i += n_soft
            continue
        if n_hard:
            mode, matched_in_scope, gap = "exclude", False, 0
            i += n_hard
            continue
        if n_boost and mode is None:
            i += n_boost
            continue
        # open-ended years: "1980 or newer", "1975 and earlier", "1960 onwards"
        y = _year(t)
        if ordinal and y is not None and mode is None:
            k = i + 1 + (1 if i + 1 < len(toks) and toks[i + 1] in ("or", "and") else 0)
            nxt = toks[k] if k < len(toks) else ""
            up = nxt in ("newer", "later", "after", "on", "onward", "onwards", "beyond", "since") or toks[k:k + 2] == ["more", "recent"]
            down = nxt in ("older", "earlier", "before")
            if up or down:
                lo, hi = (y, math.inf) if up else (-math.inf, y)
                out.constraints.append(Constraint(ordinal, "range", low=lo, high=hi, phrase=" ".join(toks[i:k + 1])))
                i = k + (2 if toks[k:k + 2] == ["more", "recent"] else 1)
                continue
        # a decade or year on its own: "from the seventies", "a 1995 film", "80s"
        dec = _decade(t)
        if ordinal and (dec or y):
            lo, hi = dec if dec else (y, y)
            kind = "range" if mode is None else mode
            if kind == "range":
                out.constraints.append(Constraint(ordinal, "range", low=lo, high=hi, phrase=t))
            else:
                out.constraints.append(Constraint(ordinal, kind, low=lo, high=hi, phrase=t, values=frozenset({f"{lo:g}-{hi:g}"})))
                matched_in_scope = True
            i += 1
            continue
        n, vals, bins = lexicon.match(toks, i)
        if n:
            phrase = " ".join(toks[i:i + n])
            for attr, value in vals:
                if mode is None:
                    include.setdefault(attr, set()).add(value)
                else:
                    out.constraints.append(Constraint(attr, mode, frozenset({value}), phrase=phrase))
            for attr, lo, hi in bins:
                if mode is None:
                    out.constraints.append(Constraint(attr, "range", low=lo, high=hi, phrase=phrase))
                else:
                    out.constraints.append(Constraint(attr, mode, frozenset({f"{lo:g}-{hi:g}"}), low=lo, high=hi, phrase=phrase))
            if mode is not None:
                matched_in_scope, gap = True, 0
            i += n
            continue
        if mode is not None:
            if t in CONNECT:
                pass
            elif matched_in_scope or gap >= 5:
                close_scope()  # "no horror and something funny": the negation ends at the new content
                continue
            elif t in FILLER or t.isalpha():
                gap += 1
        i += 1
    for attr, vals in include.items():
        # a value both wished for and refused in one utterance: the refusal wins
        refused = {v for c in out.constraints if c.attribute == attr and c.kind == "exclude" for v in c.values}
        keep = vals - refused
        if keep:
            out.constraints.insert(0, Constraint(attr, "include", frozenset(keep), phrase=", ".join(sorted(keep))))
    return out


def _closed(c: Constraint) -> bool:
    return math.isfinite(c.low) and math.isfinite(c.high)


def merge_ranges(parsed: Parsed) -> Parsed:
    """Combine the range constraints on each attribute: a bound narrows a window ("from the 80s, before
    1985": 1980-1984), while two windows ("the 50s or 60s", "70s, 80s") are alternatives, read as the
    span that covers both; intersecting them would ask for nothing at all."""
    ranges: dict[str, Constraint] = {}
    rest = []
    for c in parsed.constraints:
        if c.kind == "range":
            prev = ranges.get(c.attribute)
            if prev is None:
                ranges[c.attribute] = c
            elif _closed(prev) and _closed(c):
                ranges[c.attribute] = Constraint(c.attribute, "range", low=min(prev.low, c.low), high=max(prev.high, c.high),
                                                 phrase=f"{prev.phrase} or {c.phrase}")
            else:
                ranges[c.attribute] = Constraint(c.attribute, "range", low=max(prev.low, c.low), high=min(prev.high, c.high),
                                                 phrase=f"{prev.phrase}; {c.phrase}")
        else:
            rest.append(c)
    return Parsed(rest + list(ranges.values()), parsed.relative)


class ItemMatcher:
    """Checks constraints against item metadata through the card's attribute typing."""

    def __init__(self, card: DatasetCard, items: Mapping[str, Mapping[str, Any]], item_ids: Iterable[str]) -> None:
        self.card = card
        self.item_ids = list(item_ids)
        self.values: dict[str, list[Any]] = {}
        for name, attr in card.item.attributes.items():
            if attr.kind == "text":
                continue
            self.values[name] = [attr.value_of(dict(items.get(it, {}))) for it in self.item_ids]

    def mask(self, c: Constraint) -> Any:
        """Boolean numpy mask over the catalog: items that have what ``c`` talks about (cached)."""
        import numpy as np

        cache = self.__dict__.setdefault("_masks", {})
        if c not in cache:
            n = len(self.item_ids)
            cache[c] = np.fromiter((self.satisfies(c, j) for j in range(n)), dtype=bool, count=n)
        return cache[c]

    def satisfies(self, c: Constraint, j: int) -> bool:
        """Whether item j has what the constraint talks about (for exclude/demote: has the refused thing)."""
        v = self.values[c.attribute][j]
        attr = self.card.item.attributes[c.attribute]
        if attr.kind == "ordinal":
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return False
            return c.low <= v <= c.high
        if attr.kind == "multi_categorical":
            return bool(v & c.values)
        return v in c.values

    def ordinal_value(self, attribute: str, j: int) -> float:
        v = self.values[attribute][j]
        return math.nan if v is None else float(v)
