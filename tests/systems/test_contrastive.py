"""Contrastive TalkWalk: training, index, query builder, cold start, artifact reuse (small and fast)."""

from __future__ import annotations

import sys
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("faiss")

from systems.contrastive.index import ItemIndex  # noqa: E402
from systems.contrastive.query import Weights, build_query, fold_conversation, normalize  # noqa: E402
from systems.contrastive.system import make  # noqa: E402
from talkwalk_bench.types import Request, TrainData, Turn  # noqa: E402


class HashEncoder:
    """Stand-in text encoder: hashed bag of words, L2-normalised (no model load in unit tests)."""

    dim = 48

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts, progress: bool = False, batch_size: int = 0) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().replace(",", " ").replace(".", " ").split():
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        out[:, 0] += 1e-3
        return normalize(out)

    def save(self) -> None:
        pass


@pytest.fixture(scope="module")
def small(ml100k_slice) -> TrainData:
    return ml100k_slice(60, 25, "small-test")


def _system(enc, **kw):
    args = dict(epochs=2, steps_per_epoch=15, batch_size=32, hidden=(32,), affinity_pairs=40, smooth_triples=32,
                progress=False, text_encoder=enc)
    args.update(kw)
    return make("contrastive", {}, **args)


@pytest.fixture(scope="module")
def fitted(small, module_cache_dir):
    torch.set_num_threads(1)
    s = _system(HashEncoder())
    s.fit(small, seed=0)
    return s


def test_training_reduces_loss(fitted):
    first, last = np.mean(fitted.losses[:3]), np.mean(fitted.losses[-3:])
    assert last < first


def test_artifacts_are_reused_on_second_fit(fitted, small):
    again = _system(HashEncoder())
    again.fit(small, seed=0)
    assert again.loaded_from_cache and not fitted.loaded_from_cache
    assert np.allclose(again.index.vectors, fitted.index.vectors)
    other_seed = _system(HashEncoder())
    other_seed.fit(small, seed=1)
    assert not other_seed.loaded_from_cache


def test_flat_index_equals_brute_force():
    rng = np.random.default_rng(0)
    V = normalize(rng.normal(size=(300, 16)).astype(np.float32))
    Q = normalize(rng.normal(size=(5, 16)).astype(np.float32))
    idx = ItemIndex(16)
    idx.add([str(i) for i in range(300)], V)
    assert idx.kind == "flat"
    s, p = idx.search(Q, 10)
    brute = np.argsort(-(Q @ V.T), axis=1)[:, :10]
    assert (p == brute).all()
    assert np.allclose(s, np.take_along_axis(Q @ V.T, brute, 1), atol=1e-5)


def test_hnsw_above_threshold_finds_the_true_neighbours():
    rng = np.random.default_rng(1)
    V = normalize(rng.normal(size=(400, 16)).astype(np.float32))
    idx = ItemIndex(16, hnsw_threshold=100)
    idx.add([str(i) for i in range(400)], V)
    assert idx.kind == "hnsw"
    Q = V[:20] + 0.01
    _, p = idx.search(normalize(Q), 1)
    assert (p[:, 0] == np.arange(20)).mean() >= 0.95


def _toy():
    rng = np.random.default_rng(2)
    items = {str(i): v for i, v in enumerate(normalize(rng.normal(size=(6, 8)).astype(np.float32)))}
    protos = {"back": normalize(np.eye(8, dtype=np.float32)[[1]]), "attract": normalize(np.eye(8, dtype=np.float32)[[2]]),
              "repel": normalize(np.eye(8, dtype=np.float32)[[3]])}
    words = {"go back": 1, "more like that": 2, "something different": 3, "comedy": 4, "old": 5}
    raw = lambda t: np.eye(8, dtype=np.float32)[words[t]]  # noqa: E731
    steer = lambda t: normalize(raw(t) + 0.2)  # noqa: E731
    vec = lambda ids: np.stack([items[i] for i in ids])  # noqa: E731
    base = normalize(np.ones(8, dtype=np.float32))
    return items, protos, raw, steer, vec, base


def _fold(turns, **kw):
    items, protos, raw, steer, vec, base = _toy()
    return fold_conversation(turns, base, raw_text=raw, steer_text=steer, item_vec=vec, prototypes=protos,
                             threshold=0.9, w=Weights(**kw)), items


