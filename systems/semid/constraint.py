"""Structured constraints the LLM emits before it recommends (``semid-constrain``).

The language of constraints is finite and comes from the dataset card: every
value of the steerable categorical attribute (wanted or ruled out), every bin
of the ordinal attribute, every bin edge as a bound either way, and the
combinations the card's request kinds build (a value with a bin, a value
without another), plus ``none``. Each constraint has one canonical text, e.g.
``genre = Horror``, ``genre != Horror``, ``year in 1970s``, ``year < 1980``,
``genre = Comedy & year in 1990s``. That text list is the grammar: decoding is
greedy over a token trie of the texts, so the model can only emit one of them.

Training rows (``rows``) pair the harness's *train* phrasings with the
canonical text of their predicate; phrasings without a fixed predicate (a
relative request about a shown item, neutral, go back, ...) map to ``none``.
The task's predicate is never read at inference: the constraint is what the
model reads off the utterance.

With ``anchored=True`` the language also holds the four relations to an item
the user names or was shown (``year < that``, ``year > that``, ``genre like
that``, ``genre unlike that``); the recommender resolves "that" to an item
itself (a title said in the utterance, else the last item shown) and builds
the predicate from that item's card values. ``reader_rows`` are the rows the
``semid-constrain`` reader is trained on: the train phrasings (anchored ones
with real catalog titles as well as "that <noun>") and the everyday
paraphrases the ``contrastive`` system grounds with
(``systems/contrastive/grounding.py``: ``EXTRA``), never eval wording.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

NONE = "none"
PROMPT = "Request: {utterance}\nConstraint:"
ANCHORED = ("older", "newer", "similar", "contrast")


def canonical(pred: Mapping[str, Any]) -> str | None:
    """The canonical text of a predicate dict, or None when it has no fixed form."""
    kind = pred.get("kind")
    if kind == "has":
        return f"{pred['attribute']} = {pred['value']}"
    if kind == "lacks":
        return f"{pred['attribute']} != {pred['value']}"
    if kind == "range":
        if pred.get("label"):
            return f"{pred['attribute']} in {pred['label']}"
        lo, hi = pred.get("low"), pred.get("high")
        if lo is not None and hi is None:
            return f"{pred['attribute']} {'>' if pred.get('low_strict') else '>='} {_num(lo)}"
        if hi is not None and lo is None:
            return f"{pred['attribute']} {'<' if pred.get('high_strict') else '<='} {_num(hi)}"
        return None
    if kind == "all":
        parts = [canonical(p) for p in pred.get("parts", [])]
        return None if not parts or any(p is None for p in parts) else " & ".join(parts)
    return None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def anchored_texts(card: Any) -> dict[str, str]:
    """Request kind -> canonical text of the relations to a named or shown item the card allows."""
    from talkwalk_bench.steering import Vocabulary

    vocab = Vocabulary(card)
    out = {}
    if vocab.ordinal:
        out.update({"older": f"{vocab.ordinal} < that", "newer": f"{vocab.ordinal} > that"})
    if vocab.categorical:
        out.update({"similar": f"{vocab.categorical} like that", "contrast": f"{vocab.categorical} unlike that"})
    return out


class ConstraintSpace:
    """Every constraint the card allows: canonical text -> predicate (None for ``none`` and anchored texts).

    ``anchored`` maps an anchored text to its request kind (empty unless ``anchored=True``).
    """

    def __init__(self, card: Any, *, anchored: bool = False) -> None:
        from talkwalk_bench.steering import REQUEST_KINDS, Vocabulary, predicate_from_dict

        self.preds: dict[str, Any] = {NONE: None}
        self.anchored: dict[str, str] = {}
        vocab = Vocabulary(card)
        for kind in REQUEST_KINDS:
            try:
                steers = vocab.all_steers(kind)
            except Exception:  # kinds whose predicate needs a shown item
                continue
            for s in steers:
                if s.predicate is None:
                    continue
                text = canonical(s.predicate.to_dict())
                if text is not None:
                    self.preds.setdefault(text, predicate_from_dict(s.predicate.to_dict()))
        if anchored:
            for kind, text in anchored_texts(card).items():
                self.preds[text] = None
                self.anchored[text] = kind
        self.texts = list(self.preds)

    def rows(self, card: Any, seed: int = 0) -> list[tuple[str, str]]:
        """(utterance, canonical text) from the train phrasings only."""
        from talkwalk_bench.steering import train_phrasings

        out = []
        for ph in train_phrasings(card, seed=seed):
            text = canonical(ph.predicate) if ph.predicate is not None else NONE
            out.append((ph.text, text if text in self.preds else NONE))
        return out

    def reader_rows(self, card: Any, titles: Sequence[str], seed: int = 0, per_anchor: int = 2) -> list[tuple[str, str, str]]:
        """(kind, utterance, canonical text) for the reader: train phrasings and the system's own paraphrases.

        Anchored phrasings are kept with "that <noun>" and repeated ``per_anchor`` times with a
        random catalog title in its place. Only ``train`` phrasings and system-side paraphrases are read.
        """
        from systems.contrastive.grounding import EXTRA
        from talkwalk_bench.steering import Vocabulary, train_phrasings

        vocab = Vocabulary(card)
        kind_text = {k: t for t, k in self.anchored.items()}
        that = f"that {vocab.noun}"
        rng = np.random.default_rng(seed)
        said: list[tuple[str, str, dict | None]] = [(ph.kind, ph.text, ph.predicate) for ph in train_phrasings(card, seed=seed)]
        for kind, temps in EXTRA.items():
            try:
                steers = vocab.all_steers(kind)
            except Exception:  # a paraphrase group that is not a request kind ("both")
                continue
            for t in temps:
                for s in steers:
                    said.append((kind, s.say(t, noun=vocab.noun), s.predicate.to_dict() if s.predicate is not None else None))
        out: list[tuple[str, str, str]] = []
        for kind, text, pred in said:
            if kind in kind_text:
                out.append((kind, text, kind_text[kind]))
                for _ in range(per_anchor if that in text else 0):
                    out.append((kind, text.replace(that, titles[int(rng.integers(len(titles)))]), kind_text[kind]))
                continue
            canon = canonical(pred) if pred is not None else NONE
            out.append((kind, text, canon if canon in self.preds else NONE))
        return out


class TokenTrie:
    """Token sequences of the constraint texts (each ended by ``end``), as a trie."""

    def __init__(self, seqs: Sequence[Sequence[int]]) -> None:
        self.kids: dict[tuple[int, ...], list[int]] = {}
        self.leaf: dict[tuple[int, ...], int] = {}
        for i, s in enumerate(seqs):
            for j in range(len(s)):
                self.kids.setdefault(tuple(s[:j]), [])
                if s[j] not in self.kids[tuple(s[:j])]:
                    self.kids[tuple(s[:j])].append(s[j])
            self.leaf[tuple(s)] = i


def greedy_emit(model: Any, prompt_ids: Sequence[int], trie: TokenTrie) -> tuple[int, float]:
    """Greedy decoding restricted to the trie (a grammar of the finite constraint language).

    Returns (index of the emitted text, its log-probability under the restriction).
    Steps with one allowed token are taken without calling the model.
    """
    import torch

    head = model.get_output_embeddings().weight
    body = model.base_model
    done: list[int] = []
    score = 0.0
    with torch.inference_mode():
        out = body(input_ids=torch.as_tensor([list(prompt_ids)]), use_cache=True)
        cache, h = out.past_key_values, out.last_hidden_state[0, -1]
        pending: list[int] = []
        while tuple(done) not in trie.leaf:
            allowed = trie.kids[tuple(done)]
            if len(allowed) == 1:
                nxt = allowed[0]
            else:
                if pending:  # feed forced tokens before asking again
                    o = body(input_ids=torch.as_tensor([pending]), past_key_values=cache, use_cache=True)
                    cache, h = o.past_key_values, o.last_hidden_state[0, -1]
                    pending = []
                lp = torch.log_softmax((h @ head[allowed].T).float(), -1)
                j = int(lp.argmax())
                score += float(lp[j])
                nxt = allowed[j]
            done.append(nxt)
            pending.append(nxt)
    return trie.leaf[tuple(done)], score
