"""The query builder (seed 001 ``build_query``) and the conversation state it folds over.

query = w_text * text + w_user * user + w_context * context + w_history * history,
then, per turn, attract toward shown items ("more like that") or repel from
them ("something different", "more variety"); "go back" restores the query
point before the last steer. Only the last ``window`` turns are read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Control intents are recognised in the frozen text space by their nearest prototype,
# so paraphrases ("let's undo that", "return to the earlier list") map to the same op.
# Hand-written additions hold no wording that only the evaluation phrasings use (tests/test_eval_wall.py);
# the train phrasings of the control kinds are added at fit time (pairs.control_phrases).
INTENTS: dict[str, tuple[str, ...]] = {
    "back": ("go back", "undo that", "return to the previous recommendations", "back to what I had before"),
    "attract": ("more like that", "similar to these", "more of the same", "I liked those, show me similar ones"),
    "repel": ("something different", "none of these, change it up", "I want a change"),
    "diverse": ("more variety", "mix it up", "show me a diverse range"),
}


NEGATION = re.compile(r"\b(?:anything but|anything except|none of|hold the|rather than|instead of|do not|don't|dont|can't|cannot|won't|"
                      r"no|not|without|except|skip|nothing|never|excluding)\b", re.IGNORECASE)
CLAUSE_END = re.compile(r"[,;.!?]|\b(?:but|and|though|however)\b", re.IGNORECASE)


def split_negation(utterance: str) -> tuple[str, list[str]]:
    """(what to move toward, [what to move away from]): each negation cue negates up to the clause's end."""
    pos, negs, rest = [], [], utterance
    while True:
        m = NEGATION.search(rest)
        if not m:
            pos.append(rest)
            break
        pos.append(rest[: m.start()])
        tail = rest[m.end():]
        e = CLAUSE_END.search(tail)
        neg = tail[: e.start()] if e else tail
        if neg.strip():
            negs.append(neg.strip())
        rest = tail[e.start():] if e else ""
    keep = " ".join(" ".join(pos).split())
    keep = re.sub(r"^(?:but|and|though|however)\b|\b(?:but|and|though|however)$", "", keep, flags=re.IGNORECASE).strip(" ,;")
    return keep, negs


@dataclass(frozen=True)
class Weights:
    text: float = 1.0
    user: float = 0.3
    context: float = 0.3
    history: float = 1.0
    attract: float = 1.0
    repulsion: float = 0.6
    negation: float = 0.5  # an excluded phrase ends at cosine -negation to the query
    glide: float = 25.0  # ordinal units an 'older'/'newer' turn moves the anchor
    window: int = 4  # conversation turns read
    history_window: int = 20  # most recent history items averaged