def test_attract_moves_query_toward_the_shown_items():
    tr, items = _fold([("comedy", ("0",)), ("more like that", ())])
    assert tr[1].intent == "attract"
    assert tr[1].query @ items["0"] > tr[0].query @ items["0"]


def test_repel_moves_query_away_from_the_shown_items():
    tr, items = _fold([("comedy", ("0", "1")), ("something different", ())])
    assert tr[1].intent == "repel"
    shown = normalize(items["0"] + items["1"])
    assert tr[1].query @ shown < tr[0].query @ shown


def test_go_back_restores_the_previous_query_point():
    tr, _ = _fold([("comedy", ("0",)), ("old", ("1",)), ("go back", ())])
    assert tr[2].intent == "back"
    assert np.allclose(tr[2].query, tr[0].query)
    assert not np.allclose(tr[1].query, tr[0].query)


def test_window_reads_only_the_last_turns():
    tr, _ = _fold([("comedy", ()), ("old", ())], window=1)
    assert len(tr) == 1 and tr[0].utterance == "old"


def test_build_query_weights_each_signal():
    a, b = np.eye(4, dtype=np.float32)[0], np.eye(4, dtype=np.float32)[1]
    q = build_query(a, b, None, None, None, None, Weights(text=3.0, user=1.0))
    assert q[0] > q[1] > 0
    q2 = build_query(a, None, None, None, None, np.stack([a]), Weights(repulsion=0.5))
    assert q2[0] > 0 and np.isclose(np.linalg.norm(q2), 1)


def test_cold_start_item_is_retrievable_without_retraining(fitted, small):
    src = small.item_ids[0]
    row = dict(small.items[src])
    fitted.add_items({"new-item": row})
    n_before = len(fitted.item_ids)
    target = fitted.item_vecs(["new-item"])[0]
    s, p = fitted.index.search(target[None, :], 3)
    assert "new-item" in [fitted.index.ids[j] for j in p[0]]
    # the catalog of fit() is unchanged for score_catalog
    assert fitted.score_catalog([Request(user_id="1")]).shape == (1, n_before)


def test_recommend_exposes_query_and_matches_scores(fitted, small):
    u = next(iter(small.users))
    # an utterance that names no card value: the list is the query's nearest items (no grounded filter)
    r = Request(user_id=u, user=small.users[u], conversation=(Turn("something good tonight"),), history=small.item_ids[:3],
                exclude=frozenset(small.item_ids[:3]))
    [rank] = fitted.recommend([r], k=5)
    q = np.array(rank.trace["query"])
    assert np.isclose(np.linalg.norm(q), 1, atol=1e-4)
    assert len(rank.items) == 5 and not set(rank.items) & r.exclude
    scores = fitted.score_catalog([r])[0]
    assert scores.shape == (len(small.item_ids),)
    assert np.allclose(scores, fitted.index.vectors[: len(small.item_ids)] @ q, atol=1e-4)
    every = fitted.index.scores(q[None, :])[0]  # the catalog plus items added since fit (cold start)
    order = [fitted.index.ids[j] for j in np.argsort(-every, kind="stable") if fitted.index.ids[j] not in r.exclude][:5]
    assert list(rank.items) == order
    assert {"scores", "query_trace", "steering"} <= fitted.meta.capabilities


def test_registration_is_light():
    from talkwalk_bench.registry import SYSTEMS

    names = SYSTEMS.names()
    for n in ("contrastive", "contrastive-no-smooth", "contrastive-no-user", "contrastive-no-steer", "contrastive-llm"):
        assert n in names
    assert "systems.contrastive.system" in sys.modules or True  # imported by this test module itself


def test_llm_variant_without_endpoint_names_the_fix(monkeypatch):
    from talkwalk_bench.errors import BenchError
    from talkwalk_bench.registry import build_system

    monkeypatch.delenv("TALKWALK_LLM_BASE_URL", raising=False)
    with pytest.raises(BenchError, match="llm_base_url"):
        build_system("contrastive-llm", {})


