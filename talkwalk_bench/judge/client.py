"""LLM-as-judge through the official ``openai`` client, against any OpenAI-compatible endpoint.

Transport faults (timeouts, connection errors, 429, 5xx) are retried with
exponential backoff; answers that do not parse are asked again; whatever
still fails becomes a failed ``Judgment`` with its reason, never a score.
Only an endpoint that cannot be reached (or refuses) counts towards the
breaker that stops calling it: a timeout means slow, not down (the run's
deadline bounds the wait). Score rubrics ask for ``logprobs`` and record the
expected score (``talkwalk_bench.judge.logprobs``) where the endpoint returns
them. With a base URL and no model, the endpoint's one model (``/v1/models``)
is used. Calls, tokens, cache hits and failures are counted for the result.
The API key is read from the environment and never stored or reported.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from talkwalk_bench.errors import BenchError
from talkwalk_bench.judge.cache import JudgeCache, cache_key
from talkwalk_bench.judge.logprobs import expected_score
from talkwalk_bench.judge.rubrics import ParseError, Rubric

KEY_ENV = ("TALKWALK_JUDGE_API_KEY", "OPENAI_API_KEY")
NO_KEY = "no-key"  # local endpoints ignore the key, but the client wants one


def api_key() -> str | None:
    for name in KEY_ENV:
        v = os.environ.get(name)
        if v:
            return v
    return None


def _redact(text: str) -> str:
    key = api_key()
    if key and len(key) >= 4:
        text = text.replace(key, "***")
    return text


@dataclass(frozen=True)
class JudgeConfig:
    """How to reach the judge. Built from task options (``-O judge_model=...``) or the environment."""

    model: str | None = None
    base_url: str | None = None
    temperature: float = 0.0
    max_tokens: int = 96
    # a queued local server answers a concurrency-4 run's last call after 4 generations;
    # under CPU load one generation took up to 40 s here
    timeout_s: float = 300.0
    max_retries: int = 3  # transport retries per call
    parse_retries: int = 1  # extra asks when the answer does not parse
    backoff_s: float = 0.5
    concurrency: int = 4
    cache: bool = True
    cache_path: str | None = None
    breaker: int = 6  # after this many calls in a row fail on transport, stop calling
    json_mode: bool = True  # send response_format={"type": "json_object"}
    # all judging in one run stops asking after this many seconds (0: no limit), so an
    # endpoint that hangs cannot hold a run for retries x timeout x calls
    deadline_s: float = 600.0
    logprobs: bool = True  # ask score rubrics for logprobs; the expected score is recorded where they come back
    top_logprobs: int = 10
    calibration: str | None = None  # a judge_calibration result backing this judge; default: looked up in runs/

    OPTION_KEYS = {
        "judge_model": ("model", str), "judge_base_url": ("base_url", str), "judge_temperature": ("temperature", float),
        "judge_max_tokens": ("max_tokens", int), "judge_timeout": ("timeout_s", float), "judge_retries": ("max_retries", int),
        "judge_parse_retries": ("parse_retries", int), "judge_backoff": ("backoff_s", float),
        "judge_concurrency": ("concurrency", int), "judge_cache": ("cache", bool), "judge_cache_path": ("cache_path", str),
        "judge_breaker": ("breaker", int), "judge_json_mode": ("json_mode", bool),
        "judge_deadline": ("deadline_s", float), "judge_logprobs": ("logprobs", bool),
        "judge_top_logprobs": ("top_logprobs", int), "judge_calibration": ("calibration", str),
    }
    ENV = {"judge_model": "TALKWALK_JUDGE_MODEL", "judge_base_url": "TALKWALK_JUDGE_BASE_URL"}

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> JudgeConfig:
        options = dict(options or {})
        kw: dict[str, Any] = {}
        for opt, env in cls.ENV.items():
            if options.get(opt) in (None, "") and os.environ.get(env):
                options[opt] = os.environ[env]
        for opt, (attr, typ) in cls.OPTION_KEYS.items():
            if opt in options and options[opt] is not None:
                raw = options[opt]
                try:
                    if typ is bool and isinstance(raw, str):
                        kw[attr] = raw.lower() in ("1", "true", "yes", "on")
                    else:
                        kw[attr] = typ(raw)
                except (TypeError, ValueError):
                    raise BenchError(f"-O {opt}={raw!r}: expected a {typ.__name__}") from None
        cfg = cls(**kw)
        if cfg.concurrency < 1 or cfg.max_retries < 0 or cfg.parse_retries < 0:
            raise BenchError("-O judge_concurrency must be >= 1 and judge_retries, judge_parse_retries >= 0")
        if not (cfg.deadline_s >= 0 and cfg.timeout_s > 0) or cfg.deadline_s == float("inf"):
            raise BenchError("-O judge_deadline must be a number of seconds >= 0 (0: no limit) and judge_timeout > 0")
        if not 0 <= cfg.top_logprobs <= 20:
            raise BenchError("-O judge_top_logprobs must be from 0 to 20")
        return cfg

    def with_served_model(self) -> JudgeConfig:
        """With a base URL and no model: the endpoint's one model from ``/v1/models`` (unchanged otherwise)."""
        if self.model or not self.base_url:
            return self
        names, _ = served_models(self.endpoint)
        if len(names) == 1:
            from dataclasses import replace

            return replace(self, model=names[0])
        return self

    def missing(self) -> str | None:
        """Why no judge can run, or None when it is configured."""
        if not self.base_url and not self.model:
            return "no judge endpoint configured; pass -O judge_base_url=URL -O judge_model=NAME (or --judge-base-url/--judge-model)"
        if not self.model:
            names, why = served_models(self.endpoint) if self.base_url else ([], "")
            found = (f"{self.endpoint}/models lists {len(names)}: {', '.join(names[:5])}" if names
                     else f"{self.endpoint}/models: {why}")
            return f"no judge model configured and none to default to ({found}); pass -O judge_model=NAME (or --judge-model)"
        if not self.base_url and not api_key():
            return "no judge endpoint: pass -O judge_base_url=URL, or set OPENAI_API_KEY to use api.openai.com"
        return None

    @property
    def endpoint(self) -> str:
        return (self.base_url or "https://api.openai.com/v1").rstrip("/")

    def describe(self) -> dict[str, Any]:
        """What goes into the result (never the key)."""
        return {"model": self.model, "base_url": self.endpoint, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "max_retries": self.max_retries, "parse_retries": self.parse_retries,
                "concurrency": self.concurrency, "json_mode": self.json_mode, "deadline_s": self.deadline_s,
                "timeout_s": self.timeout_s, "logprobs": self.logprobs, "api_key_set": api_key() is not None}


