"""A small OpenAI-compatible endpoint for a local transformers model, on loopback only.

``/v1/chat/completions`` (non-streaming, with ``logprobs``/``top_logprobs``)
and ``/v1/models``, answers shaped like OpenAI's, so the judge, the LLM-driven
simulated user and any other ``openai`` client work offline. Requests are
queued and served one generation at a time (a CPU model gains nothing from
running two at once); a request whose client has hung up while it waited is
dropped before it is generated, so a client's timeout and retry does not
double the queue. For GPUs and real throughput use ``vllm serve``; this is a
convenience for small models.
"""

from __future__ import annotations

import json
import logging
import math
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
MAX_BODY = 4 * 1024 * 1024
JSON_PREFIX = '{"'
MAX_TOP_LOGPROBS = 20  # OpenAI's limit
# one torch thread: on shared cores (another run busy) two threads spin-wait on each other
# and ran 5-20x slower than one here; on an idle machine the gain of more is small for a 135M model
DEFAULT_THREADS = 1


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length"
    # OpenAI's choices[0].logprobs.content: per generated token {"token", "logprob", "bytes", "top_logprobs"}
    logprobs: list[dict[str, Any]] | None = None


class Abandoned(Exception):
    """The client hung up while its request waited in the queue; nothing was generated."""