def test_chat_command_reads_stdin_and_shows_how_items_moved():
    import argparse
    import io

    from talkwalk_bench.commands.chat import run_chat

    a = argparse.Namespace(system="popularity", system_arg=None, dataset="ml-100k", user="1", k=3, seed=0)
    out = io.StringIO()
    assert run_chat(a, stdin=io.StringIO("a comedy\nno comedy\n:quit\nnever read\n"), stdout=out) == 0
    text = out.getvalue()
    assert "> a comedy" in text and "> no comedy" in text and "never read" not in text
    assert "3 kept (=)" in text  # popularity ignores the words: nothing moves


def test_named_item_anchors_attract_and_older_glides_along_the_axis():
    items, protos, raw, steer, vec, base = _toy()
    protos = {**protos, "older": normalize(np.eye(8, dtype=np.float32)[[6]])}
    words = {"comedy": 4, "older than that film": 6, "more like that film": 2}
    raw = lambda t: np.eye(8, dtype=np.float32)[words[t]]  # noqa: E731
    calls = []

    def anchor(utt, shown):
        if "Heat" in utt:
            return "3", utt.replace("Heat", "that film")
        return None, utt

    def shift(item, direction):
        calls.append((item, direction))
        return items["5"]

    tr = fold_conversation([("comedy", ("2", "3")), ("older than Heat", ())], base, raw_text=raw, steer_text=steer,
                           item_vec=vec, prototypes=protos, threshold=0.9, w=Weights(), anchor=anchor, shift=shift)
    assert tr[1].intent == "older" and calls == [("3", -1.0)]
    assert tr[1].query @ items["5"] > tr[0].query @ items["5"]
    tr = fold_conversation([("comedy", ("2", "3")), ("more like that film", ())], base,
                           raw_text=raw, steer_text=steer, item_vec=vec, prototypes=protos, threshold=0.9, w=Weights())
    assert tr[1].intent == "attract"


def test_negated_phrases_are_split_off_and_repelled():
    from systems.contrastive.query import split_negation, steer_point

    assert split_negation("a comedy but no romance") == ("a comedy", ["romance"])
    assert split_negation("no horror") == ("", ["horror"])
    assert split_negation("I want a western") == ("I want a western", [])
    vecs = {"a comedy": np.eye(4, dtype=np.float32)[0], "romance": normalize(np.array([1, 1, 0, 0], np.float32))}
    base = normalize(np.ones(4, dtype=np.float32))
    q = steer_point(base, "a comedy but no romance", lambda t: vecs[t], Weights(negation=0.5))
    assert q @ vecs["romance"] < 0  # pushed past the excluded phrase
    plain = steer_point(base, "a comedy", lambda t: vecs[t], Weights())
    assert q @ vecs["romance"] < plain @ vecs["romance"]


# ---------------------------------------------------------------- LLM reasoning layer (contrastive-llm)


class ScriptedLLM:
    """An OpenAI-compatible engine for a loopback server: answers a fixed description, records prompts."""

    name = "scripted"

    def __init__(self, answer: str = "scary horror films", fail: bool = False) -> None:
        self.answer, self.fail, self.prompts = answer, fail, []

    def complete(self, messages, **kw):
        from talkwalk_bench.judge.server import Completion

        self.prompts.append(messages[-1]["content"])
        if self.fail:
            raise RuntimeError("model crashed")
        return Completion(self.answer, 1, 1, "stop")


@pytest.fixture
def with_llm(fitted):
    """The fitted system with a reasoner pointed at ``url`` (the same trained model: the layer adds no training)."""
    import copy

    from systems.contrastive.llm import Reasoner

    made = []

    def build(url: str):
        s = copy.copy(fitted)
        s.reasoner, s.llm_fallbacks = Reasoner(url, "scripted", timeout=5.0), 0
        made.append(s)
        return s

    return build


def _req(small, *turns):
    u = next(iter(small.users))
    return Request(user_id=u, user=small.users[u], history=small.item_ids[:3], conversation=tuple(turns))


