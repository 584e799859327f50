"""The judge client end to end over HTTP on loopback: parsing retries, transport retries, cache, faults, the key."""

from __future__ import annotations

import socket

import httpx2 as httpx  # the http library the openai client is built on
import openai
import pytest
from judge_helpers import ScriptedEngine

from talkwalk_bench.errors import BenchError
from talkwalk_bench.judge.cache import JudgeCache
from talkwalk_bench.judge.client import Judge, JudgeConfig
from talkwalk_bench.judge.rubrics import load_rubric

VARS = {"request": "a comedy please", "items": "1. \"Toy Story (1995)\": a comedy"}


@pytest.fixture(scope="module")
def rubric():
    return load_rubric("instruction_following")


def _judge(url, tmp_path, **kw):
    cfg = JudgeConfig(model="scripted", base_url=url, backoff_s=0.01, cache_path=str(tmp_path / "cache.sqlite"), **kw)
    return Judge(cfg)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_score_then_cache_hit_costs_no_call(serve, tmp_path, rubric):
    eng = ScriptedEngine(lambda m, n: '{"score": 4, "reason": "fits"}')
    j = _judge(serve(eng), tmp_path)
    first = j.judge(rubric, VARS)
    assert first.ok and first.value["score"] == 4 and not first.cached
    again = _judge(j.config.base_url, tmp_path).judge(rubric, VARS)  # a new process would see the same file
    assert again.ok and again.cached and again.value["score"] == 4
    assert eng.calls == 1
    assert j.stats.prompt_tokens > 0 and j.stats.completion_tokens > 0 and j.stats.calls == 1
    assert eng.json_mode_seen == [True]


def test_unparseable_answers_are_retried_then_failed_and_not_cached(serve, tmp_path, rubric):
    eng = ScriptedEngine(lambda m, n: "I would say it is pretty good")
    j = _judge(serve(eng), tmp_path, parse_retries=2)
    out = j.judge(rubric, VARS)
    assert not out.ok and out.value is None and out.error.startswith("unparseable")
    assert out.attempts == 3 and eng.calls == 3
    assert j.stats.failures == 1 and len(j.cache) == 0


def test_a_parse_failure_then_a_good_answer_succeeds(serve, tmp_path, rubric):
    eng = ScriptedEngine(lambda m, n: "garbage" if n == 1 else '{"score": 2}')
    out = _judge(serve(eng), tmp_path).judge(rubric, VARS)
    assert out.ok and out.value["score"] == 2 and out.attempts == 2


def test_server_errors_are_retried_with_backoff(serve, tmp_path, rubric):
    def flaky(m, n):
        if n <= 2:
            raise RuntimeError("temporary")
        return '{"score": 5}'

    eng = ScriptedEngine(flaky)
    j = _judge(serve(eng), tmp_path, max_retries=3)
    out = j.judge(rubric, VARS)
    assert out.ok and out.value["score"] == 5
    assert j.stats.retries == 2 and j.stats.calls == 3


def test_slow_endpoint_times_out_into_a_failure(serve, tmp_path, rubric):
    eng = ScriptedEngine(lambda m, n: '{"score": 3}', delay=1.5)
    out = _judge(serve(eng), tmp_path, timeout_s=0.3, max_retries=0).judge(rubric, VARS)
    assert not out.ok and out.error.startswith("timeout")


def test_endpoint_down_fails_every_judgment_and_opens_the_breaker(tmp_path, rubric):
    url = f"http://127.0.0.1:{_free_port()}/v1"
    j = _judge(url, tmp_path, max_retries=1, breaker=2, concurrency=1)
    outs = j.judge_many([(rubric, {**VARS, "request": f"r{i}"}) for i in range(5)])
    assert all(not o.ok for o in outs)
    assert outs[0].error.startswith("connection error")
    assert outs[-1].error.startswith("endpoint down")
    assert j.stats.calls == 4  # two judgments x (1 + 1 retry); the rest skipped
    assert j.stats.failures == 5


