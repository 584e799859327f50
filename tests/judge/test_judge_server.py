"""serve-llm: an OpenAI-compatible endpoint on loopback, exercised with the real openai client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest
from judge_helpers import ScriptedEngine

from talkwalk_bench.judge.server import ChatEngine, ServerThread, make_server


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=30)


def test_models_and_chat_completion_shapes(serve):
    eng = ScriptedEngine(lambda msgs, n: f"echo: {msgs[-1]['content']}", name="tiny-judge")
    url = serve(eng)
    assert url.startswith("http://127.0.0.1:")
    c = _client(url)
    assert [m.id for m in c.models.list().data] == ["tiny-judge"]
    r = c.chat.completions.create(model="tiny-judge", messages=[{"role": "system", "content": "be brief"},
                                                                {"role": "user", "content": "hello there"}], max_tokens=8)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == "tiny-judge"
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content == "echo: hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 4 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    c.chat.completions.create(model="tiny-judge", messages=[{"role": "user", "content": "x"}], response_format={"type": "json_object"})
    assert eng.json_mode_seen == [False, True]


def test_bad_requests_get_openai_shaped_errors(serve):
    url = serve(ScriptedEngine(lambda m, n: "ok"))
    c = _client(url)
    with pytest.raises(openai.BadRequestError, match="streaming"):
        c.chat.completions.create(model="x", messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.BadRequestError, match="messages"):
        c.chat.completions.create(model="x", messages=[])
    req = urllib.request.Request(url + "/chat/completions", data=b"{not json", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 400 and "error" in json.loads(exc.value.read())
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(url + "/nowhere", timeout=10)
    assert exc.value.code == 404


def test_an_engine_error_is_a_500(serve):
    def boom(m, n):
        raise RuntimeError("model exploded")

    c = _client(serve(ScriptedEngine(boom)))
    with pytest.raises(openai.InternalServerError):
        c.chat.completions.create(model="x", messages=[{"role": "user", "content": "x"}])


def test_only_loopback_is_allowed():
    with pytest.raises(ValueError, match="127.0.0.1"):
        make_server(ScriptedEngine(lambda m, n: ""), 0, host="0.0.0.0")


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    """A randomly initialised 1-layer Llama with a 40-word tokenizer, built here (no download)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.set_num_threads(1)
    torch.manual_seed(0)
    words = ["<unk>", "<eos>", "<|user|>", "<|system|>", "<|assistant|>", "{", "}", '"', ":", "score", "reason",
             "1", "2", "3", "4", "5", "a", "comedy", "film", "list", "rate", "the", "good", "bad", "."]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")
    cfg = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      eos_token_id=1, pad_token_id=1, bos_token_id=None)
    folder = tmp_path_factory.mktemp("tiny-llm")
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return ChatEngine.load(str(folder), name="tiny-llama")


def test_a_real_transformers_model_answers_over_http(tiny_engine):
    with ServerThread(tiny_engine) as url:
        c = _client(url)
        r = c.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "rate the list"}], max_tokens=5)
        again = c.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "rate the list"}], max_tokens=5)
        js = c.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "rate the list"}],
                                       max_tokens=3, response_format={"type": "json_object"})
    assert isinstance(r.choices[0].message.content, str)
    assert 1 <= r.usage.completion_tokens <= 5 and r.usage.prompt_tokens > 3
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.choices[0].message.content == again.choices[0].message.content  # greedy: deterministic
    assert js.choices[0].message.content.startswith('{"')


def test_serve_llm_command_rejects_a_bad_port_and_an_unknown_model(capsys, monkeypatch):
    from talkwalk_bench.cli import main

    assert main(["serve-llm", "--port", "70000"]) == 2
    assert "--port 70000" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["serve-llm", "--model", "nobody/nothing", "--port", "0"]) == 2
    assert "offline" in capsys.readouterr().err


def test_logprobs_of_a_real_model_match_its_greedy_tokens(tiny_engine):
    import math

    c = tiny_engine.complete([{"role": "user", "content": "rate the list"}], max_tokens=4, logprobs=3)
    assert c.logprobs is not None and len(c.logprobs) == c.completion_tokens
    for t in c.logprobs:
        tops = t["top_logprobs"]
        assert len(tops) == 3 and [x["logprob"] for x in tops] == sorted((x["logprob"] for x in tops), reverse=True)
        assert t["token"] == tops[0]["token"] and t["logprob"] == pytest.approx(tops[0]["logprob"])  # greedy picks the top
        assert sum(math.exp(x["logprob"]) for x in tops) <= 1 + 1e-6
    with ServerThread(tiny_engine) as url:
        r = _client(url).chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "rate the list"}],
                                                 max_tokens=4, logprobs=True, top_logprobs=2)
        plain = _client(url).chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "rate"}], max_tokens=2)
        with pytest.raises(openai.BadRequestError, match="top_logprobs"):
            _client(url).chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "x"}],
                                                 logprobs=True, top_logprobs=50)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens and all(len(t.top_logprobs) == 2 for t in content)
    assert plain.choices[0].logprobs is None


def test_a_request_whose_client_hung_up_is_not_generated(tiny_engine):
    import threading
    import time

    from talkwalk_bench.judge.server import Abandoned, Completion

    with pytest.raises(Abandoned):
        tiny_engine.complete([{"role": "user", "content": "x"}], max_tokens=2, still_wanted=lambda: False)

    class QueuedEngine:
        """One generation at a time, like ChatEngine; the first one runs until the test releases it."""

        name = "queued"

        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.running, self.release = threading.Event(), threading.Event()
            self.generated = self.waiting = self.dropped = 0

        def complete(self, messages, *, still_wanted=None, **kw):
            self.waiting += 1
            with self.lock:
                self.waiting -= 1
                if still_wanted is not None and not still_wanted():
                    self.dropped += 1
                    raise Abandoned
                self.running.set()
                self.release.wait(10)
                self.generated += 1
            return Completion('{"score": 3}', 1, 1, "stop")

    def until(cond) -> None:
        end = time.monotonic() + 10
        while not cond() and time.monotonic() < end:
            time.sleep(0.02)
        assert cond()

    eng = QueuedEngine()
    with ServerThread(eng) as url:
        first = threading.Thread(target=lambda: _client(url).chat.completions.create(
            model="queued", messages=[{"role": "user", "content": "a"}]))
        first.start()
        until(eng.running.is_set)

        def impatient():
            with pytest.raises(openai.APITimeoutError):
                openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=0.3).chat.completions.create(
                    model="queued", messages=[{"role": "user", "content": "b"}])
        second = threading.Thread(target=impatient)
        second.start()
        second.join()  # its client has given up ...
        until(lambda: eng.waiting == 1)  # ... while its request waits behind the first
        eng.release.set()
        first.join()
        until(lambda: eng.dropped == 1)
        assert eng.generated == 1  # without the check the abandoned request would be generated for nobody
        ok = _client(url).chat.completions.create(model="queued", messages=[{"role": "user", "content": "c"}])
    assert ok.choices[0].message.content == '{"score": 3}' and eng.generated == 2