def test_llm_layer_keeps_the_conversation_and_replaces_only_the_current_text(fitted, small, with_llm):
    from talkwalk_bench.judge.server import ServerThread

    eng = ScriptedLLM()
    a, b = small.item_ids[10:12], small.item_ids[20:22]
    with ServerThread(eng) as url:
        s = with_llm(url)
        back = _req(small, Turn("comedy", a), Turn("old films", b), Turn("go back"))
        q_llm, _, intent = s.trace(back)
        q_raw, _, _ = fitted.trace(back)
        assert intent == "back" and np.allclose(q_llm, q_raw)  # go back still restores the earlier point
        assert eng.prompts == []  # a control turn needs no rewrite
        steer = _req(small, Turn("comedy", a), Turn("a film with ghosts"))
        [rank] = s.recommend([steer], k=5)
        said = _req(small, Turn("comedy", a), Turn(eng.answer))
        assert np.allclose(np.array(rank.trace["query"]), fitted.trace(said)[0], atol=1e-5)
        assert fitted.trace(steer)[2] == rank.trace["intent"] == "steer"
        assert not np.allclose(np.array(rank.trace["query"]), fitted.trace(steer)[0], atol=1e-3)
        assert rank.trace["llm"] == {"turn": "rewritten", "fallbacks": 0, "calls": 1}
    prompt = eng.prompts[0]
    assert fitted._title(a[0]) in prompt and fitted._title(a[1]) in prompt  # titles, not raw ids
    assert f"showed: {a[0]}," not in prompt and "items:" not in prompt


@pytest.mark.parametrize("broken", ["server_error", "unreachable"])
def test_llm_endpoint_failure_falls_back_to_the_raw_utterance_and_is_counted(fitted, small, with_llm, broken):
    import socket

    from talkwalk_bench.judge.server import ServerThread

    turns = (Turn("comedy", small.item_ids[10:12]), Turn("a film with ghosts"))
    if broken == "server_error":
        st = ServerThread(ScriptedLLM(fail=True)).start()
        url = st.base_url
    else:
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    try:
        s = with_llm(url)
        ranks = s.recommend([_req(small, *turns), _req(small, turns[0], Turn("romantic comedy"))], k=5)
    finally:
        if broken == "server_error":
            st.stop()
    [plain] = fitted.recommend([_req(small, *turns)], k=5)
    assert ranks[0].items == plain.items
    assert ranks[0].trace["llm"]["turn"] == "fallback" and ranks[1].trace["llm"]["fallbacks"] == 2
    assert s.llm_fallbacks == 2 and s.reasoner.last_error


def test_llm_key_is_never_sent_to_another_host_nor_logged(monkeypatch, caplog):
    from systems.contrastive.llm import NO_KEY, Reasoner, api_key, redact

    for k in ("TALKWALK_LLM_API_KEY", "TALKWALK_JUDGE_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret")
    assert api_key("http://127.0.0.1:9/v1") == NO_KEY
    assert api_key("https://api.openai.com/v1") == "sk-openai-secret"
    monkeypatch.setenv("TALKWALK_JUDGE_API_KEY", "judge-secret")
    assert api_key("http://127.0.0.1:9/v1") == "judge-secret"
    monkeypatch.setenv("TALKWALK_LLM_API_KEY", "llm-secret")
    assert api_key("https://api.openai.com/v1") == "llm-secret"
    assert redact("bad key llm-secret", "llm-secret") == "bad key ***"
    r = Reasoner("http://127.0.0.1:9/v1", "m", timeout=2.0)
    with caplog.at_level("WARNING"):
        assert r.rewrite([Turn("a comedy")]) is None
    assert r.fallbacks == 1 and "llm-secret" not in caplog.text and "llm-secret" not in r.last_error


def test_every_variant_is_contrastive_with_its_defaults():
    from talkwalk_bench.registry import build_system, system_defaults

    base = system_defaults("contrastive")
    llm = system_defaults("contrastive-llm")
    assert {k: v for k, v in llm.items() if k not in ("llm_base_url", "llm_model")} == base
    ref, _ = build_system("contrastive", {"progress": False})
    for name, differs in (("contrastive-no-smooth", {"smooth_weight"}), ("contrastive-no-user", {"use_user", "w_user"}),
                          ("contrastive-no-steer", {"use_steering"})):
        s, _ = build_system(name, {"progress": False})
        assert s.diversity == ref.diversity == base["diversity"]
        assert s.intent_threshold == ref.intent_threshold
        cfg_diff = {k for k in ref.cfg.__dataclass_fields__ if getattr(s.cfg, k) != getattr(ref.cfg, k)}
        w_diff = {f"w_{k}" for k in ref.w.__dataclass_fields__ if getattr(s.w, k) != getattr(ref.w, k)}
        assert cfg_diff | w_diff == differs, name