def test_429_is_retried_and_other_4xx_is_not(tmp_path, rubric):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if len(seen) == 1:
            return httpx.Response(429, json={"error": {"message": "slow down"}})
        return httpx.Response(200, json={"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                         "choices": [{"index": 0, "message": {"role": "assistant", "content": '{"score": 1}'},
                                                      "finish_reason": "stop"}],
                                         "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})

    client = openai.OpenAI(base_url="http://judge.test/v1", api_key="k", max_retries=0,
                           http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    cfg = JudgeConfig(model="m", base_url="http://judge.test/v1", backoff_s=0.01, cache=False)
    j = Judge(cfg, client=client)
    out = j.judge(rubric, VARS)
    assert out.ok and out.value["score"] == 1 and j.stats.retries == 1 and len(seen) == 2

    def forbidden(request):
        seen.append("403")
        return httpx.Response(403, json={"error": {"message": "no"}})

    client = openai.OpenAI(base_url="http://judge.test/v1", api_key="k", max_retries=0,
                           http_client=httpx.Client(transport=httpx.MockTransport(forbidden)))
    j = Judge(cfg, client=client)
    out = j.judge(rubric, VARS)
    assert not out.ok and "HTTP 403" in out.error and seen.count("403") == 1


def test_the_api_key_never_appears_in_judgments_or_descriptions(monkeypatch, tmp_path, rubric):
    secret = "sk-test-DO-NOT-LEAK-123456"
    monkeypatch.setenv("TALKWALK_JUDGE_API_KEY", secret)
    got = {}

    def handler(request):
        got["auth"] = request.headers.get("authorization")
        return httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {secret}"}})

    client = openai.OpenAI(base_url="http://judge.test/v1", api_key=secret, max_retries=0,
                           http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    j = Judge(JudgeConfig(model="m", base_url="http://judge.test/v1", cache=False), client=client)
    out = j.judge(rubric, VARS)
    assert got["auth"] == f"Bearer {secret}"  # the key is used...
    assert not out.ok and secret not in str(out.as_record()) and "***" in out.error  # ...and never reported
    assert secret not in str(j.describe()) and j.describe()["api_key_set"] is True


def test_concurrency_is_bounded(serve, tmp_path, rubric):
    eng = ScriptedEngine(lambda m, n: '{"score": 3}', delay=0.05)
    j = _judge(serve(eng), tmp_path, concurrency=3, cache=False)
    outs = j.judge_many([(rubric, {**VARS, "request": f"r{i}"}) for i in range(12)])
    assert all(o.ok for o in outs) and eng.calls == 12
    assert eng.max_inflight <= 3


def test_configuration_reasons():
    assert "no judge endpoint" in JudgeConfig().missing()
    assert "judge_model" in JudgeConfig(base_url="http://127.0.0.1:1/v1").missing()
    assert JudgeConfig(model="m", base_url="http://127.0.0.1:1/v1").missing() is None
    cfg = JudgeConfig.from_options({"judge_model": "m", "judge_base_url": "u", "judge_concurrency": "2", "judge_cache": "false"})
    assert cfg.concurrency == 2 and cfg.cache is False
    with pytest.raises(BenchError, match="judge_concurrency"):
        JudgeConfig.from_options({"judge_concurrency": "many"})
    with pytest.raises(BenchError):
        Judge(JudgeConfig())


def test_cache_file_that_is_corrupt_does_not_stop_judging(serve, tmp_path, rubric):
    (tmp_path / "cache.sqlite").write_bytes(b"\x00garbage" * 500)
    j = _judge(serve(ScriptedEngine(lambda m, n: '{"score": 4}')), tmp_path)
    assert j.judge(rubric, VARS).ok
    assert j.describe()["cache_set_aside"] is not None
    assert isinstance(j.cache, JudgeCache) and len(j.cache) == 1


def test_run_flags_become_task_options_and_an_explicit_option_wins():
    from talkwalk_bench.cli import _judge_options, build_parser

    a = build_parser().parse_args(["run", "--system", "popularity", "--task", "judge", "--judge-model", "m1",
                                   "--judge-base-url", "http://127.0.0.1:9/v1", "-O", "judge_model=m2"])
    opts = _judge_options(a, {"judge_model": "m2"})
    assert opts == {"judge_model": "m2", "judge_base_url": "http://127.0.0.1:9/v1"}


def test_a_slow_endpoint_is_not_declared_down(serve, tmp_path, rubric):
    # the first calls outlast the timeout (a busy machine), the rest are quick: every timeout used to count
    # towards the breaker, which then skipped all later calls as "endpoint down"
    slow = {"n": 0}

    def reply(m, n):
        return '{"score": 3}'

    eng = ScriptedEngine(reply)
    orig = eng.complete

    def complete(messages, **kw):
        slow["n"] += 1
        if slow["n"] <= 3:
            import time

            time.sleep(2.5)
        return orig(messages, **kw)

    eng.complete = complete
    j = _judge(serve(eng), tmp_path, concurrency=1, cache=False, timeout_s=1.0, max_retries=0, breaker=2)
    outs = j.judge_many([(rubric, {**VARS, "request": f"r{i}"}) for i in range(8)])
    errors = [o.error for o in outs if not o.ok]
    # the slow calls time out; the breaker stays shut, so the quick ones that follow are answered
    assert len(errors) >= 3 and all(e.startswith("timeout") for e in errors)
    assert sum(o.ok for o in outs) >= 4 and j.describe()["timeouts"] == len(errors)


def test_the_model_defaults_to_the_one_the_endpoint_serves(serve):
    url = serve(ScriptedEngine(lambda m, n: "{}", name="only-model"))
    cfg = JudgeConfig(base_url=url)
    assert cfg.with_served_model().model == "only-model" and cfg.with_served_model().missing() is None
    down = JudgeConfig(base_url="http://127.0.0.1:9/v1")
    assert down.with_served_model().model is None and "/models" in down.missing()


def test_an_endpoint_without_logprobs_is_asked_without_them(tmp_path, rubric):
    import json as _json

    bodies = []

    def handler(request):
        body = _json.loads(request.content)
        bodies.append(body)
        if body.get("logprobs"):
            return httpx.Response(400, json={"error": {"message": "logprobs are not supported"}})
        return httpx.Response(200, json={"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                         "choices": [{"index": 0, "finish_reason": "stop",
                                                      "message": {"role": "assistant", "content": '{"score": 2}'}}]})

    client = openai.OpenAI(base_url="http://judge.test/v1", api_key="k", max_retries=0,
                           http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    j = Judge(JudgeConfig(model="m", base_url="http://judge.test/v1", cache=False), client=client)
    assert j.judge(rubric, VARS).value["score"] == 2 and j.judge(rubric, {**VARS, "request": "b"}).ok
    assert [bool(b.get("logprobs")) for b in bodies] == [True, False, False]
