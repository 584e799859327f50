"""How ``semid-constrain`` reads a request: a constraint language with negation, and the rows that teach it.

The reader of ``constraint.py`` learns one canonical text per relation from
phrasings that say the relation directly ("made before 1980", "older than
Heat"). Said with a negation in front ("not made before 1980"), the
relation words are the same and the reader emits the relation they name,
the wrong way round. Here the language gets a second form of every ordinal
constraint that has a complement in it, ``not <text>`` ("not year < 1980",
"not year < that"), read as that complement ("year >= 1980", "year >
that"). The reader learns it from its own relation phrasings, negated by
the ordinary rules of English for a relation or a comparison:

- a relation negated as a whole: "nothing {R}", "no {nouns} {R}", and
  "not {R}" when the relation starts with a participle or a comparison;
- a comparison negated or lowered: "older than X" -> "not older than X";
  "more recent than X" -> also "less recent than X",
  "not as recent as X" (an -er comparative is not taken back to its
  adjective, so only words the relation already says are said).

The output mirrors the input: the words that name the relation still name
it, and a negation in the utterance puts ``not`` in front of it. The
relation phrasings are the train templates and the system's own
paraphrases (``systems/contrastive/grounding.py``: ``RELATIONS``); no
evaluation wording is read (tests/test_eval_wall.py checks every rendered
row). ``NegatingReaderRecommender`` is ``semid-constrain``: the
``SemIdRecommender`` whose reader uses this language.

Decoding keeps to what the reader is sure of. The reader is trained to a
near-zero loss on its rows, so a reading it gives less than most of its
probability is one its rows did not teach, and there its probability is
not to be trusted for the direction. ``likeliest_readings`` finds the
reader's readings in order of probability (an exact best-first search of
the language's token trie) until together they hold ``CREDIBLE`` (90 %) of
it. Decoding keeps to the items that satisfy the request with probability
``CREDIBLE`` or more under those readings (each reading's probability
summed over the readings an item satisfies); when fewer than k items are
that sure, to none. A sure reading is one reading, as before. Readings
that nest ("sci-fi, no noir" or just "sci-fi") keep to the items both
hold; a reader torn between a relation and its complement keeps to
neither.
"""

from __future__ import annotations

import copy
import heapq
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from systems.semid.constraint import NONE, ConstraintSpace, canonical
from systems.semid.system import SemIdRecommender

NOT = "not "
CREDIBLE = 0.9  # the share of the reader's probability the readings decoding keeps to hold together
MOST_READINGS = 8  # the readings looked for at most; fewer than CREDIBLE's share together -> no constraint
ORDINAL = ("before", "after", "older", "newer")  # the request kinds whose relation has a complement
# a relation negated as a whole, said around it ({R}: the relation, e.g. "made before 1980"): by a quantifier
# for every relation, by "not" only for one that starts with a participle or a comparison ("not made before
# 1980", "not older than 1980"), since "not" before a bare preposition ("not after ...") is elliptical
QUANTIFIED_FRAMES = ("nothing {R}", "no {nouns} {R}", "I don't want anything {R}", "none {R}", "skip everything {R}")
NOT_FRAMES = ("not {R}", "something not {R}", "a {noun} not {R}", "one not {R}", "not {R}, please")
_PREPOSITION = re.compile(r"^(?:before|after|from|since|until|up until|back|forward|going|of|post-|pre-|\{)")
# a comparison lowered or negated, said in the frames below ({C}: e.g. "not older than 1980")
COMPARISON_FRAMES = ("{C}", "something {C}", "a {noun} {C}", "one {C}", "{C}, please", "show me {nouns} {C}")
_COMPARATIVE = re.compile(r"\b(?:more (\w+)|(\w+er)) than\b")
# frames the train templates put around their relation; the relation is what follows
_LEAD = re.compile(r"^(?:something |a \{noun\} (?:that )?|go |move )")