def normalize(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def build_query(text: np.ndarray | None, user: np.ndarray | None, context: np.ndarray | None,
                history: np.ndarray | None, attract: np.ndarray | None, repel: np.ndarray | None, w: Weights) -> np.ndarray:
    """One query point from whichever signals are present (each an L2-normalised vector or a stack of them)."""
    q = np.zeros(_dim(text, user, context, history, attract, repel), dtype=np.float32)
    if text is not None:
        q += w.text * text
    if user is not None:
        q += w.user * user
    if context is not None:
        q += w.context * context
    if history is not None and len(history):
        q += w.history * normalize(history.mean(0))
    if attract is not None and len(attract):
        q += w.attract * normalize(attract.mean(0))
    if repel is not None:
        for e in repel:
            q -= w.repulsion * e
    return normalize(q)


def _dim(*vs) -> int:
    for v in vs:
        if v is not None and np.size(v):
            return int(np.shape(v)[-1])
    raise ValueError("build_query needs at least one signal")


@dataclass
class TurnTrace:
    utterance: str
    intent: str  # "steer" | "back" | "attract" | "repel" | "diverse" | "none"
    query: np.ndarray
    diversify: bool = False
    negated: tuple[str, ...] = ()  # phrases ruled out at this query point ("no horror" -> "horror")
    constraints: tuple[Any, ...] = ()  # grounded constraints on the list at this point (grounding.Constraint)


def classify(utterance: str, text_vec: np.ndarray | None, prototypes: dict[str, np.ndarray], threshold: float) -> str:
    if not utterance.strip() or text_vec is None:
        return "none"
    best, name = -1.0, "steer"
    for intent, P in prototypes.items():
        s = float((P @ text_vec).max())
        if s > best:
            best, name = s, intent
    return name if best >= threshold else "steer"


def steer_point(base: np.ndarray, utterance: str, steer_text: Callable[[str], np.ndarray], w: Weights,
                negative: Callable[[str], bool] | None = None) -> np.ndarray:
    """Move toward what the utterance asks for and past what it rules out ("no horror", "without romance")."""
    keep, negs = steer_parts(utterance, w, negative)
    return move(base, keep, negs, steer_text, w)


def move(base: np.ndarray, keep: str, negs: Sequence[str], steer_text: Callable[[str], np.ndarray], w: Weights) -> np.ndarray:
    """Toward ``keep`` and past each phrase of ``negs`` (its cosine to the point ends at ``-w.negation``)."""
    q = normalize(base + w.text * steer_text(keep)) if keep.strip() or not negs else base
    for phrase in negs:
        n = steer_text(phrase)
        q = normalize(q - (float(q @ n) + w.negation) * n)
    return q


def steer_parts(utterance: str, w: Weights, negative: Callable[[str], bool] | None = None) -> tuple[str, list[str]]:
    """(text to move toward, phrases ruled out): negation cues first; else, when ``negative`` says the whole
    utterance rules something out (a wording without a listed cue), the utterance itself is the ruled-out phrase."""
    if w.negation <= 0:
        return utterance, []
    keep, negs = split_negation(utterance)
    if not negs and negative is not None and utterance.strip() and negative(utterance):
        return "", [utterance]
    return keep, negs


ANCHOR_INTENT = {"older": "older", "newer": "newer", "similar": "attract", "contrast": "repel"}


def fold_conversation(turns: Sequence[tuple[str, tuple[str, ...]]], base: np.ndarray, *, raw_text: Callable[[str], np.ndarray],
                      steer_text: Callable[[str], np.ndarray], item_vec: Callable[[Sequence[str]], np.ndarray],
                      prototypes: dict[str, np.ndarray], threshold: float, w: Weights,
                      anchor: Callable[[str, Sequence[str]], tuple[str | None, str]] | None = None,
                      shift: Callable[[str, float], np.ndarray] | None = None,
                      rewrite: Callable[[], str | None] | None = None,
                      negative: Callable[[str], bool] | None = None,
                      read: Callable[[str, str | None], Any] | None = None,
                      relate: Callable[[str, str], Any] | None = None,
                      parts: Callable[[str, Any], tuple[str, list[str]]] | None = None) -> list[TurnTrace]:
    """Query point after each turn. ``base`` is the no-text query (user + context + history).

    A steering turn replaces the text signal; control turns act on the
    previous point: attract/repel use the item the utterance names (``anchor``
    finds a shown item by its title) or else the items shown in answer to the
    previous turn; older/newer glide the anchor along the ordered axis
    (``shift``); back pops to the point before the last change.

    Grounding (optional): ``read(said, named)`` returns what the card can check
    in the utterance (``grounding.Reading``): its constraints, or for a named
    item the anchored relation (older / newer / similar / contrast), which
    then decides the turn's intent; ``relate(kind, item)`` is the constraint
    an anchored relation puts on the list; ``parts(utterance, reading)`` the
    text to move toward and the phrases to move past for a grounded steer.
    Each point of the stack carries its constraints: a steer replaces them,
    an anchored or control turn adds to them, "go back" restores them.
    """
    stack: list[np.ndarray] = [base]
    negs: list[tuple[str, ...]] = [()]  # the phrases ruled out at each point of the stack
    cons: list[tuple[Any, ...]] = [()]  # the grounded constraints at each point of the stack
    out: list[TurnTrace] = []
    window = turns[-w.window:] if w.window > 0 else turns
    prev_shown: tuple[str, ...] = ()
    all_shown: list[str] = []
    for t, (utt, shown) in enumerate(window):
        named, said = anchor(utt, all_shown) if anchor is not None else (None, utt)
        reading = read(said, named) if read is not None and said.strip() else None
        if reading is not None and reading.relation:
            intent = ANCHOR_INTENT[reading.relation]
        elif reading is not None and reading.constraints:
            intent = "steer"
        else:
            intent = classify(said, raw_text(said) if said.strip() else None, prototypes, threshold)
        cur = stack[-1]
        div = False
        ref = (named,) if named else prev_shown
        neg = negs[-1]  # attract/repel keep what was ruled out
        con = cons[-1]
        if intent == "back":
            if len(stack) > 1:
                stack.pop()
                negs.pop()
                cons.pop()
            q, neg, con = stack[-1], negs[-1], cons[-1]
        elif intent == "attract" and ref:
            q = normalize(cur + w.attract * normalize(item_vec(ref).mean(0)))
            if relate is not None and named:
                con = con + (relate("similar", named),)
            stack.append(q)
        elif intent in ("repel", "diverse") and (ref or all_shown):
            r = normalize(item_vec(ref or tuple(all_shown)).mean(0))
            div = intent == "diverse"
            if div:  # exploration: step away a little, the list itself is spread by MMR
                q = normalize(cur - w.repulsion * 0.5 * r)
            else:  # push the point past the shown items: its cosine to their centre becomes -repulsion
                q = normalize(cur - (float(cur @ r) + w.repulsion) * r)
                if relate is not None and (named or ref):
                    con = con + (relate("contrast", named or ref[0]),)
            stack.append(q)
        elif intent in ("older", "newer") and ref and shift is not None:
            q = normalize(shift(ref[0], -1.0 if intent == "older" else 1.0) + w.user * cur)
            if relate is not None:
                con = con + (relate(intent, ref[0]),)
            stack.append(q)
        elif intent in ("steer", "older", "newer"):
            text = rewrite() if rewrite is not None and t == len(window) - 1 else None
            if text and read is not None:  # a rewrite is read like the utterance it replaces
                reading = read(text, None)
            if reading is not None and reading.constraints and parts is not None:
                keep, ph = parts(text or utt, reading)
                q = move(base, keep, ph, steer_text, w)
                neg, con = tuple(ph), tuple(reading.constraints)
            else:
                q = steer_point(base, text or utt, steer_text, w, negative)
                neg, con = tuple(steer_parts(text or utt, w, negative)[1]), ()
            stack.append(q)
        else:
            q = cur
        if len(negs) < len(stack):
            negs.append(neg)
            cons.append(con)
        out.append(TurnTrace(utt, intent, q, div, neg, con))
        prev_shown = tuple(shown)
        all_shown.extend(shown)
    return out


def exclusion_mask(sims: np.ndarray, *, z: float = 1.0, max_share: float = 0.5) -> np.ndarray:
    """Which items carry a ruled-out phrase: those whose cosine to it stands out from the catalog's.

    ``sims`` is every item's cosine to the negated phrase's text vector; an
    item is marked when it lies more than ``z`` robust standard deviations
    (1.4826 * MAD) above the median. At most ``max_share`` of the items are
    marked (the highest); a flat distribution marks nothing.
    """
    x = np.asarray(sims, dtype=np.float64)
    n = len(x)
    if n < 4:
        return np.zeros(n, bool)
    med = float(np.median(x))
    sd = 1.4826 * float(np.median(np.abs(x - med)))
    if sd < 1e-9:
        return np.zeros(n, bool)
    m = x > med + z * sd
    cap = int(max_share * n)
    if m.sum() > cap:
        m = np.zeros(n, bool)
        m[np.argsort(-x, kind="stable")[:cap]] = True
    return m
