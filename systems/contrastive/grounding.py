"""Grounding a request in the dataset card: which card values, ordinal ranges and anchored relations it names.

The query builder moves a point in the shared space; this module reads the
part of an utterance that the card can check and turns it into constraints
on the candidate list:

- *slots*: the card's own words for categorical values (value names and
  aliases), for ordinal bins (labels and aliases, "early/mid/late" of a
  decade), plain years, decades written as numbers ("1970s", "'70s") and
  "the last N years" (counted back from the newest item);
- *relation*: what the words around the slots ask for (include or rule out
  a value; before or after a year; older, newer, similar or different from
  an anchor item). It is read by nearest neighbours in the frozen sentence
  space among the steering *train* templates, rendered with the same
  placeholder fillers as the utterance's own skeleton, plus a few generic
  phrasings per relation written here (``EXTRA``); negation cues
  (``query.NEGATION``) decide a value's polarity first.

Nothing here reads the evaluation phrasings (tests/test_eval_wall.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from systems.contrastive.query import NEGATION

# Placeholder fillers: the utterance's slots and the train templates' slots are said with the same words,
# so the nearest-neighbour vote compares only the words around them.
FILL = {"value": "comedy", "other": "horror", "description": "comedy", "bin": "seventies", "bound": "1980",
        "title": "that film", "noun": "film", "nouns": "films"}

# Generic phrasings per relation, beside the train templates (everyday English, written for this module).
EXTRA: dict[str, tuple[str, ...]] = {
    "include": ("{value}", "a {value} {noun}", "I'd enjoy a {value} {noun}", "let's watch {value}",
                "put on something {value}", "{value} sounds good", "I love {value}", "{value} {nouns} please",
                "how about {value}", "I'm in the mood for some {value}", "I'm into {value}", "I'm keen on {value}",
                "I really like {value}", "{value} is my thing", "we want {value}", "bring on the {value}", "play some {value}", "give us some {value}",
                "start a {value} {noun}", "pick out a {value} {noun}", "I adore {value}",
                "{value} is great"),
    "exclude": ("I've had enough of {value}", "spare me the {value}", "leave out the {value}", "drop the {value}",
                "I'm sick of {value}", "{value} is off the menu", "no {value} at all", "not {value}",
                "I hate {value}", "remove the {value} {nouns}", "without {value}", "get rid of {value}",
                "I'm done with {value}", "pass on {value}", "{value} annoys me", "{value} puts me off",
                "{value} isn't for me", "I'd steer away from {value}", "keep the {value} away", "I dislike {value}",
                "{value} gets on my nerves", "I've seen too much {value}", "{value} is boring", "I'm over {value}", "nobody wants {value}", "{value} is the last thing I want"),
    "both": ("a {value} {other} {noun}", "{value} and {other}", "a {noun} that is {value} and {other}",
             "something {value} with {other}"),
}
# Relations said inside everyday frames: every frame carries every relation, so the frame's own words are
# evidence for none of them and only the relation words decide.
FRAMES = ("{R}", "something {R}", "a {noun} {R}", "one {R}", "show me {nouns} {R}", "I'd like something {R}",
          "{R}, please", "pick a {noun} {R}", "only {nouns} {R}")
RELATIONS: dict[str, tuple[str, ...]] = {
    "older": ("older than {title}", "earlier than {title}", "before {title}", "from before {title}",
              "that came out before {title}", "made before {title}", "released before {title}",
              "further back than {title}", "dating from before {title}", "from longer ago than {title}",
              "not as recent as {title}", "back in time from {title}", "going back from {title}",
              "of an older vintage than {title}",
              "before {title} was released", "more old-fashioned than {title}", "more vintage than {title}"),
    "newer": ("newer than {title}", "later than {title}", "after {title}", "from after {title}",
              "made after {title}", "released after {title}", "further forward than {title}",
              "that postdates {title}", "dating from after {title}",
              "forward in time from {title}", "after {title} was released", "from a later time than {title}",
              "more current than {title}", "younger than {title}", "less dated than {title}", "more contemporary than {title}"),
    "similar": ("like {title}", "similar to {title}", "just like {title}", "akin to {title}",
                "comparable to {title}", "reminiscent of {title}", "in the style of {title}", "that feels like {title}",
                "the same kind as {title}", "resembling {title}", "with the feel of {title}",
                "near to {title}", "matching {title}",
                "with the same mood as {title}", "much like {title}", "more films such as {title}",
                "I liked {title}", "I enjoyed {title} a lot", "{title} was wonderful", "I'm a fan of {title}"),
    "contrast": ("different from {title}", "unlike {title}", "nothing like {title}", "the opposite of {title}",
                 "not like {title}", "a change from {title}", "other than {title}",
                 "that is nothing like {title}", "different to {title}", "contrasting with {title}",
                 "away from {title}", "dissimilar from {title}", "less like {title}", "not similar to {title}",
                 "a departure from {title}", "unrelated to {title}", "in a different direction from {title}",
                 "I did not enjoy {title}, something else", "no more like {title}", "everything {title} is not",
                 # a move away from a likeness is a contrast: the likeness words name the anchor, not the wish
                 "a change from films like {title}", "away from things like {title}", "different from the {title} kind",
                 "a rest from {title} and its like", "moving on from the {title} style", "other than the likes of {title}"),
    "before": ("before {bound}", "earlier than {bound}", "older than {bound}", "from before {bound}", "made before {bound}",
               "released before {bound}", "up until {bound}", "until {bound}", "{bound} and earlier",
               "no later than {bound}", "dating from before {bound}", "pre-{bound}"),
    "after": ("after {bound}", "later than {bound}", "newer than {bound}", "from after {bound}", "made after {bound}",
              "released after {bound}", "since {bound}", "from {bound} onwards", "{bound} and later",
              "dating from after {bound}", "post-{bound}"),
}
ANCHORED = ("older", "newer", "similar", "contrast")
OPPOSITE = {"older": "newer", "newer": "older", "similar": "contrast", "contrast": "similar"}
# Direction words of the ordinal relations and their mirror images: every older/newer phrasing is also said
# in the other direction, so the words around the direction word ("came out", "released", "made") are
# evidence for neither.
_MIRROR = {"before": "after", "earlier": "later", "older": "newer", "back": "forward", "longer ago": "more recently"}
_MIRROR.update({v: k for k, v in list(_MIRROR.items())})
_MIRROR_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _MIRROR), key=len, reverse=True)) + r")\b")


def mirrored(phrase: str) -> str | None:
    """``phrase`` with its direction words swapped ("made before X" -> "made after X"); None without one."""
    out = _MIRROR_RE.sub(lambda m: _MIRROR[m.group(1)], phrase)
    return out if out != phrase else None


# A negated comparative ("not as new as X", "less recent than X", "less like X") asks for the opposite of the
# plain comparative: it is read as "more new than X" and the relation found is reversed.
_NEG_COMP = re.compile(r"\b(?:(?:not|n't)\s+(?:as|so)\s+([a-z][a-z-]*)\s+as|less\s+([a-z][a-z-]*)(\s+than)?)\b")


def plain_comparative(phrase: str) -> str | None:
    """``phrase`` with a negated comparative said plainly ("less recent than" -> "more recent than"); None without."""
    m = _NEG_COMP.search(phrase.lower())
    if not m:
        return None
    word = m.group(1) or m.group(2)
    tail = " than" if m.group(1) or m.group(3) else ""
    return phrase[:m.start()] + f"more {word}{tail}" + phrase[m.end():]


for _kind, _opp in (("older", "newer"), ("newer", "older")):
    _own = set(RELATIONS[_kind])
    RELATIONS[_opp] = (*RELATIONS[_opp], *(m for r in RELATIONS[_kind] if (m := mirrored(r)) and m not in _own
                                           and m not in RELATIONS[_opp]))
for _kind, _rel in RELATIONS.items():
    EXTRA[_kind] = tuple(f.replace("{R}", r) for r in _rel for f in FRAMES)
# Questions asked of a whole request, and how each is read: "words" (word counts over the exemplars), "head" (a
# softmax layer over the frozen sentence space, fit on the same exemplars), "blend" (their probabilities
# averaged), "margin" (the head unless its top two are within ``margin``, then the words). Chosen on the
# development set (benchmarks/contrastive_relation_dev.py: held-out train templates and own phrasings).
QUESTIONS = {"relation": ANCHORED, "polarity": ("include", "exclude")}
READERS = {"relation": "blend", "polarity": "blend"}
MODIFIERS = {"early": (0, 4), "mid": (3, 6), "late": (5, 9)}
_YEAR = re.compile(r"(?<![\d'])(1[89]\d\d|20[0-4]\d)(?![\d])")
_DECADE = re.compile(r"(?<![\w'])(?:(1[89]\d0|20[0-4]0)s|'?(\d0)s)\b")
_LAST = re.compile(r"\b(?:last|past)\s+(\d{1,2}|two|three|four|five|six|seven|eight|nine|ten|few)\s+years?\b")
_NUM = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "few": 3}


@dataclass(frozen=True)
class Constraint:
    """A checkable wish. kind: has | lacks | range | older | newer | similar | contrast."""

    kind: str
    attribute: str
    values: frozenset[str] = frozenset()
    low: float = -math.inf
    high: float = math.inf
    anchor: str | None = None

    def describe(self) -> str:
        if self.kind in ("has", "lacks"):
            return f"{self.kind} {self.attribute} {'/'.join(sorted(self.values))}"
        if self.kind == "range":
            lo = "" if math.isinf(self.low) else f"{self.low:g}"
            hi = "" if math.isinf(self.high) else f"{self.high:g}"
            return f"{self.attribute} in [{lo}, {hi}]"
        return f"{self.kind} than {self.anchor}" if self.kind in ("older", "newer") else f"{self.kind} to {self.anchor}"


@dataclass
class Slot:
    start: int
    end: int
    type: str  # value | bin | year | decade | last
    value: Any


@dataclass
class Reading:
    """What the card can check in one utterance."""

    constraints: list[Constraint] = field(default_factory=list)
    relation: str | None = None  # the anchored relation when an anchor is named
    skeleton: str = ""

    def __bool__(self) -> bool:
        return bool(self.constraints or self.relation)


_TOK = re.compile(r"[a-z]+(?:'[a-z]+)?|\d{4}|[,;.!?]")
_NEG_TOK = {"no", "not", "nothing", "never", "none", "without", "don't", "dont", "nor", "isn't", "aren't", "can't"}
# Function words that carry no relation (a relation's own prepositions, "before", "after", "like", "since",
# "until", are kept), the placeholder fillers, and the card noun.
_STOP = set("""a an the some any me my i you we us it its this these those that which who what please just really so
very and or of to from for in on at by as with into about than one ones something anything thing things is are was
were be been am do does did can could would should will shall may might must have has had s film films movie movies
more most comedy horror seventies 1980""".split())


def features(text: str) -> list[str]:
    """Content words (negation-marked: a word within three after "no"/"not"/... reads as NOT_word) and
    bigrams of consecutive content words; function words are skipped."""
    toks = _TOK.findall(text.lower().replace("\u2019", "'"))
    out: list[str] = []
    neg, prev = 0, ""
    for t in toks:
        if t in ",;.!?":
            neg, prev = 0, ""
            continue
        if t in _NEG_TOK:
            out.append(t)
            neg, prev = 3, ""
            continue
        if t in _STOP:
            continue
        if prev:
            out.append(f"{prev}_{t}")
        prev = t
        out.append(f"NOT_{t}" if neg else t)
        neg = max(0, neg - 1)
    return out


def _words(phrase: str) -> str:
    return r"\b" + r"[\s-]+".join(re.escape(w) for w in phrase.lower().split()) + r"(?:s|es)?\b"


class Grounder:
    """Reads card values, ordinal ranges and anchored relations from utterances (see module doc)."""

    def __init__(self, card: Any, train_templates: Mapping[str, Sequence[str]], encode: Callable[[list[str]], np.ndarray],
                 *, newest: float | None = None, k: int = 3, readers: Mapping[str, str] | None = None, margin: float = 0.2,
                 lexicon: Any = None, familiar: frozenset[str] = frozenset()) -> None:
        self.card = card
        # lexicon.Lexicon: definitions of unfamiliar words no exemplar holds (None: such words are skipped);
        # familiar: words the sentence encoder knows whole (text.whole_words), never looked up
        self.lexicon, self.familiar = lexicon, familiar
        self.readers = dict(READERS if readers is None else readers)
        self.margin = margin
        self.encode = encode
        self.k = k
        self.newest = newest
        attrs = card.item.attributes
        self.categorical = next((n for n, a in attrs.items() if a.kind in ("multi_categorical", "categorical") and a.values), None)
        self.ordinal = next((n for n, a in attrs.items() if a.kind == "ordinal" and a.bins), None)
        pats: list[tuple[int, re.Pattern, str, Any]] = []
        if self.categorical:
            for value, vt in attrs[self.categorical].values.items():
                for w in {value, value.replace("-", " "), *vt.aliases}:
                    if w.strip():
                        pats.append((len(w), re.compile(_words(w), re.I), "value", value))
        if self.ordinal:
            for b in attrs[self.ordinal].bins:
                for w in {b.label, *b.aliases}:
                    pats.append((len(w), re.compile(_words(w), re.I), "bin", (b.low, b.high)))
        self._pats = sorted(pats, key=lambda p: -p[0])
        # nearest-neighbour exemplars per relation, in the frozen sentence space
        groups: dict[str, list[str]] = {}
        for kind, ts in train_templates.items():
            target = {"include_exclude": "pair_exclude", "include_range": None}.get(kind, kind)
            if target in ("include", "exclude", "pair_exclude", "before", "after", *ANCHORED):
                groups.setdefault(target, []).extend(ts)
        for kind, ts in EXTRA.items():
            groups.setdefault(kind, []).extend(ts)
        # anchored exemplars said with a negated comparative are the plain comparative of the opposite relation
        anchored = {kd: list(groups.get(kd, [])) for kd in ANCHORED}
        for kd in ANCHORED:
            groups[kd] = [t for t in anchored[kd] if plain_comparative(t) is None]
        for kd in ANCHORED:
            groups[OPPOSITE[kd]].extend(p for t in anchored[kd] if (p := plain_comparative(t)) is not None)
        for kind in ("include", "exclude"):  # a value said with a year or bin around it still reads the same way
            groups[kind] = list(dict.fromkeys(groups.get(kind, [])))
        self.groups = {k: self._fill(v) for k, v in groups.items()}
        self._E = {k: self.encode(v) for k, v in self.groups.items()}
        self._counts: dict[str, dict[str, int]] = {}
        self._totals: dict[str, int] = {}
        for kd, texts in self.groups.items():
            c: dict[str, int] = {}
            for t in texts:
                for f in set(features(t)):
                    c[f] = c.get(f, 0) + 1
            self._counts[kd], self._totals[kd] = c, sum(c.values())
        self._vocab = {f for c in self._counts.values() for f in c}
        within = self._fill([t for kd in ("range_bin", "include_range", "include") for t in train_templates.get(kd, ())])
        self._within = {f for t in within for f in features(t)}
        self._memo: dict[str, np.ndarray] = {}
        # small softmax heads in the frozen sentence space, one per question asked of a whole request
        self._heads = {QUESTIONS[q]: (fit_head([self._E[kd] for kd in QUESTIONS[q]]), r) for q, r in self.readers.items()
                       if r != "words" and all(len(self._E.get(kd, ())) for kd in QUESTIONS[q])}

    @staticmethod
    def _fill(templates: Sequence[str]) -> list[str]:
        return list(dict.fromkeys(" ".join(t.format(**FILL).split()) for t in templates))

    # ------------------------------------------------------------------ slots

    def slots(self, text: str) -> list[Slot]:
        low = text.lower()
        taken = np.zeros(len(low) + 1, bool)
        out: list[Slot] = []

        def put(s: int, e: int, typ: str, val: Any) -> None:
            if not taken[s:e].any():
                taken[s:e] = True
                out.append(Slot(s, e, typ, val))

        if self.ordinal:
            for m in _LAST.finditer(low):
                n = m.group(1)
                years = int(n) if n.isdigit() else _NUM[n]
                if self.newest is not None:
                    put(m.start(), m.end(), "last", (self.newest - years + 1, self.newest))
            mod = r"\b(early|mid|late)[\s-]+(?:the\s+)?"
            for m in re.finditer(mod + r"((?:1[89]\d0|20[0-4]0)s|'?\d0s)", low):
                lo = self._decade_low(m.group(2))
                if lo is not None:
                    a, b = MODIFIERS[m.group(1)]
                    put(m.start(), m.end(), "bin", (lo + a, lo + b))
            for _, pat, typ, val in self._pats:
                if typ != "bin":
                    continue
                for m in re.finditer(mod + pat.pattern, low, re.I):
                    lo, hi = val
                    if hi - lo == 9:
                        a, b = MODIFIERS[m.group(1)]
                        put(m.start(), m.end(), "bin", (lo + a, lo + b))
            for m in _DECADE.finditer(low):
                lo = self._decade_low(m.group(0))
                if lo is not None:
                    put(m.start(), m.end(), "bin", (lo, lo + 9))
        for _, pat, typ, val in self._pats:
            if typ == "bin" and not self.ordinal:
                continue
            for m in pat.finditer(low):
                put(m.start(), m.end(), typ, val)
        if self.ordinal:
            for m in _YEAR.finditer(low):
                put(m.start(1), m.end(1), "year", float(m.group(1)))
        return sorted(out, key=lambda s: s.start)

    @staticmethod
    def _decade_low(tok: str) -> float | None:
        t = tok.strip("'").rstrip("s")
        if len(t) == 4 and t.isdigit():
            return float(t)
        if len(t) == 2 and t.isdigit():
            y = int(t)
            return float(1900 + y if y >= 20 else 2000 + y)
        return None

    def skeleton(self, text: str, slots: Sequence[Slot]) -> str:
        out, pos, nv = [], 0, 0
        for s in slots:
            out.append(text[pos:s.start])
            if s.type == "value":
                out.append(FILL["value"] if nv == 0 else FILL["other"])
                nv += 1
            elif s.type == "year":
                out.append(FILL["bound"])
            else:
                out.append(FILL["bin"])
            pos = s.end
        out.append(text[pos:])
        return " ".join("".join(out).split())

    # ------------------------------------------------------------------ relations

    def _vec(self, text: str) -> np.ndarray:
        v = self._memo.get(text)
        if v is None:
            v = self.encode([text])[0]
            if len(self._memo) > 50_000:
                self._memo.clear()
            self._memo[text] = v
        return v

    def vote(self, text: str, kinds: Sequence[str]) -> tuple[str, dict[str, float]]:
        """The relation among ``kinds``. Where a head was fit for ``kinds`` (``READERS``): "head" its softmax alone,
        "blend" its probabilities averaged with the word reader's (the word log-likelihoods as probabilities; with
        no word known, the nearest exemplars' cosines as a softmax at temperature 1/20), "margin" the head unless
        its top two are within ``margin``; elsewhere the word reader alone (``vote_words``)."""
        got = self._heads.get(tuple(kinds))
        if got is None:
            return self.vote_words(text, kinds)
        (W, b), reader = got
        z = W @ self._vec(text) + b
        p = np.exp(z - z.max())
        p /= p.sum()
        if reader == "blend":
            sc = self.word_scores(text, kinds)
            v, temp = (np.array([sc[k] for k in kinds]), 1.0) if sc is not None else (self._nearest(text, kinds), 20.0)
            v = np.exp((v - v.max()) * temp)
            p = 0.5 * p + 0.5 * v / v.sum()
        elif reader == "margin":
            o = np.sort(p)[::-1]
            if o[0] - o[1] < self.margin:
                return self.vote_words(text, kinds)
        return kinds[int(np.argmax(p))], {k: float(x) for k, x in zip(kinds, p, strict=True)}

    def word_scores(self, text: str, kinds: Sequence[str]) -> dict[str, float] | None:
        """Naive Bayes log-likelihoods over the exemplars' words (negation-marked, with bigrams); None when no word
        of ``text`` was seen in the exemplars of ``kinds`` or the words tie."""
        raw = features(text)
        raw += self.defined(raw)
        # only words some compared relation has seen are evidence (a word none of them knows would favour the
        # relation with fewer exemplar words)
        vocab = {f for kd in kinds for f in self._counts.get(kd, {})}
        flip = {f for f in raw if f not in vocab and f.startswith("NOT_") and f[4:] in vocab and len(kinds) == 2}
        feats = [f for f in raw if f in vocab or f in flip]
        if not feats or not all(self._totals.get(kd, 0) for kd in kinds):
            return None
        sc = {}
        V = len(vocab)
        for j, kd in enumerate(kinds):
            other = kinds[1 - j] if len(kinds) == 2 else kd
            tot = self._totals[kd]
            # a negated relation word ("nothing older than") counts for the opposite relation
            sc[kd] = float(sum(math.log((self._counts.get(other if f in flip else kd, {}).get(f[4:] if f in flip else f, 0)
                                         + 0.5) / (tot + 0.5 * V)) for f in feats))
        best = max(sc.values())
        return sc if sum(1 for v in sc.values() if v == best) == 1 else None

    def defined(self, feats: Sequence[str]) -> list[str]:
        """Features of the dictionary definitions of the words in ``feats`` that no exemplar holds and the sentence
        encoder does not know whole, nor their lemmas ("antedating" -> "be earlier in time; go back further"); a
        negated word's definition is read negated too. Common words stay the encoder's: their definitions list
        many senses and add more noise than evidence (benchmarks/contrastive_relation_dev.py)."""
        if self.lexicon is None:
            return []
        out: list[str] = []
        for f in feats:
            neg = f.startswith("NOT_")
            w = f[4:] if neg else f
            if "_" in w or w in self._vocab or w in self.familiar or len(w) < 3 or not w.isalpha():
                continue
            if any(lemma in self.familiar for _, lemma in self.lexicon.lemmas(w)):
                continue
            for g in features(self.lexicon.define(w)):
                out.append(g if not neg or g.startswith("NOT_") else f"NOT_{g}")
        return out

    def _nearest(self, text: str, kinds: Sequence[str]) -> np.ndarray:
        """Per kind, the mean cosine of ``text`` to its ``k`` nearest exemplars in the sentence space."""
        v = self._vec(text)
        return np.array([float(np.sort(self._E[kd] @ v)[::-1][: self.k].mean()) if len(self._E.get(kd, ())) else -np.inf
                         for kd in kinds])

    def vote_words(self, text: str, kinds: Sequence[str]) -> tuple[str, dict[str, float]]:
        """The relation among ``kinds`` the words say (``word_scores``); when no word decides, the nearest
        exemplars in the sentence space (mean of the top-k cosines)."""
        sc = self.word_scores(text, kinds)
        if sc is None:
            sc = dict(zip(kinds, map(float, self._nearest(text, kinds)), strict=True))
        return max(sc, key=sc.get), sc

    def read(self, said: str, *, anchored: bool = False, anchor: str | None = None) -> Reading:
        """Constraints an utterance names; ``said`` has a named item already replaced by "that <noun>"."""
        slots = self.slots(said)
        skel = self.skeleton(said, slots)
        out = Reading(skeleton=skel)
        values = [s for s in slots if s.type == "value"]
        years = [s for s in slots if s.type == "year"]
        ranges = [s for s in slots if s.type in ("bin", "last")]
        if anchored:  # "a more recent one than <title>", "not as new as", "too new": a comparative, not the bin
            ranges = [s for s in ranges if not re.search(r"\b(?:more|less|most|least|as|too|so)\s*$", said[:s.start], re.I)]
        if anchored and not values and not years and not ranges:
            plain = plain_comparative(said)
            rel, _ = self.vote(plain or said, ANCHORED)
            out.relation = OPPOSITE[rel] if plain else rel
            return out
        if self.ordinal:
            for s in ranges:
                rel = self._bin_relation(said, s)
                if rel == "before":
                    out.constraints.append(Constraint("range", self.ordinal, high=s.value[0] - 1))
                elif rel == "after":
                    out.constraints.append(Constraint("range", self.ordinal, low=s.value[1] + 1))
                else:
                    out.constraints.append(Constraint("range", self.ordinal, low=s.value[0], high=s.value[1]))
            if years:
                if len(years) >= 2 and re.search(r"\b(?:between|from)\b", skel) and not re.search(r"\b(?:before|after)\b", skel):
                    lo, hi = sorted((years[0].value, years[1].value))
                    out.constraints.append(Constraint("range", self.ordinal, low=lo, high=hi))
                else:
                    for s in years:
                        rel, _ = self.vote(self._around(said, s, slots), ("before", "after"))
                        out.constraints.append(Constraint("range", self.ordinal, high=s.value - 1) if rel == "before"
                                               else Constraint("range", self.ordinal, low=s.value))
        if values:
            first: dict[str, Slot] = {}
            for sl in values:
                first.setdefault(sl.value, sl)
            again = [sl for sl in values if first[sl.value] is not sl]  # a value said twice: its first mention reads
            values = list(first.values())
            pol = self._polarity(said, values, slots)
            for sl in again:  # a later mention refuses it only with a cue of its own ("musicals? no singing")
                if NEGATION.search(re.split(r"[,;.!?]", said[:sl.start])[-1]):
                    pol[values.index(first[sl.value])] = "exclude"
            exc = frozenset(s.value for s, p in zip(values, pol, strict=True) if p == "exclude")
            inc = frozenset(s.value for s, p in zip(values, pol, strict=True) if p == "include") - exc  # a refusal wins
            if inc:
                out.constraints.insert(0, Constraint("has", self.categorical, inc))
            if exc:
                out.constraints.append(Constraint("lacks", self.categorical, exc))
        return out

    def _bin_relation(self, text: str, slot: Slot) -> str | None:
        """"before the sixties" / "after the 80s": a relation word right before a bin makes it a bound."""
        prefix = " ".join(_TOK.findall(re.split(r"[,;.!?]", text[:slot.start].lower())[-1])[-2:])
        b, a = set(self._counts.get("before", {})), set(self._counts.get("after", {}))
        rel_words = {w for w in (b ^ a) - self._within if "_" not in w}  # single words of one relation only
        if not prefix or not ({f for f in features(prefix)} & rel_words):
            return None
        return self.vote(prefix + " " + FILL["bound"], ("before", "after"))[0]

    def _around(self, text: str, slot: Slot, slots: Sequence[Slot]) -> str:
        """The clause around one slot, said as a skeleton with only that slot filled."""
        lo = max([s.end for s in slots if s.end <= slot.start] + [0])
        hi = min([s.start for s in slots if s.start >= slot.end] + [len(text)])
        part = text[lo:slot.start] + " " + (FILL["bound"] if slot.type == "year" else FILL["value"]) + " " + text[slot.end:hi]
        return " ".join(part.split())

    def _refuses(self, skeleton: str) -> str:
        """include / exclude for a lone value without a negation cue: the words of the request (``vote``)."""
        return self.vote(skeleton, ("include", "exclude"))[0]

    def _polarity(self, text: str, values: Sequence[Slot], slots: Sequence[Slot]) -> list[str]:
        """include / exclude per value slot: a negation cue before it in its clause (or right after a lone
        value) rules it out; otherwise the words of the request decide (``vote``). Of two values, the first
        is the wish unless a cue rules it out, the second is read from the words between them."""
        out = []
        for j, s in enumerate(values):
            prev_end = values[j - 1].end if j else 0
            before = text[prev_end:s.start]
            clause = re.split(r"[,;.!?]", before)[-1]
            if NEGATION.search(clause if j == 0 else before):
                out.append("exclude")
            elif len(values) == 1:
                tail = re.split(r"[,;.!?]|\bbut\b|\band\b", text[s.end:], flags=re.I)[0]
                out.append("exclude" if NEGATION.search(tail) else self._refuses(self.skeleton(text, slots)))
            elif j == 0:
                out.append("include")
            else:
                out.append("exclude" if self.vote(self.skeleton(text, slots), ("both", "pair_exclude"))[0] == "pair_exclude"
                           else "include")
        return out


def fit_head(groups: Sequence[np.ndarray], l2: float = 1e-2, steps: int = 300, lr: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """A softmax layer over sentence vectors, one class per group (classes weighted equally), by gradient descent."""
    X = np.concatenate(groups).astype(np.float64)
    y = np.concatenate([np.full(len(g), j) for j, g in enumerate(groups)])
    wt = np.concatenate([np.full(len(g), 1.0 / len(g)) for g in groups]) / len(groups)
    C, D = len(groups), X.shape[1]
    W, b = np.zeros((C, D)), np.zeros(C)
    Y = np.eye(C)[y]
    for _ in range(steps):
        Z = X @ W.T + b
        P = np.exp(Z - Z.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        G = (P - Y) * wt[:, None]
        W -= lr * (G.T @ X + l2 * W)
        b -= lr * G.sum(0)
    return W.astype(np.float32), b.astype(np.float32)