def comparison_negations(relation: str) -> list[str]:
    """A relation's comparison said negated or lowered: "older than X" -> "not older than X"; "more recent than X"
    also -> "less recent than X", "not as recent as X". [] when it holds no comparison. An -er comparative is not
    taken back to its adjective: only words the relation already says are said."""
    m = _COMPARATIVE.search(relation)
    if m is None:
        return []
    said = m.group(0)[: -len(" than")]
    forms = [f"not {said} than"]
    if m.group(1):
        forms += [f"less {m.group(1)} than", f"not as {m.group(1)} as"]
    return [relation[: m.start()] + f + relation[m.end():] for f in forms]


def relation_phrases(kind: str) -> list[str]:
    """The bare relations a kind is said with: the train templates without their lead-in frame, and the
    system's own relation paraphrases."""
    from systems.contrastive.grounding import OPPOSITE, RELATIONS, mirrored
    from talkwalk_bench.steering import train_templates

    own = [_LEAD.sub("", t).removesuffix(", please") for t in train_templates().get(kind, ())]
    # a paraphrase whose mirror image is among the opposite kind's is left out: one of each such pair is the
    # other said the other way round by ``mirrored``, not wording written for its kind
    opposite = set(RELATIONS.get(OPPOSITE.get(kind, ""), ()))
    written = [r for r in RELATIONS.get(kind, ()) if mirrored(r) not in opposite]
    rel = [r.removesuffix(", please") for r in [*own, *written]]
    rel = [r for r in rel if "{" in r and not r.startswith(("not ", "no ", "nothing "))]
    return list(dict.fromkeys(rel))


def negated_templates(kind: str) -> list[str]:
    """Every negated form of every relation of ``kind``, in the frames above."""
    out = []
    for r in relation_phrases(kind):
        frames = QUANTIFIED_FRAMES if _PREPOSITION.match(r) else QUANTIFIED_FRAMES + NOT_FRAMES
        out += [f.replace("{R}", r) for f in frames]
        for c in comparison_negations(r):
            out += [f.replace("{C}", c) for f in COMPARISON_FRAMES]
    return list(dict.fromkeys(out))


class NegatingSpace(ConstraintSpace):
    """The constraint language with ``not <text>`` for every ordinal text whose complement is in it.

    ``negation`` maps each ``not`` text to its complement's text; ``resolve`` reads one."""

    def __init__(self, card: Any, *, anchored: bool = False) -> None:
        super().__init__(card, anchored=anchored)
        self.negation: dict[str, str] = {}
        pairs = []
        for t in self.texts:
            m = re.fullmatch(r"(\S+) < (\S+)", t)
            if m:
                pairs.append((t, f"{m.group(1)} {'>' if m.group(2) == 'that' else '>='} {m.group(2)}"))
        for a, b in pairs:
            if b in self.preds:
                self.negation[NOT + a], self.negation[NOT + b] = b, a
        for t, comp in self.negation.items():
            self.preds[t] = self.preds[comp]
        self.texts = list(self.preds)

    def resolve(self, text: str) -> str:
        """The text a reading means: a ``not`` text's complement, any other text itself."""
        return self.negation.get(text, text)

    def negated_rows(self, card: Any, titles: Sequence[str], seed: int = 0, per_anchor: int = 2) -> list[tuple[str, str, str]]:
        """(kind, utterance, ``not`` text) for every negated relation of the ordinal kinds, each said with
        every filling of its kind ("that <noun>" and ``per_anchor`` catalog titles for a relation to an item).
        Its kind is ``not_bound`` (a year) or ``not_item`` (an item), so the reader draws them as two kinds."""
        from talkwalk_bench.steering import Vocabulary

        vocab = Vocabulary(card)
        kind_text = {k: t for t, k in self.anchored.items()}
        that = f"that {vocab.noun}"
        rng = np.random.default_rng(seed + 29)
        out: list[tuple[str, str, str]] = []
        for kind in ORDINAL:
            try:
                steers = vocab.all_steers(kind)
            except Exception:  # a kind this card cannot say
                continue
            group = "not_item" if kind in kind_text else "not_bound"
            for t in negated_templates(kind):
                for s in steers:
                    if kind in kind_text:
                        text = kind_text[kind]
                    else:
                        text = canonical(s.predicate.to_dict()) if s.predicate is not None else None
                    if text is None or NOT + text not in self.negation:
                        continue
                    said = s.say(t, noun=vocab.noun)
                    out.append((group, said, NOT + text))
                    if kind in kind_text and that in said:
                        for _ in range(per_anchor):
                            out.append((group, said.replace(that, titles[int(rng.integers(len(titles)))]), NOT + text))
        return out

    def reader_rows(self, card: Any, titles: Sequence[str], seed: int = 0, per_anchor: int = 2) -> list[tuple[str, str, str]]:
        """The rows of ``ConstraintSpace.reader_rows`` and the negated rows; a negated utterance that those rows
        already say (with their own text) is left to them."""
        rows = super().reader_rows(card, titles, seed=seed, per_anchor=per_anchor)
        said = {u for _, u, _ in rows}
        return rows + [r for r in self.negated_rows(card, titles, seed=seed, per_anchor=per_anchor) if r[1] not in said]


