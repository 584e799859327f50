"""``semid`` and ``semid-constrain`` date a request that gives its date without a number.

Both readers of a request (the satisfaction head, ``heed.py``, and the
constraint reader, ``reading.py``) know the ordinal attribute only through
the card's bins and bin edges: "after 1980" and "the eighties" are in their
training rows, a year between two edges is not, and neither is a date said
by what happened then. Two kinds of request say a date that way:

- **counted back from the present**: "the last 3 years", "the past decade".
  The catalog's present is its newest item, so the request keeps to
  ``year >= newest - n + 1`` (``RELATIVE``);
- **by an event**: "after <event>", "since <event>", "before <event>". The
  base LLM is asked when the event happened (``PROMPT``, greedy over the
  years the card could mean), and its answer is taken only when it is more
  sure of that one year than of all the others together (``SURE``); an
  event it does not know (a weekend, a party) is left to the readers.

A dated request is read exactly (``year > 1945`` for "after the end of the
second world war"): plain ``semid`` multiplies its head's probability of
satisfying the request by ``OUTSIDE`` for each item the date rules out, and
``semid-constrain`` keeps decoding to the dated constraint instead of its
reader's nearest bin edge. A request that states a number, a bin of the card
("the seventies") or a title is not dated here: the trained readers read
those, and a relation to a named item stays theirs.

The rules are the system's own reading of English time phrases, the same for
every dataset whose card has an ordinal attribute; the task's predicate is
never read, and neither are the evaluation phrasings (tests/test_eval_wall.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from systems.semid.checked import CheckedReaderRecommender
from systems.semid.heed import HeedingSemIdRecommender
from systems.semid.system import _says

_COUNT = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
          "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40,
          "fifty": 50, "few": 3, "couple of": 2, "several": 5}
RELATIVE = re.compile(r"\b(?:last|past|previous)\s+(?:(\d{1,2}|" + "|".join(_COUNT) + r")\s+)?(years?|decades?)\b")
# a temporal preposition and the event after it, up to a clause break; the word -> (inclusive?, later?)
EVENT = re.compile(r"\b(after|since|following|before|until)\s+(the\s+[a-z][a-z' -]*?)(?=\s*(?:[,;.!?]|\bbut\b|\band\b|\bor\b|$))")
DIRECTION = {"after": (False, True), "following": (False, True), "since": (True, True),
             "before": (False, False), "until": (True, False)}
PROMPT = "{event} happened in the year"
SURE = 0.5  # the LLM's probability of its year, greedy over the years: more than all the others together
OUTSIDE = 0.02  # plain semid: an item the date rules out keeps this share of the head's probability
EARLIEST = 1800  # the earliest year an event may be dated to (the years the LLM chooses among start here)


@dataclass(frozen=True)
class Dated:
    """A date read off a request: the predicate, its text for traces, and why."""

    text: str
    predicate: Any
    why: str


class Dating:
    """Mixin for a ``HeedingSemIdRecommender``: reads a date said without a number (module docstring)."""

    dates = True  # False: read every request as before

    def _date_setup(self) -> None:
        from talkwalk_bench.steering import Vocabulary

        vocab = Vocabulary(self._iv.card)
        self._ordinal = vocab.ordinal
        years = [v.get(self._ordinal) for v in self._iv.values.values()] if self._ordinal else []
        years = [float(y) for y in years if isinstance(y, (int, float)) and not math.isnan(float(y))]
        self._newest = int(max(years)) if years else None
        self._bin_words = sorted({w.lower() for b in vocab.bins() for w in (b.label, *b.aliases)}, key=len, reverse=True)
        self._date_memo: dict[str, Dated | None] = {}
        self._year_trie = None

    def dated(self, r: Any) -> Dated | None:
        """The date a request gives without a number, or None (memoised per utterance)."""
        if not self.dates or not r.utterance or getattr(self, "heed", None) is None:
            return None
        if not hasattr(self, "_date_memo"):
            self._date_setup()
        if self._ordinal is None or self._newest is None:
            return None
        said = r.utterance.lower()
        if said not in self._date_memo:
            self._date_memo[said] = self._relative(said) or self._event(said, r)
        return self._date_memo[said]

    def _range(self, low: float | None = None, high: float | None = None, *, strict: bool = False) -> Any:
        from talkwalk_bench.steering import predicate_from_dict

        return predicate_from_dict({"kind": "range", "attribute": self._ordinal, "low": low, "high": high,
                                    "low_strict": strict and low is not None, "high_strict": strict and high is not None})

    def _relative(self, said: str) -> Dated | None:
        m = RELATIVE.search(said)
        if m is None:
            return None
        count, unit = m.group(1), m.group(2)
        n = 1 if count is None else int(count) if count.isdigit() else _COUNT[count]
        n *= 10 if unit.startswith("decade") else 1
        low = self._newest - n + 1
        return Dated(f"{self._ordinal} >= {low}", self._range(low),
                     f"the last {n} {'year' if n == 1 else 'years'} of a catalog whose newest item is from {self._newest}")

    def _event(self, said: str, r: Any) -> Dated | None:
        if re.search(r"\d", said) or any(w in said for w in self._bin_words):
            return None  # a number or a bin of the card: the trained readers read it
        m = EVENT.search(said)
        if m is None:
            return None
        event = m.group(2).strip()
        a = self.anchor_of(r)
        if a is not None and _says(said, self._iv.titles.get(a, "").lower()):
            return None  # a title said: a relation to an item, the readers' own
        year, p = self.year_of(event)
        if p <= SURE:
            return None
        inclusive, later = DIRECTION[m.group(1)]
        pred = self._range(low=year, strict=not inclusive) if later else self._range(high=year, strict=not inclusive)
        op = (">=" if inclusive else ">") if later else ("<=" if inclusive else "<")
        return Dated(f"{self._ordinal} {op} {year}", pred, f"{event} dated to {year} by the LLM (p {p:.2f})")

    def year_of(self, event: str) -> tuple[int, float]:
        """(year, probability): the base LLM's greedy answer to when ``event`` happened, among the years from
        ``EARLIEST`` to the catalog's newest."""
        from systems.semid.constraint import TokenTrie, greedy_emit

        lm = self._dating_lm()
        years = list(range(EARLIEST, self._newest + 1))
        if self._year_trie is None:
            self._year_trie = TokenTrie([self.tok(f" {y}", add_special_tokens=False)["input_ids"] for y in years])
        ids = self.tok(PROMPT.format(event=event[:1].upper() + event[1:]), add_special_tokens=False)["input_ids"]
        i, lp = greedy_emit(lm, ids, self._year_trie)
        return years[i], math.exp(lp)

    def _dating_lm(self) -> Any:
        """The base LLM as pretrained (shared with the head's reader when that is the base LLM too)."""
        if getattr(self, "_date_lm", None) is None:
            from systems.semid.lm import load_base

            self._date_lm = load_base(self.p["base_model"])[0].eval()
        return self._date_lm

    def satisfaction(self, r: Any) -> np.ndarray:
        s = super().satisfaction(r)  # type: ignore[misc]
        d = self.dated(r)
        if d is None:
            return s
        return s + np.where(self._mask(d.predicate) > 0.5, 0.0, math.log(OUTSIDE)).astype(s.dtype)


