"""Probability-weighted judge scores from the score token's log-probabilities.

A judge that answers ``{"score": 4}`` has also weighed 1, 2, 3 and 5; where the
endpoint returns ``logprobs``/``top_logprobs`` (OpenAI, vLLM, ``serve-llm``)
the expected score ``sum_k p(k) * k`` (probabilities renormalised over the
scale's tokens) keeps that information: it separates two lists the argmax
scores alike and breaks the ties that make an integer judge coarse.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

# the text generated so far ends just before the score's value (the opening quote of the
# key may be in a prefill the server added, so it is not required)
_BEFORE_VALUE = re.compile(r'score"\s*:\s*"?\s*$')


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def expected_score(tokens: Sequence[Any] | None, scale: tuple[int, int], prefix: str = "") -> dict[str, Any] | None:
    """``{"expected": float, "probs": {"1": p, ...}, "mass": float, "token": str}`` or None.

    ``tokens`` is OpenAI's ``choices[0].logprobs.content`` (objects or dicts with
    ``token`` and ``top_logprobs``). The score token is the first non-blank token
    after ``"score":``; its alternatives that read as a whole number in
    ``scale`` (after stripping blanks and quotes) are summed per number.
    ``mass`` is the probability those numbers held before renormalising; None
    when no score token or no alternative in the scale is found.
    """
    if not tokens:
        return None
    lo, hi = scale
    text = prefix
    found = False
    for t in tokens:
        tok = str(_field(t, "token") or "")
        if found and tok.strip(' \t\n"'):
            return _distribution(t, tok, lo, hi)
        if not found:
            before = text
            text += tok
            if _BEFORE_VALUE.search(text):
                found = True
            elif _BEFORE_VALUE.search(before + tok.rstrip("0123456789 ")) and tok.strip()[-1:].isdigit():
                # the value came in the same token as the colon (e.g. ': 4')
                return _distribution(t, tok, lo, hi)
    return None


def _distribution(t: Any, chosen: str, lo: int, hi: int) -> dict[str, Any] | None:
    probs: dict[int, float] = {}
    alts = list(_field(t, "top_logprobs") or [])
    if not alts:
        alts = [{"token": chosen, "logprob": _field(t, "logprob")}]
    for alt in alts:
        word = str(_field(alt, "token") or "").strip(' \t\n":')
        lp = _field(alt, "logprob")
        if not word.isdigit() or lp is None or not math.isfinite(float(lp)):
            continue
        k = int(word)
        if lo <= k <= hi:
            probs[k] = probs.get(k, 0.0) + math.exp(float(lp))
    mass = sum(probs.values())
    if mass <= 0:
        return None
    norm = {k: p / mass for k, p in sorted(probs.items())}
    return {"expected": sum(k * p for k, p in norm.items()), "probs": {str(k): round(p, 6) for k, p in norm.items()},
            "mass": round(mass, 6), "token": chosen.strip()}