class NegatingReaderRecommender(SemIdRecommender):
    """``semid-constrain``: ``SemIdRecommender`` whose reader emits the ``NegatingSpace`` language."""

    space_class = NegatingSpace

    def _fit_reader(self, model: Any, tok: Any, data: Any, root: Any, seed: int) -> Any:
        return fit_reader(self, model, tok, data, root, seed, self.space_class(data.card, anchored=True))

    def _constraint_setup(self, data: Any) -> None:
        from systems.semid.constraint import TokenTrie

        super()._constraint_setup(data)
        self.cspace = self.space_class(data.card, anchored=self._has_reader)
        # without an item to refer to, none of the relations to one, negated or not
        item = {t for t in self.cspace.texts if self.cspace.resolve(t) in self.cspace.anchored}

        def trie(texts: list[str]) -> tuple[Any, list[str]]:
            return TokenTrie([self.tok(" " + t, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id] for t in texts]), texts

        self._ctries = {True: trie(self.cspace.texts), False: trie([t for t in self.cspace.texts if t not in item])}
        self.ctrie = self._ctries[True][0]

    def readings(self, utterance: str, anchored: bool = True, most: int = MOST_READINGS) -> list[tuple[str, float]]:
        """The reader's readings of an utterance, most probable first, until they hold ``CREDIBLE`` of its
        probability (``likeliest_readings``): [(text, log-probability)], a ``not`` text resolved to its
        complement. Without ``anchored`` the relations to an item are not in the grammar."""
        from systems.semid.constraint import PROMPT

        trie, texts = self._ctries[bool(anchored) and bool(self.cspace.anchored)]
        ids = self.tok(PROMPT.format(utterance=utterance), add_special_tokens=False)["input_ids"]
        return [(self.cspace.resolve(texts[i]), lp) for i, lp in likeliest_readings(self.reader, ids, trie, most=most)]

    def read_constraint(self, utterance: str, anchored: bool = True) -> tuple[str, Any]:
        """The reader's likeliest reading (text, predicate or None), a ``not`` text resolved to its complement."""
        text = self.readings(utterance, anchored=anchored, most=1)[0][0]
        return text, self.cspace.preds[text]

    def read(self, r: Any) -> tuple[str, Any, Any]:
        """(text, predicate or None, cache key) of what decoding keeps to. One reading the reader is sure of
        (``CREDIBLE``): that reading, "that" resolved as ``SemIdRecommender.read`` resolves it. Otherwise its
        credible readings (``readings``), each with its probability, as ``Credible``: decoding keeps to the
        items that satisfy the request with probability ``CREDIBLE`` or more under them."""
        anchor = self.anchor_of(r) if self.cspace.anchored else None
        parts: dict[str, list] = {}  # text -> [predicate or None, cache key, probability]
        for text, lp in self.readings(r.utterance, anchored=anchor is not None):
            if text not in parts:
                parts[text] = [*self._resolved(text, anchor)[1:], 0.0]
            parts[text][2] += math.exp(lp)
        if len(parts) == 1 and next(iter(parts.values()))[2] >= CREDIBLE:
            text, (pred, key, _) = next(iter(parts.items()))
            return text, pred, key
        text = " | ".join(f"{t} ({p:.2f})" for t, (_, _, p) in parts.items())
        readings = tuple((pred, key, p) for pred, key, p in parts.values())
        return text, Credible(readings), ("credible", tuple((key, round(p, 4)) for _, key, p in readings))

    def _resolved(self, text: str, anchor: str | None) -> tuple[str, Any, Any]:
        """(text, predicate or None, cache key) of one reading, "that" resolved to ``anchor``."""
        if text in self.cspace.anchored and anchor is not None and anchor in self._iv.index:
            kind = self.cspace.anchored[text]
            s = self._vocab.relative(kind, anchor, self._iv[anchor], self._iv.titles.get(anchor, ""))
            return text, s.predicate, (kind, anchor)
        return text, self.cspace.preds[text], text

    def _trie_for(self, key: Any, pred: Any) -> Any:
        """``SemIdRecommender._trie_for``; for ``Credible`` readings, the items whose probability of satisfying
        the request is ``CREDIBLE`` or more (a reading without a predicate, ``none`` or an unresolved "that",
        holds for every item). None when no item or every item is that sure."""
        from systems.semid.decode import PrefixTrie

        if not isinstance(pred, Credible):
            return super()._trie_for(key, pred)
        if key not in self._sub:
            sure = np.zeros(len(self.item_ids))
            for p, k, prob in pred.readings:
                if p is not None and ("mask", k) not in self._sub:
                    self._sub[("mask", k)] = self._iv.mask(p)
                sure += prob * (self._sub[("mask", k)] if p is not None else 1.0)
            ok = sure >= CREDIBLE - 1e-9
            self._sub[key] = PrefixTrie([self.space.sids[i] for i in np.flatnonzero(ok)]) if 0 < ok.sum() < len(ok) else None
        return self._sub[key]


