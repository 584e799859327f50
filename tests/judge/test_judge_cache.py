"""Judge cache: persistent, keyed by endpoint/model/rubric/prompt; a corrupt file is set aside and rebuilt."""

from __future__ import annotations

from talkwalk_bench.judge.cache import JudgeCache, cache_key

MSG = [{"role": "user", "content": "rate this"}]


def test_round_trip_and_persistence(tmp_path):
    p = tmp_path / "c.sqlite"
    c = JudgeCache(p)
    k = cache_key("http://a/v1", "m", "r@v1", 0.0, MSG)
    assert c.get(k) is None
    c.put(k, {"score": 4}, endpoint="http://a/v1", model="m", rubric="r@v1")
    c.close()
    again = JudgeCache(p)
    assert again.get(k) == {"score": 4} and len(again) == 1


def test_key_depends_on_endpoint_model_rubric_version_and_prompt():
    base = cache_key("http://a/v1", "m", "r@v1", 0.0, MSG)
    assert base == cache_key("http://a/v1", "m", "r@v1", 0.0, [dict(m) for m in MSG])
    others = [
        cache_key("http://b/v1", "m", "r@v1", 0.0, MSG),
        cache_key("http://a/v1", "m2", "r@v1", 0.0, MSG),
        cache_key("http://a/v1", "m", "r@v2", 0.0, MSG),
        cache_key("http://a/v1", "m", "r@v1", 0.7, MSG),
        cache_key("http://a/v1", "m", "r@v1", 0.0, [{"role": "user", "content": "rate that"}]),
    ]
    assert base not in others and len(set(others)) == len(others)


def test_corrupt_file_is_set_aside_and_rebuilt(tmp_path):
    p = tmp_path / "c.sqlite"
    p.write_bytes(b"this is not a sqlite database" * 100)
    c = JudgeCache(p)
    assert c.set_aside is not None and c.set_aside.exists()
    assert c.set_aside.read_bytes().startswith(b"this is not")
    k = cache_key("e", "m", "r@v1", 0.0, MSG)
    c.put(k, {"choice": "A"}, endpoint="e", model="m", rubric="r@v1")
    assert c.get(k) == {"choice": "A"}