class DatedSemIdRecommender(Dating, HeedingSemIdRecommender):
    """``semid``: the satisfaction head's reading, with a date said without a number read exactly."""


class DatedReaderRecommender(Dating, CheckedReaderRecommender):
    """``semid-constrain``: decoding keeps to a date said without a number, read exactly; every other
    request is read as ``CheckedReaderRecommender`` reads it."""

    def read(self, r: Any) -> tuple[str, Any, Any]:
        d = self.dated(r)
        if d is None:
            return super().read(r)
        from talkwalk_bench.steering import predicate_from_dict

        # what the reader is sure of besides the date (a genre wanted or ruled out) is kept beside it
        text, pred, _ = super().read(r)
        said = pred.to_dict() if pred is not None and hasattr(pred, "to_dict") else {}
        kept = [p for p in (said.get("parts") or [said]) if p.get("kind") in ("has", "lacks")]
        if not kept:
            return f"{d.text} (dated: {d.why})", d.predicate, ("dated", d.text)
        both = predicate_from_dict({"kind": "all", "parts": [*kept, d.predicate.to_dict()]})
        head = " & ".join(f"{p['attribute']} {'=' if p['kind'] == 'has' else '!='} {p['value']}" for p in kept)
        return f"{head} & {d.text} (dated: {d.why})", both, ("dated", head, d.text)