@dataclass(frozen=True)
class Credible:
    """The reader's credible readings of one request: (predicate or None, cache key, probability) each."""

    readings: tuple[tuple[Any, Any, float], ...]


def likeliest_readings(model: Any, prompt_ids: Sequence[int], trie: Any, mass: float = CREDIBLE,
                       most: int = MOST_READINGS) -> list[tuple[int, float]]:
    """The texts of ``trie`` in order of their probability under ``model`` after ``prompt_ids``, until together
    they hold ``mass`` of it or ``most`` were found: [(index of the text, log-probability)].

    A best-first search over the token trie, exact: a prefix's log-probability bounds every text under it, so
    texts leave the queue most probable first. The probability is ``constraint.greedy_emit``'s, each step
    renormalised over the tokens the trie allows (a step with one allowed token costs nothing and calls no
    model), so with ``most=1`` and a sure reader it reads what greedy decoding reads, at the same cost.
    """
    import torch

    head = model.get_output_embeddings().weight
    body = model.base_model
    out: list[tuple[int, float]] = []
    held = 0.0
    with torch.inference_mode():
        o = body(input_ids=torch.as_tensor([list(prompt_ids)]), use_cache=True)
        # (-log p, tie-break, tokens so far, cache, last hidden state, tokens not yet fed to the cache)
        queue = [(0.0, 0, (), o.past_key_values, o.last_hidden_state[0, -1], ())]
        n = 1
        while queue and held < mass and len(out) < most:
            neg, _, done, cache, h, pending = heapq.heappop(queue)
            if done in trie.leaf:
                out.append((trie.leaf[done], -neg))
                held += math.exp(-neg)
                continue
            allowed = trie.kids[done]
            if len(allowed) == 1:
                heapq.heappush(queue, (neg, n, (*done, allowed[0]), cache, h, (*pending, allowed[0])))
                n += 1
                continue
            if pending:  # siblings share the cache they branched from: feed a copy
                o = body(input_ids=torch.as_tensor([list(pending)]), past_key_values=copy.deepcopy(cache), use_cache=True)
                cache, h = o.past_key_values, o.last_hidden_state[0, -1]
            lp = torch.log_softmax((h @ head[allowed].T).float(), -1).tolist()
            for t, v in zip(allowed, lp, strict=True):
                heapq.heappush(queue, (neg - v, n, (*done, t), cache, h, (t,)))
                n += 1
    return out


