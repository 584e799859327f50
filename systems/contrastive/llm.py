"""Optional LLM reasoning layer: rewrite a multi-turn conversation into one description (seed 001).

Reached through the ``openai`` client against any OpenAI-compatible endpoint
(``llm_base_url`` or $TALKWALK_LLM_BASE_URL). The output is plain text and goes
through the same text encoder as everything else.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from talkwalk_bench.errors import BenchError
from talkwalk_bench.types import Turn

PROMPT = ("You help a film recommender. Read the conversation and write ONE short description of the films the "
          "user wants now (genres, era, what to avoid). Answer with the description only.")


class Reasoner:
    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 30.0) -> None:
        base_url = base_url or os.environ.get("TALKWALK_LLM_BASE_URL", "")
        if not base_url:
            raise BenchError("contrastive-llm: no LLM endpoint; pass -S llm_base_url=http://HOST:PORT/v1 "
                             "or set TALKWALK_LLM_BASE_URL (any OpenAI-compatible server)")
        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY", "none"), timeout=timeout)
        self.model = model or os.environ.get("TALKWALK_LLM_MODEL", "default")
        self._memo: dict[tuple, str] = {}

    def rewrite(self, conversation: Sequence[Turn]) -> str:
        key = tuple((t.utterance, t.shown) for t in conversation)
        if key in self._memo:
            return self._memo[key]
        lines = []
        for t in conversation:
            lines.append(f"user: {t.utterance}")
            if t.shown:
                lines.append(f"recommender showed items: {', '.join(t.shown[:5])}")
        try:
            resp = self.client.chat.completions.create(
                model=self.model, temperature=0.0, max_tokens=60,
                messages=[{"role": "system", "content": PROMPT}, {"role": "user", "content": "\n".join(lines)}])
            text = (resp.choices[0].message.content or "").strip()
        except Exception as exc:  # the endpoint is the user's to fix
            raise BenchError(f"contrastive-llm: the LLM endpoint failed ({type(exc).__name__}: {exc}); "
                             "check -S llm_base_url / llm_model") from None
        self._memo[key] = text or conversation[-1].utterance
        return self._memo[key]
