"""Harness only: the evaluation phrasings of steering requests, and the words that only they use.

The built-in eval templates (``steering_eval.yaml`` beside this module) are
what the steerability, conversation and judge tasks score with. They live
in the task package because systems never import it: a system may read
``talkwalk_bench.steering`` (predicates, train templates) but nothing here.
``tests/test_eval_wall.py`` enforces the import boundary and fails when a
string literal under ``systems/`` holds a word sequence found only in the
eval phrasings (``eval_only_words``, ``eval_only_sequences``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from talkwalk_bench.data.card import DatasetCard
from talkwalk_bench.errors import DataFormatError
from talkwalk_bench.steering.phrasings import (
    TemplateSet,
    _builtin,
    load_steering_file,
    read_template_file,
)

EVAL_PATH = Path(__file__).resolve().parent / "steering_eval.yaml"

# Closed-class English words (articles, pronouns, auxiliaries, conjunctions, prepositions,
# quantifiers): sharing one of these with the eval phrasings says nothing about having read them.
FUNCTION_WORDS = frozenset("""
a an the this that these those it its they them their i i'm me my you your we us our let's
is are was were be been am do does did have has had can could would should will shall may might must
and or but nor though although if so as than then too also just very not no yes
of to in on at by for from with about into onto over under off up down out
all any some each every both either neither much many more most less few other else such what which who how
something anything nothing everything someone one ones
""".split())

# Very common verbs and nouns: alone they say nothing about having read the eval phrasings (a
# sequence that holds them still counts: "give me" is flagged, "give" is not).
GENERIC_WORDS = frozenset("give get find help need look said choose better bit type sort spread".split())

_WORD = re.compile(r"[a-z]+(?:[-'][a-z]+)*")
_SLOT = re.compile(r"\{\w+\}")


def words(text: str) -> list[str]:
    """Lower-case word tokens, slots removed, crude plural/verb endings folded ("avoids" -> "avoid")."""
    return [_fold(w) for w in _WORD.findall(_SLOT.sub(" | ", text.lower().replace("\u2019", "'")))]


def _fold(w: str) -> str:
    for suf in ("ing", "es", "ed", "s"):
        if len(w) > len(suf) + 3 and w.endswith(suf) and not w.endswith("ss"):
            return w[: -len(suf)]
    return w


_FUNCTION = FUNCTION_WORDS | {_fold(w) for w in FUNCTION_WORDS}


@lru_cache(maxsize=1)
def builtin_eval() -> TemplateSet:
    """The built-in eval templates, validated (every kind, disjoint from the train set)."""
    ev = read_template_file(EVAL_PATH, "eval")
    train = {t.strip().lower(): k for k, ts in _builtin().train.items() for t in ts}
    for kind, ts in ev.eval.items():
        for i, t in enumerate(ts):
            if t.strip().lower() in train:
                raise DataFormatError(f"{EVAL_PATH}: templates.{kind}.eval.{i}: {t!r} is also a train template ({train[t.strip().lower()]})")
    return ev


def eval_templates(steering_file: str | Path | None = None) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """The templates used to score, and the source of each kind.

    Without a steering file, the built-in eval set. With one, every
    phrasing in the file (train and eval alike; the system never saw
    either) for the kinds it covers, the built-in eval set for the rest.
    """
    out = {k: tuple(v) for k, v in builtin_eval().eval.items()}
    source = dict.fromkeys(out, "builtin-eval")
    if steering_file is not None:
        user = load_steering_file(steering_file)
        for k in user.kinds():
            out[k] = tuple(user.train.get(k, ())) + tuple(user.eval.get(k, ()))
            source[k] = str(steering_file)
    return out, source


def _ngrams(ws: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)}


def _segments(text: str) -> list[list[str]]:
    """Word runs of a template, split at slots (a sequence never spans a slot)."""
    return [words(part) for part in _SLOT.split(text.lower())]


def known_text(card: DatasetCard | None = None) -> list[str]:
    """Everything a system may legitimately learn words from: the train templates, the public kind descriptions, the card."""
    from talkwalk_bench.steering.phrasings import REQUEST_KINDS

    texts = [t for ts in _builtin().train.values() for t in ts]
    texts += [k.replace("_", " ") + ": " + ks.description for k, ks in REQUEST_KINDS.items()]
    if card is not None:
        texts.append(card.model_dump_json())
    return texts


def eval_only_words(card: DatasetCard | None = None) -> frozenset[str]:
    """Content words of the eval templates found in no train template and not in the card (folded forms)."""
    known = {w for t in known_text(card) for w in words(t)}
    ev = {w for ts in builtin_eval().eval.values() for t in ts for seg in _segments(t) for w in seg}
    return frozenset(ev - known - _FUNCTION - GENERIC_WORDS)


def eval_only_sequences(card: DatasetCard | None = None, n_max: int = 4) -> frozenset[tuple[str, ...]]:
    """Word sequences (2..n_max words) of the eval templates that no train template and no card text contains."""
    known: set[tuple[str, ...]] = set()
    for t in known_text(card):
        for seg in _segments(t):
            for n in range(2, n_max + 1):
                known |= _ngrams(seg, n)
    out: set[tuple[str, ...]] = set()
    for ts in builtin_eval().eval.values():
        for t in ts:
            for seg in _segments(t):
                for n in range(2, n_max + 1):
                    out |= {g for g in _ngrams(seg, n) if g not in known and not set(g) <= _FUNCTION}
    return frozenset(out)


def leaked(text: str, card: DatasetCard | None = None) -> list[str]:
    """The eval-only words and word sequences that ``text`` contains (empty when none)."""
    ws = words(text)
    only_w = eval_only_words(card)
    hits = [w for w in dict.fromkeys(ws) if w in only_w]
    seqs = eval_only_sequences(card)
    for n in range(2, 5):
        hits += [" ".join(g) for g in sorted(_ngrams(ws, n) & seqs)]
    return hits