def fit_reader(rec: SemIdRecommender, model: Any, tok: Any, data: Any, root: Any, seed: int, space: ConstraintSpace) -> Any:
    """``SemIdRecommender._fit_reader`` with the rows of ``space``: the adapter, its cache (keyed by the rows) and
    its training are the same. ``SemIdRecommender`` keeps its own copy for ``semid -S constrain=true`` until the
    semid family is next regenerated as a whole: an edit to ``system.py`` makes every semid-family row stale."""
    import copy
    import hashlib
    import json
    import os

    import torch
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    from systems.semid.constraint import PROMPT
    from systems.semid.system import keep_layers
    from systems.semid.train import add_lora, train_reader
    from talkwalk_bench.paths import cache_dir
    from talkwalk_bench.steering import ItemValues

    steps = int(rec.p.get("reader_steps", 0))
    if steps <= 0:
        return None
    n_layers = int(rec.p.get("reader_layers", 0))
    if n_layers > 0:
        from systems.semid.lm import load_base

        base, _ = load_base(rec.p["base_model"])
        if n_layers < base.config.num_hidden_layers:
            keep_layers(base, n_layers)
    else:
        base = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reader = add_lora(base, r=int(rec.p["reader_r"]))
    titles = [t for t in ItemValues(data.card, data.items, rec.item_ids).titles.values() if t]
    rows = space.reader_rows(data.card, titles, seed=seed)
    rows_hash = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
    path = root / f"reader-{rec._reader_key()}-{rows_hash}.pt"
    if n_layers > 0:
        own = json.dumps({"data": data.key, "seed": seed, "base": str(rec.p["base_model"]), "bf16": bool(rec.p["bf16"]),
                          "reader": rec._reader_key(), "rows": rows_hash}, sort_keys=True)
        shared = cache_dir() / "semid-reader" / f"{hashlib.sha256(own.encode()).hexdigest()[:16]}.pt"
        path = path if path.exists() else shared
        path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        st = torch.load(path, map_location="cpu", weights_only=False)
        set_peft_model_state_dict(reader, st["lora"])
        rec.fit_info["reader"] = {**st["info"], "cached": True}
        return reader.merge_and_unload()
    by_kind: dict[str, list[tuple[list[int], list[int]]]] = {}
    for kind, utt, text in rows:
        x = tok(PROMPT.format(utterance=utt), add_special_tokens=False)["input_ids"]
        y = tok(" " + (text or NONE), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        by_kind.setdefault(kind, []).append((x, y))
    kinds = sorted(by_kind)
    info = {"rows": len(rows), "kinds": {k: len(v) for k, v in by_kind.items()}, "steps": steps}
    info.update(train_reader(reader, by_kind, kinds, steps=steps, batch=int(rec.p["reader_batch"]),
                             lr=float(rec.p["reader_lr"]), n_old=int(rec.vocab["n_old"]), seed=seed,
                             bf16=bool(rec.p["bf16"]), desc=f"{rec.meta.name} reader"))
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two jobs may train the same shared reader at once
    torch.save({"lora": get_peft_model_state_dict(reader, save_embedding_layers=False), "info": info}, tmp)
    os.replace(tmp, path)
    rec.fit_info["reader"] = {**info, "cached": False}
    return reader.merge_and_unload()