# ---------------------------------------------------------------- cold-start popularity


def test_never_trained_items_have_unknown_popularity_not_zero(small):
    from systems.contrastive.features import FeatureSpace, popularity_feature
    from systems.contrastive.pairs import POP_TEXT, item_description

    pop = popularity_feature({"a": 3, "b": 1}, ["a", "b", "c"])
    assert np.isclose(pop[0], 1.0) and np.isclose(pop[1], np.log(2) / np.log(4)) and np.isnan(pop[2])
    card = small.card
    space = FeatureSpace(card, small.items, small.users, text_dim=0, use_text=False)
    space.pop_fill = 0.4
    row = dict(small.items[small.item_ids[0]])
    X = space.item_vectors([row, row, row], [float("nan"), 0.0, 0.7])
    assert X[0, space.pop_col] == np.float32(0.4) and X[0, space.pop_known_col] == 0.0
    assert X[1, space.pop_col] == 0.0 and X[1, space.pop_known_col] == 1.0
    assert X[2, space.pop_col] == np.float32(0.7) and X[2, space.pop_known_col] == 1.0
    phrases = [t.format(noun=card.item.noun) for _, t in POP_TEXT]
    for v in range(6):
        text = item_description(card, row, float("nan"), v)
        assert not any(p in text for p in phrases)
    assert any(any(p in item_description(card, row, 0.0, v) for p in phrases) for v in range(6))


def test_cold_start_item_is_embedded_with_unknown_popularity(fitted, small):
    row = dict(small.items[small.item_ids[1]])
    fitted.add_items({"cold-item": row})
    got = fitted.item_vecs(["cold-item"])[0]
    unknown = fitted._np_meta(fitted.space.item_vectors([row], [float("nan")], text_fn=fitted.enc.encode))[0]
    obscure = fitted._np_meta(fitted.space.item_vectors([row], [0.0], text_fn=fitted.enc.encode))[0]
    assert np.allclose(got, unknown, atol=1e-6) and not np.allclose(got, obscure, atol=1e-4)


# ---------------------------------------------------------------- exclusion ("no horror")


def test_exclusion_mask_marks_the_items_that_stand_out_toward_the_negated_phrase():
    from systems.contrastive.query import exclusion_mask

    rng = np.random.default_rng(3)
    near = 0.6 + 0.02 * rng.standard_normal(30)  # the "horror" films
    far = 0.1 + 0.05 * rng.standard_normal(200)
    sims = np.concatenate([far[:100], near, far[100:]])
    m = exclusion_mask(sims, z=3.0)
    assert m[100:130].all() and m.sum() < 40
    assert exclusion_mask(sims, z=3.0, max_share=0.05).sum() == int(0.05 * len(sims))  # capped, the highest kept
    assert exclusion_mask(sims, z=3.0, max_share=0.05)[np.argmax(sims)]
    assert not exclusion_mask(np.full(10, 0.3)).any()


def test_a_wording_without_negation_cue_is_ruled_out_when_it_reads_as_exclusion():
    from systems.contrastive.query import steer_parts

    w = Weights()
    assert steer_parts("no horror", w) == ("", ["horror"])
    assert steer_parts("I'm sick of horror", w) == ("I'm sick of horror", [])
    assert steer_parts("I'm sick of horror", w, lambda u: "sick" in u) == ("", ["I'm sick of horror"])
    assert steer_parts("a comedy", w, lambda u: "sick" in u) == ("a comedy", [])
    assert steer_parts("no horror", Weights(negation=0.0), lambda u: True) == ("no horror", [])