def served_models(endpoint: str, timeout_s: float = 10.0) -> tuple[list[str], str]:
    """The model ids an OpenAI-compatible endpoint lists at ``/models``, or ([], why not)."""
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(endpoint.rstrip("/") + "/models")
    key = api_key()
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 (the user's own endpoint)
            data = json.loads(resp.read())
        names = [str(m["id"]) for m in data.get("data", []) if isinstance(m, dict) and m.get("id")]
        return names, "" if names else "no models listed"
    except (OSError, ValueError, urllib.error.URLError) as exc:
        return [], _redact(f"{type(exc).__name__}: {exc}")[:200]


@dataclass
class Judgment:
    ok: bool
    value: dict[str, Any] | None = None  # {"score": int} or {"choice": str}, plus "reason"
    error: str | None = None
    cached: bool = False
    attempts: int = 0
    raw: str | None = None  # the last answer text, when one arrived

    def as_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "cached": self.cached}
        if self.ok:
            out.update(self.value or {})
        else:
            out["error"] = self.error
            if self.raw is not None:
                out["raw"] = self.raw[:200]
        return out


@dataclass
class JudgeStats:
    calls: int = 0  # HTTP requests sent
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    judgments: int = 0
    failures: int = 0
    retries: int = 0
    timeouts: int = 0
    expected_scores: int = 0  # score judgments with a probability-weighted score
    failure_reasons: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens, "cache_hits": self.cache_hits,
                "judgments": self.judgments, "failures": self.failures, "retries": self.retries,
                "timeouts": self.timeouts, "expected_scores": self.expected_scores,
                "failure_reasons": dict(self.failure_reasons.most_common(10))}


