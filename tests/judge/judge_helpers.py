"""Scripted chat engines for the judge tests: a stand-in for a model behind the real HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from talkwalk_bench.judge.server import Completion


class ScriptedEngine:
    """Answers with ``reply(messages, call_no)``; a stand-in for a model behind the real HTTP server."""

    def __init__(self, reply: Callable[[list[dict], int], str], name: str = "scripted", delay: float = 0.0,
                 logprobs: Callable[[list[dict], str], list[dict]] | None = None) -> None:
        """``logprobs(messages, text)``: the token log-probabilities to return when a request asks for them."""
        self.reply = reply
        self.logprobs_fn = logprobs
        self.logprobs_asked: list[int | None] = []
        self.name = name
        self.delay = delay
        self.calls = 0
        self.json_mode_seen: list[bool] = []
        self.inflight = 0
        self.max_inflight = 0
        self._lock = threading.Lock()

    def complete(self, messages, *, max_tokens=None, temperature=0.0, top_p=1.0, seed=None, stop=None, json_mode=False,
                 logprobs=None, still_wanted=None):
        with self._lock:
            self.logprobs_asked.append(logprobs)
            self.calls += 1
            n = self.calls
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            self.json_mode_seen.append(json_mode)
        try:
            if self.delay:
                time.sleep(self.delay)
            text = self.reply(messages, n)
        finally:
            with self._lock:
                self.inflight -= 1
        prompt = sum(len(m["content"].split()) for m in messages)
        lp = self.logprobs_fn(messages, text) if logprobs is not None and self.logprobs_fn is not None else None
        return Completion(text, prompt, len(text.split()), "stop", lp)