def test_ruled_out_items_go_below_everything_else(fitted, small):
    u = next(iter(small.users))
    # a ruled-out phrase that names no card value (a named one is a grounded constraint, tested below)
    r = Request(user_id=u, user=small.users[u], history=small.item_ids[:3], conversation=(Turn("no subtitles"),),
                exclude=frozenset(small.item_ids[:3]))
    q, traces, _ = fitted.trace(r)
    assert traces[-1].negated == ("subtitles",) and traces[-1].constraints == ()
    plain = fitted.index.scores(q[None, :])[0]
    top = [j for j in np.argsort(-plain) if fitted.index.ids[j] not in r.exclude][:4]
    saved = dict(fitted._neg_memo)
    try:
        fitted._neg_memo["subtitles"] = np.isin(np.arange(len(fitted.index.ids)), top)  # pretend these have subtitles
        [rank] = fitted.recommend([r], k=5)
        assert not set(rank.items) & {fitted.index.ids[j] for j in top}
        scores = fitted.score_catalog([r])[0]
        n = len(small.item_ids)
        inside = [j for j in top if j < n]  # cold-start items added by earlier tests are not in score_catalog
        assert scores[inside].max() < np.delete(scores, inside).min()
        back = Request(user_id=u, user=small.users[u], conversation=(Turn("no subtitles"), Turn("go back")))
        assert fitted.trace(back)[1][-1].negated == ()  # going back also drops what that turn ruled out
        off = copy_system(fitted, exclude_demote=False)
        assert set(off.recommend([r], k=5)[0].items) & {fitted.index.ids[j] for j in top}
    finally:
        fitted._neg_memo.clear()
        fitted._neg_memo.update(saved)


def copy_system(s, **attrs):
    import copy

    c = copy.copy(s)
    for k, v in attrs.items():
        setattr(c, k, v)
    return c


def test_polarity_probe_separates_a_direction():
    from systems.contrastive.system import fit_probe

    rng = np.random.default_rng(4)
    X = rng.standard_normal((80, 6)).astype(np.float32)
    y = (X[:, 2] > 0.3).astype(float)
    w, b = fit_probe(X, y)
    assert ((X @ w + b > 0) == (y > 0)).mean() > 0.9 and abs(w[2]) == np.abs(w).max()


def test_llm_variant_builds_from_the_registry_with_contrastive_settings():
    from talkwalk_bench.registry import build_system

    s, args = build_system("contrastive-llm", {"llm_base_url": "http://127.0.0.1:9/v1", "llm_model": "m", "progress": False})
    ref, _ = build_system("contrastive", {"progress": False})
    assert s.reasoner is not None and s.reasoner.base_url == "http://127.0.0.1:9/v1" and s.reasoner.model == "m"
    assert s.diversity == ref.diversity and s.w == ref.w and s.cfg == ref.cfg
    assert s.meta.name == "contrastive-llm" and "reasoner" not in s.meta.params


def test_variants_take_every_contrastive_argument_and_change_only_their_own_defaults():
    from talkwalk_bench.registry import build_system, system_defaults

    base = system_defaults("contrastive")
    changed = {
        "contrastive-no-smooth": {"smooth_weight": 0.0},
        "contrastive-no-user": {"use_user": False, "w_user": 0.0},
        "contrastive-no-steer": {"use_steering": False},
        "contrastive-ft2": {"unfreeze_layers": 2},
    }
    for name, diff in changed.items():
        d = system_defaults(name)
        assert set(d) == set(base)
        assert {k: v for k, v in d.items() if base[k] != v} == diff
        s, _ = build_system(name, {"epochs": 1})
        assert s.cfg.epochs == 1 and s.meta.name == name
    s, _ = build_system("contrastive-no-user")
    assert s.cfg.use_user is False and s.cfg.smooth_weight == 1.0


def test_a_ruled_out_phrase_naming_a_value_demotes_exactly_that_values_items(fitted, small):
    card = small.card
    name = next(n for n, a in card.item.attributes.items() if a.kind == "multi_categorical")
    attr = card.item.attributes[name]
    phrase = attr.values["Comedy"].aliases[0]
    s = copy_system(fitted, ground_min=0.2, _neg_memo={})
    assert s.ground(phrase) == (name, "Comedy")
    assert s.ground("qqq zzz") is None  # names no value: left to the direction mask
    truth = np.array(["Comedy" in attr.value_of(dict(s._rows.get(i, {}))) for i in s.index.ids])  # incl. cold-start items
    assert truth.any() and not truth.all()
    np.testing.assert_array_equal(s.demoted((phrase,)), truth)
    off = copy_system(fitted, ground_margin=0.0, _neg_memo={})
    assert off.ground(phrase) is None
