"""Optional LLM reasoning layer (seed 001): rewrite the current steering turn, in context, into one description.

Reached through the ``openai`` client against any OpenAI-compatible endpoint
(``llm_base_url`` or $TALKWALK_LLM_BASE_URL). The rewrite only replaces the
text embedded for the current turn; the conversation (shown items, earlier
turns, "go back") is still folded by the query builder as without the layer.
Shown items are named by their titles. When the endpoint fails the turn
falls back to the raw utterance and the fallback is counted; a run never
stops because of the endpoint.

API key: $TALKWALK_LLM_API_KEY, else $TALKWALK_JUDGE_API_KEY; $OPENAI_API_KEY
only when the endpoint is api.openai.com (never sent to another host). The
key is never logged: error texts are redacted before they are kept.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from urllib.parse import urlparse

from talkwalk_bench.errors import BenchError
from talkwalk_bench.types import Turn

log = logging.getLogger(__name__)

PROMPT = ("You help a film recommender. Read the conversation and write ONE short description of the films the "
          "user wants now (genres, era, what to leave out). Answer with the description only.")
KEY_ENV = ("TALKWALK_LLM_API_KEY", "TALKWALK_JUDGE_API_KEY")
NO_KEY = "no-key"  # local endpoints ignore the key, but the client wants one


def api_key(base_url: str) -> str:
    """The key to send to ``base_url``: project keys first; the OpenAI key only to OpenAI itself."""
    for name in KEY_ENV:
        if os.environ.get(name):
            return os.environ[name]
    host = (urlparse(base_url).hostname or "").lower()
    if host == "api.openai.com" and os.environ.get("OPENAI_API_KEY"):
        return os.environ["OPENAI_API_KEY"]
    return NO_KEY


def redact(text: str, key: str) -> str:
    return text.replace(key, "***") if key and key != NO_KEY and len(key) >= 4 else text


class Reasoner:
    def __init__(self, base_url: str, model: str, api_key_: str = "", timeout: float = 30.0, retries: int = 0) -> None:
        base_url = base_url or os.environ.get("TALKWALK_LLM_BASE_URL", "")
        if not base_url:
            raise BenchError("contrastive-llm: no LLM endpoint; pass -S llm_base_url=http://HOST:PORT/v1 "
                             "or set TALKWALK_LLM_BASE_URL (any OpenAI-compatible server)")
        from openai import OpenAI

        self.base_url = base_url
        self._key = api_key_ or api_key(base_url)
        self.client = OpenAI(base_url=base_url, api_key=self._key, timeout=timeout, max_retries=retries)
        self.model = model or os.environ.get("TALKWALK_LLM_MODEL", "default")
        self._memo: dict[tuple, str] = {}
        self.calls = 0
        self.fallbacks = 0
        self.last_error = ""

    def prompt(self, conversation: Sequence[Turn], title: Callable[[str], str]) -> str:
        lines = []
        for t in conversation:
            lines.append(f"user: {t.utterance}")
            if t.shown:
                names = [title(i) or f"item {i}" for i in t.shown[:5]]
                lines.append(f"recommender showed: {'; '.join(names)}")
        return "\n".join(lines)

    def rewrite(self, conversation: Sequence[Turn], title: Callable[[str], str] = lambda i: "") -> str | None:
        """One description of what the user wants now, or None when the endpoint failed (counted in ``fallbacks``)."""
        key = tuple((t.utterance, tuple(t.shown)) for t in conversation)
        if key in self._memo:
            return self._memo[key]
        self.calls += 1
        try:
            resp = self.client.chat.completions.create(
                model=self.model, temperature=0.0, max_tokens=60,
                messages=[{"role": "system", "content": PROMPT},
                          {"role": "user", "content": self.prompt(conversation, title)}])
            text = (resp.choices[0].message.content or "").strip()
        except Exception as exc:  # any endpoint failure: the caller falls back to the raw utterance
            self.fallbacks += 1
            self.last_error = redact(f"{type(exc).__name__}: {exc}", self._key)[:300]
            if self.fallbacks == 1:
                log.warning("contrastive-llm: the LLM endpoint failed (%s); using the raw utterance", self.last_error)
            return None  # failures are not memoised: a later request may reach the endpoint again
        if not text:
            self.fallbacks += 1
            self.last_error = "empty answer"
            return None
        self._memo[key] = text
        return text