class ChatEngine:
    """Chat completion with a transformers causal LM (CPU, greedy unless temperature > 0)."""

    def __init__(self, model: Any, tokenizer: Any, name: str, *, max_new_tokens: int = 512) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.max_new_tokens = max_new_tokens
        self._lock = threading.Lock()

    @classmethod
    def load(cls, ref: str, *, name: str | None = None, threads: int | None = DEFAULT_THREADS) -> ChatEngine:
        import torch

        from talkwalk_bench.models import load_causal_lm

        if threads:
            torch.set_num_threads(threads)
        model, tok, resolved = load_causal_lm(ref)
        return cls(model, tok, name or resolved.name)

    def _prompt_ids(self, messages: list[dict[str, str]], prefix: str = "") -> list[int]:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return list(tok(text + prefix, add_special_tokens=False)["input_ids"])
        # a tokenizer without a chat template: a plain role-tagged transcript
        text = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages) + "<|assistant|>\n"
        return list(tok(text + prefix, add_special_tokens=True)["input_ids"])

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int | None = None, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None, stop: list[str] | None = None,
                 json_mode: bool = False, logprobs: int | None = None,
                 still_wanted: Callable[[], bool] | None = None) -> Completion:
        """json_mode starts the answer with '{"' (a prefill), which steers small models into JSON.

        ``logprobs`` (0-20) returns each generated token's log-probability and that many
        alternatives (from the raw logits, before any sampling warpers). ``still_wanted`` is
        asked once the model is free; False drops the request (``Abandoned``).
        """
        import torch

        prefix = JSON_PREFIX if json_mode else ""
        ids = self._prompt_ids(messages, prefix)
        n_new = max(1, min(int(max_tokens or self.max_new_tokens), self.max_new_tokens))
        input_ids = torch.tensor([ids], dtype=torch.long)
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        kwargs: dict[str, Any] = {"max_new_tokens": n_new, "pad_token_id": pad if pad is not None else 0}
        if temperature and temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature), top_p=float(top_p))
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if logprobs is not None:
            kwargs.update(return_dict_in_generate=True, output_logits=True)
        with self._lock, torch.inference_mode():
            if still_wanted is not None and not still_wanted():
                raise Abandoned
            if seed is not None:
                torch.manual_seed(int(seed))
            out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
        seq = out.sequences if logprobs is not None else out
        new = seq[0, len(ids):].tolist()
        eos = tok.eos_token_id
        finish = "length"
        if eos is not None and eos in new:
            new = new[: new.index(eos)]
            finish = "stop"
        text = prefix + tok.decode(new, skip_special_tokens=True)
        for s in stop or []:
            if s and s in text:
                text = text[: text.index(s)]
                finish = "stop"
        lp = self._token_logprobs(new, out.logits, int(logprobs)) if logprobs is not None else None
        return Completion(text, len(ids), len(new), finish, lp)

    def _token_logprobs(self, new: list[int], logits: Any, top: int) -> list[dict[str, Any]]:
        import torch

        tok = self.tokenizer
        out = []
        for step, token_id in enumerate(new):
            row = torch.log_softmax(logits[step][0].float(), dim=-1)
            entry = {"token": tok.decode([token_id]), "logprob": float(row[token_id]), "bytes": None, "top_logprobs": []}
            if top > 0:
                values, idx = torch.topk(row, min(top, row.shape[-1]))
                entry["top_logprobs"] = [{"token": tok.decode([int(i)]), "logprob": float(v), "bytes": None}
                                         for v, i in zip(values.tolist(), idx.tolist(), strict=True) if math.isfinite(v)]
            out.append(entry)
        return out


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # requests go to the logger, not stderr
        log.info("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up while this was generated
            log.info("client hung up before its answer was sent")
            self.close_connection = True

    def _error(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None) -> None:
        self._send(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0].rstrip("/")
        if path in ("/v1/models", "/models"):
            self._send(200, {"object": "list", "data": [
                {"id": self.server.engine.name, "object": "model", "created": self.server.started, "owned_by": "talkwalk-bench"}]})
        elif path in ("/health", ""):
            self._send(200, {"status": "ok", "model": self.server.engine.name})
        else:
            self._error(404, f"no route {self.path}; try /v1/models or /v1/chat/completions", code="not_found")

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?")[0].rstrip("/")
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no route {self.path}; POST /v1/chat/completions", code="not_found")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length <= 0 or length > MAX_BODY:
            self._error(400, "a JSON body is required (Content-Length 1 to 4 MiB)")
            return
        try:
            body = json.loads(self.rfile.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._error(400, "the body is not valid JSON")
            return
        problem = _check_body(body)
        if problem:
            self._error(400, problem)
            return
        messages = [{"role": m["role"], "content": _text(m.get("content"))} for m in body["messages"]]
        stop = body.get("stop")
        stop = [stop] if isinstance(stop, str) else list(stop or [])
        want_lp = bool(body.get("logprobs"))
        try:
            c = self.server.engine.complete(
                messages, max_tokens=body.get("max_tokens") or body.get("max_completion_tokens"),
                temperature=float(body.get("temperature") or 0.0), top_p=float(body.get("top_p") or 1.0),
                seed=body.get("seed"), stop=stop, json_mode=_json_mode(body),
                logprobs=int(body.get("top_logprobs") or 0) if want_lp else None, still_wanted=self._client_here)
        except Abandoned:
            log.info("dropped a queued request: its client hung up before generation")
            self.close_connection = True
            return
        except Exception as exc:  # a model error is the server's fault, not the client's
            log.exception("generation failed")
            self._error(500, f"generation failed: {type(exc).__name__}: {exc}", kind="server_error")
            return
        self._send(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.server.engine.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": c.text},
                         "logprobs": {"content": c.logprobs} if want_lp and c.logprobs is not None else None,
                         "finish_reason": c.finish_reason}],
            "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                      "total_tokens": c.prompt_tokens + c.completion_tokens},
        })


    def _client_here(self) -> bool:
        """False when the client has closed the connection (a readable socket with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return True
            return bool(self.connection.recv(1, socket.MSG_PEEK))
        except (OSError, ValueError):
            return False


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _json_mode(body: dict[str, Any]) -> bool:
    rf = body.get("response_format")
    return isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema")


def _check_body(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "'messages' must be a non-empty list"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer", "tool"):
            return f"messages[{i}] needs a role of system, user or assistant"
    if body.get("stream"):
        return "streaming is not supported by this server; send stream=false"
    if int(body.get("n") or 1) != 1:
        return "only n=1 is supported"
    mt = body.get("max_tokens", body.get("max_completion_tokens"))
    if mt is not None and (not isinstance(mt, int) or mt < 1):
        return "'max_tokens' must be a positive integer"
    top = body.get("top_logprobs")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS):
        return f"'top_logprobs' must be an integer from 0 to {MAX_TOP_LOGPROBS}"
    if top is not None and not body.get("logprobs"):
        return "'top_logprobs' needs 'logprobs': true"
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a full judge run's concurrent requests wait in the queue, not in refused connects
    engine: Any
    started: int


def make_server(engine: Any, port: int = 0, host: str = LOOPBACK) -> _Server:
    """Bind (port 0 = a free one) without serving yet. Only loopback is allowed."""
    if host != LOOPBACK:
        raise ValueError(f"this server binds {LOOPBACK} only (asked for {host!r}); for a shared endpoint use vllm serve")
    srv = _Server((host, port), _Handler)
    srv.engine = engine
    srv.started = int(time.time())
    return srv


class ServerThread:
    """Run a server in a background thread (tests, in-process use): ``with ServerThread(engine) as url:``."""

    def __init__(self, engine: Any, port: int = 0) -> None:
        self.server = make_server(engine, port)
        self._thread = threading.Thread(target=self.server.serve_forever, name="serve-llm", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> str:
        self.start()
        return self.base_url

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_forever(engine: Any, port: int, *, on_ready: Callable[[str], None] | None = None) -> None:
    srv = make_server(engine, port)
    host, bound = srv.server_address[:2]
    if on_ready:
        on_ready(f"http://{host}:{bound}/v1")
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