class _Transport(Exception):
    """A retryable transport fault, already described in one line."""


class Judge:
    """Judges prompts built from rubrics; thread-safe, bounded concurrency."""

    def __init__(self, config: JudgeConfig, *, cache: JudgeCache | None = None, client: Any = None) -> None:
        why = config.missing()
        if why:
            raise BenchError(why)
        self.config = config
        self.stats = JudgeStats()
        self._lock = threading.Lock()
        self._consecutive_transport = 0
        self._logprobs_refused = False  # the endpoint answered a logprobs request with a 4xx: stop asking
        # time spent judging (not the system's time between batches) counts against the deadline
        self._spent = 0.0
        self._batch_started: float | None = None
        if cache is None and config.cache:
            cache = JudgeCache(config.cache_path)
        self.cache = cache
        if client is None:
            import openai

            # retries are ours (so they are counted and backed off the same way for every fault)
            client = openai.OpenAI(base_url=config.endpoint, api_key=api_key() or NO_KEY,
                                   timeout=config.timeout_s, max_retries=0)
        self.client = client

    # ---------------------------------------------------------------- public

    def judge(self, rubric: Rubric, variables: dict[str, Any]) -> Judgment:
        messages = rubric.messages(**variables)
        # judgments asked with logprobs carry the expected score: cached apart from those without
        rid = rubric.id + ("+logprobs" if self._wants_logprobs(rubric) else "")
        key = cache_key(self.config.endpoint, str(self.config.model), rid, self.config.temperature, messages)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                with self._lock:
                    self.stats.cache_hits += 1
                    self.stats.judgments += 1
                return Judgment(True, hit, cached=True)
        j = self._ask(rubric, messages)
        with self._lock:
            self.stats.judgments += 1
            if not j.ok:
                self.stats.failures += 1
                self.stats.failure_reasons[(j.error or "?").split(":")[0]] += 1
        if j.ok and self.cache is not None:
            self.cache.put(key, j.value or {}, endpoint=self.config.endpoint, model=str(self.config.model), rubric=rubric.id)
        return j

    def judge_many(self, jobs: list[tuple[Rubric, dict[str, Any]]]) -> list[Judgment]:
        if not jobs:
            return []
        outer = self._batch_started is None
        if outer:
            self._batch_started = time.monotonic()
        try:
            if self.config.concurrency == 1 or len(jobs) == 1:
                return [self.judge(r, v) for r, v in jobs]
            with ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="judge") as pool:
                return list(pool.map(lambda job: self.judge(*job), jobs))
        finally:
            if outer:
                self._spent += time.monotonic() - self._batch_started
                self._batch_started = None

    def describe(self) -> dict[str, Any]:
        return {**self.config.describe(), **self.stats.as_dict(),
                "cache": str(self.cache.path) if self.cache is not None else None,
                "cache_set_aside": str(self.cache.set_aside) if self.cache is not None and self.cache.set_aside else None}

    # --------------------------------------------------------------- private

    def _wants_logprobs(self, rubric: Rubric) -> bool:
        return self.config.logprobs and rubric.kind == "score" and not self._logprobs_refused

    def _ask(self, rubric: Rubric, messages: list[dict[str, str]]) -> Judgment:
        attempts = 0
        last_text: str | None = None
        last_parse = ""
        for _ in range(1 + self.config.parse_retries):
            attempts += 1
            try:
                text, tokens = self._complete(messages, logprobs=self._wants_logprobs(rubric))
            except _Transport as exc:
                return Judgment(False, error=str(exc), attempts=attempts, raw=last_text)
            last_text = text
            try:
                value = rubric.parse(text)
            except ParseError as exc:
                last_parse = str(exc)
                continue
            if rubric.kind == "score" and tokens:
                dist = expected_score(tokens, rubric.scale)  # type: ignore[arg-type]
                # only when the token read is the score the text says (not a digit elsewhere)
                if dist is not None and dist["token"].strip('"') == str(value["score"]):
                    value.update(expected_score=round(dist["expected"], 6), score_probs=dist["probs"], score_mass=dist["mass"])
                    with self._lock:
                        self.stats.expected_scores += 1
            return Judgment(True, value, attempts=attempts)
        return Judgment(False, error=f"unparseable: {last_parse}", attempts=attempts, raw=last_text)

    def _complete(self, messages: list[dict[str, str]], *, logprobs: bool = False) -> tuple[str, list[Any] | None]:
        import openai

        with self._lock:
            open_breaker = self._consecutive_transport >= self.config.breaker > 0
        if open_breaker:
            raise _Transport(f"endpoint down: skipped after {self.config.breaker} failed calls in a row")
        delay = self.config.backoff_s
        last, slow = "", False
        for attempt in range(self.config.max_retries + 1):
            self._check_deadline()
            if attempt:
                with self._lock:
                    self.stats.retries += 1
                time.sleep(delay * (0.75 + 0.5 * random.random()))
                delay *= 2
            with self._lock:
                self.stats.calls += 1
            extra: dict[str, Any] = {"response_format": {"type": "json_object"}} if self.config.json_mode else {}
            if logprobs and not self._logprobs_refused:
                extra.update(logprobs=True, top_logprobs=self.config.top_logprobs)
            try:
                resp = self.client.chat.completions.create(
                    model=self.config.model, messages=messages, temperature=self.config.temperature,
                    max_tokens=self.config.max_tokens, **extra,
                )
            except openai.APITimeoutError:
                # slow is not down: a timeout does not count towards the breaker
                last, slow = f"timeout: no answer within {self.config.timeout_s:g}s", True
                with self._lock:
                    self.stats.timeouts += 1
                continue
            except openai.BadRequestError as exc:
                if "logprobs" in extra:  # an endpoint without logprobs: ask again without, from now on
                    self._logprobs_refused = True
                    return self._complete(messages, logprobs=False)
                self._transport_failed()
                raise _Transport(f"http error: HTTP {exc.status_code}: {_redact(str(exc))[:200]}") from None
            except openai.APIConnectionError as exc:
                last, slow = f"connection error: {_redact(str(exc))[:200]}", False
                continue
            except openai.RateLimitError:
                last, slow = "rate limited: HTTP 429", True  # busy, not down
                continue
            except openai.InternalServerError as exc:
                last, slow = f"server error: HTTP {exc.status_code}", False
                continue
            except openai.APIStatusError as exc:  # 4xx other than 429: asking again will not help
                self._transport_failed()
                raise _Transport(f"http error: HTTP {exc.status_code}: {_redact(str(exc))[:200]}") from None
            except Exception as exc:  # a body that is not an OpenAI response, among others
                slow = False
                last = f"bad response: {type(exc).__name__}: {_redact(str(exc))[:200]}"
                continue
            text = self._content(resp)
            if text is None:
                last, slow = "bad response: no choices[0].message.content", False
                continue
            with self._lock:
                self._consecutive_transport = 0
            return text, self._logprob_tokens(resp)
        if not slow:
            self._transport_failed()
        raise _Transport(last)

    def _check_deadline(self) -> None:
        batch = self._batch_started
        spent = self._spent + (time.monotonic() - batch if batch is not None else 0.0)
        if self.config.deadline_s and spent > self.config.deadline_s:
            raise _Transport(f"deadline: judging passed -O judge_deadline={self.config.deadline_s:g}s; "
                             "raise it or fix the endpoint")

    def _transport_failed(self) -> None:
        with self._lock:
            self._consecutive_transport += 1

    @staticmethod
    def _logprob_tokens(resp: Any) -> list[Any] | None:
        try:
            lp = resp.choices[0].logprobs
        except (AttributeError, IndexError, TypeError):
            return None
        content = getattr(lp, "content", None) if lp is not None else None
        return list(content) if content else None

    def _content(self, resp: Any) -> str | None:
        usage = getattr(resp, "usage", None)
        if usage is not None:
            with self._lock:
                self.stats.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
                self.stats.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
        try:
            content = resp.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            return None
        return content if isinstance(content, str) else None
