"""Plain ``semid``'s satisfaction head (``systems/semid/heed.py``), on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_semid_seq import SEQ  # noqa: E402
from test_semid_system import train_data  # noqa: E402

from systems.semid.heed import HeedingSemIdRecommender, ItemFeatures, heed_rows  # noqa: E402
from systems.semid.system import SemIdRecommender  # noqa: E402
from systems.semid.tiny import save_tiny  # noqa: E402
from talkwalk_bench.registry import build_system, resolve_system_args  # noqa: E402
from talkwalk_bench.steering import ItemValues, train_phrasings  # noqa: E402
from talkwalk_bench.steering.predicates import predicate_from_dict  # noqa: E402
from talkwalk_bench.types import Request, Turn  # noqa: E402


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("semidheed")
    mp = pytest.MonkeyPatch()
    mp.setenv("TALKWALK_CACHE_DIR", str(root / "cache"))
    data = train_data()
    s, _ = build_system("semid", {**SEQ, "base_model": str(save_tiny(root / "base"))})
    s.fit(data, seed=0)
    yield s, data
    mp.undo()


@pytest.fixture(scope="module")
def constrain(env):
    """``semid-constrain`` built like ``env``'s ``semid`` and fitted once (its reader and head from the cache)."""
    s, data = env
    c, _ = build_system("semid-constrain", {**s.p, "constrain": True})
    c.fit(data, seed=0)
    return c


def test_semid_is_built_heeding_and_its_head_is_trained_then_cached(env):
    s, data = env
    assert isinstance(s, HeedingSemIdRecommender) and s.heed is not None
    info = s.fit_info["heed"]
    assert info["cached"] is False and info["rows"] > 500 and info["loss_last50"] < info["loss_first50"]
    again, _ = build_system("semid", dict(s.p))
    again.fit(data, seed=0)
    assert again.fit_info["heed"]["cached"] is True
    r = Request("0", conversation=(Turn("i want horror"),))
    assert np.allclose(again.satisfaction(r), s.satisfaction(r))


def test_lists_without_a_request_are_the_unheeded_models(env):
    s, data = env
    plain = SemIdRecommender("semid", **resolve_system_args("semid", dict(s.p)))
    plain.fit(data, seed=0)
    hist = ("1", "2", "3")
    reqs = [Request("0", history=hist, exclude=frozenset(hist)), Request("1", history=("4", "5"))]
    assert [r.items for r in s.recommend(reqs, k=8)] == [r.items for r in plain.recommend(reqs, k=8)]
    assert np.allclose(s.score_catalog(reqs), plain.score_catalog(reqs))


def test_the_head_learns_which_items_satisfy_its_training_requests(env):
    s, data = env
    vals = ItemValues(data.card, data.items, list(s.space.item_ids))
    gaps = []
    for ph in [p for p in train_phrasings(data.card, seed=0) if p.kind == "include"]:
        m = np.asarray(vals.mask(predicate_from_dict(ph.predicate)), dtype=bool)
        if 0 < m.sum() < len(m):
            p = np.exp(s.satisfaction(Request("0", conversation=(Turn(ph.text),))))
            gaps.append(p[m].mean() - p[~m].mean())
    # an untrained head gives no gap: its logits do not depend on whether an item satisfies the request (the
    # tiny model's reading is weak, so the gap is small, but it is there for most requests)
    assert len(gaps) >= 10 and np.mean(gaps) > 0.03 and np.mean(np.array(gaps) > 0) >= 0.7, gaps


HIST = ("1", "2", "3")


def _ruling_out_the_neutral_list(s, monkeypatch):
    """(a steered and a neutral request, the neutral list, the mask of items that satisfy the steered one):
    ``s.satisfaction`` made to say that every item but the neutral list's satisfies the request."""
    reqs = [Request("0", history=HIST, exclude=frozenset(HIST), conversation=(Turn("anything"),)),
            Request("1", history=HIST, exclude=frozenset(HIST))]
    neutral = s.recommend(reqs[1:], k=4)[0]
    m = np.array([it not in neutral.items for it in s.space.item_ids])
    monkeypatch.setattr(s, "satisfaction", lambda r: np.where(m, 0.0, -40.0))
    return reqs, neutral, m


def test_decoding_multiplies_in_the_probability_of_satisfying_the_request(env, monkeypatch):
    s, data = env
    reqs, neutral, m = _ruling_out_the_neutral_list(s, monkeypatch)
    hist = HIST
    steered, again = s.recommend(reqs, k=4)
    assert again.items == neutral.items  # a list without a request is untouched in the same call
    assert not set(steered.items) & set(neutral.items) and not set(steered.items) & set(hist)
    lp = s.score_catalog(reqs[:1])[0]
    cols = [list(data.item_ids).index(it) for it in s.space.item_ids]
    assert np.exp(lp)[cols][m].sum() > 0.999


def test_features_relate_items_to_the_anchor(env):
    s, data = env
    vals = ItemValues(data.card, data.items, list(s.space.item_ids))
    f = ItemFeatures(data.card, vals, s.space.item_ids)
    a = s.space.item_ids[3]
    rel = f.of(a, vals)[:, f.base.shape[1]:]
    years = np.array([float(vals[it]["year"]) for it in s.space.item_ids])
    assert np.array_equal(rel[:, 0] == 1, years < years[3]) and np.array_equal(rel[:, 1] == 1, years > years[3])
    assert rel[3, 2] == 0 and rel[3, 4] == 1.0  # not similar to itself, though its overlap is whole
    assert not f.of(None)[:, f.base.shape[1]:].any()


def test_heed_rows_hold_every_train_phrasing_the_paraphrases_and_the_negations(env):
    s, data = env
    rows = heed_rows(data.card, [("1", "Film1"), ("2", "Film2")], 0, 2, per_template=20)
    said = {u for _, u, _ in rows}
    assert {p.text for p in train_phrasings(data.card, seed=0) if p.predicate is not None or p.kind in
            ("older", "newer", "similar", "contrast")} <= said
    kinds = {k for k, _, _ in rows}
    assert {"include", "exclude", "before", "after", "older", "similar", "not_bound", "not_item"} <= kinds
    assert "Film1" in " ".join(said) and "that film" in " ".join(said)  # relations said with titles and with "that"
    assert all(isinstance(t, dict) or (isinstance(t, tuple) and t[0] in ("older", "newer", "similar", "contrast"))
               for _, _, t in rows)
    more = heed_rows(data.card, [("1", "Film1")], 0, 2, per_template=100)
    assert sum(k == "include_exclude" for k, _, _ in more) > sum(k == "include_exclude" for k, _, _ in rows)


def test_the_reading_takes_its_layers_as_fractions_of_the_depth(env, monkeypatch):
    import systems.semid.heed as H

    s, _ = env
    body = s._body()
    ids = torch.as_tensor([s._tokens("no horror please")])
    with torch.inference_mode():
        hs = body(input_ids=ids, output_hidden_states=True).hidden_states
    depth = len(hs) - 1
    for f, layer in ((0.0, 0), (0.5, round(depth / 2)), (1.0, depth)):
        monkeypatch.setitem(H.HEED, "read_layers", (f,))
        x = s.reading(["no horror please"])[0]
        h = hs[layer][0, 1:-1].float()  # the request's tokens: not the opening one, not the closing newline
        assert np.allclose(x[: h.shape[1]], h.mean(0).numpy(), atol=1e-5), f
        assert np.allclose(x[h.shape[1] : 2 * h.shape[1]], h.max(0).values.numpy(), atol=1e-5), f
    assert depth >= 2 and not np.allclose(hs[0][0, 1:-1].mean(0), hs[depth][0, 1:-1].mean(0))


def test_an_ensemble_of_heads_gives_the_mean_of_their_probabilities(env, monkeypatch):
    import systems.semid.heed as H

    s, data = env
    monkeypatch.setitem(H.HEED, "heads", 2)
    monkeypatch.setitem(H.HEED, "steps", 20)
    two, _ = build_system("semid", dict(s.p))
    two.fit(data, seed=0)
    assert two.fit_info["heed"]["heads"] == 2 and len(two.heed["nets"]) == 2
    r = Request("0", conversation=(Turn("i want horror"),))
    f = two.features.of(None)
    ps = [1 / (1 + np.exp(-(f @ w[0]))) for w in two._weights(two.reading([r.utterance]))]
    assert not np.allclose(ps[0], ps[1])  # two starts, two heads
    assert np.allclose(np.exp(two.satisfaction(r)), (ps[0] + ps[1]) / 2, atol=1e-6)


def test_semid_constrain_heeds_the_head_where_its_reader_keeps_no_constraint(constrain, monkeypatch):
    from systems.semid.heed import HeedingNegatingReaderRecommender

    c = constrain
    assert isinstance(c, HeedingNegatingReaderRecommender) and c.heed is not None
    reqs, neutral, _ = _ruling_out_the_neutral_list(c, monkeypatch)
    monkeypatch.setattr(c, "read", lambda r: ("none", None, None))  # the reader unsure: no constraint kept
    steered, again = c.recommend(reqs, k=4)
    assert again.items == neutral.items and steered.trace["constraint_kept"] is False
    assert not set(steered.items) & set(neutral.items) and not set(steered.items) & set(HIST)


def test_semid_constrain_sets_aside_a_bound_its_head_reads_the_other_way(constrain, monkeypatch):
    from systems.semid.checked import SET_ASIDE, CheckedReaderRecommender
    from systems.semid.reading import Credible, NegatingReaderRecommender

    c = constrain
    assert isinstance(c, CheckedReaderRecommender) and c.heed is not None
    n = len(c.space.item_ids)
    text = next(t for t in c.cspace.negation.values() if t not in c.cspace.anchored
                and 8 <= (c._mask(c.cspace.preds[t]) > 0.5).sum() <= n - 8)
    pred = c.cspace.preds[text]
    m = c._mask(pred) > 0.5
    reading = {"now": (text, pred, text)}
    monkeypatch.setattr(NegatingReaderRecommender, "read", lambda self, r: reading["now"])
    r = Request("0", history=HIST, exclude=frozenset(HIST), conversation=(Turn("anything"),))
    monkeypatch.setattr(c, "satisfaction", lambda r: np.where(m, 0.0, -40.0))  # the head agrees
    assert c.read(r) == (text, pred, text)
    assert set(c.recommend([r], k=4)[0].items) <= {it for it, ok in zip(c.space.item_ids, m, strict=True) if ok}
    monkeypatch.setattr(c, "satisfaction", lambda r: np.where(m, -40.0, 0.0))  # the head reads it the other way
    got_text, got, _ = c.read(r)
    assert got is None and got_text == text + SET_ASIDE
    steered = c.recommend([r], k=4)[0]
    assert steered.trace["constraint_kept"] is False
    assert not set(steered.items) & {it for it, ok in zip(c.space.item_ids, m, strict=True) if ok}
    # only bounds are checked: a categorical reading, a relation to an item, credible readings are kept
    include = next(t for t in c.cspace.texts if " = " in t and "&" not in t)
    reading["now"] = (include, c.cspace.preds[include], include)
    assert c.read(r)[1] is c.cspace.preds[include]
    anchored = next(iter(c.cspace.anchored)) if c.cspace.anchored else None
    if anchored is not None:
        reading["now"] = (anchored, pred, ("older", "1"))
        assert c.read(r)[1] is pred
    both = Credible(((pred, text, 0.6), (None, "none", 0.4)))
    reading["now"] = ("mixed", both, ("credible",))
    assert c.read(r)[1] is both
    reading["now"] = (text, pred, text)
    monkeypatch.setattr(c, "check", False)  # without the check the bound is kept however the head reads the request
    assert c.read(r)[1] is pred


def test_the_checked_reader_reads_a_request_with_its_head_once(constrain, monkeypatch):
    c = constrain
    calls = []
    real = HeedingSemIdRecommender.satisfaction
    monkeypatch.setattr(HeedingSemIdRecommender, "satisfaction", lambda self, r: calls.append(r) or real(self, r))
    r = Request("0", history=HIST, exclude=frozenset(HIST), conversation=(Turn("i want horror"),))
    first = c.satisfaction(r)
    assert np.array_equal(c.satisfaction(r), first) and len(calls) == 1
    c.satisfaction(Request("0", conversation=(Turn("no horror"),)))
    assert len(calls) == 2


def _years(s, pred):
    """The catalog items (code-space order) that satisfy ``pred``, as a set."""
    return {it for it, ok in zip(s.space.item_ids, s._mask(pred) > 0.5, strict=True) if ok}


def test_a_date_counted_back_from_the_catalogs_present_is_read_exactly(env, constrain):
    from systems.semid.dated import OUTSIDE, Dating

    s, data = env
    assert isinstance(s, Dating) and isinstance(constrain, Dating)
    newest = max(int(v["release_year"]) for v in data.items.values())
    r = Request("0", history=HIST, exclude=frozenset(HIST), conversation=(Turn("something from the last five years"),))
    d = s.dated(r)
    want = {it for it, v in data.items.items() if int(v["release_year"]) >= newest - 4}
    assert d is not None and _years(s, d.predicate) == want and str(newest) in d.why
    assert _years(s, s.dated(Request("0", conversation=(Turn("only the past decade please"),))).predicate) == {
        it for it, v in data.items.items() if int(v["release_year"]) >= newest - 9}
    # plain semid: the head's probability, times OUTSIDE for every item the date rules out
    plain = HeedingSemIdRecommender.satisfaction(s, r)
    inside = s._mask(d.predicate) > 0.5
    assert np.allclose(s.satisfaction(r)[inside], plain[inside])
    assert np.allclose(s.satisfaction(r)[~inside], plain[~inside] + np.log(OUTSIDE))
    # semid-constrain keeps decoding to it
    text, pred, _ = constrain.read(r)
    assert text.startswith(d.text) and _years(constrain, pred) == want
    assert set(constrain.recommend([r], k=len(want))[0].items) <= want
    # a request with no such date is read as before
    other = Request("0", conversation=(Turn("i want horror"),))
    assert s.dated(other) is None and np.array_equal(s.satisfaction(other), HeedingSemIdRecommender.satisfaction(s, other))


def test_an_event_is_dated_by_the_llm_only_when_it_is_sure_and_nothing_else_says_the_date(constrain, monkeypatch):
    from systems.semid.dated import SURE

    c = constrain
    said = {"p": 0.9}
    monkeypatch.setattr(c, "year_of", lambda event: (1969, said["p"]))
    monkeypatch.setattr(c, "_date_memo", {})

    def dated(text, history=HIST):
        c._date_memo.clear()
        return c.dated(Request("0", history=history, conversation=(Turn(text),)))

    after, since, before = (dated(f"a film made {w} the end of the big war") for w in ("after", "since", "before"))
    assert (after.text, since.text, before.text) == ("year > 1969", "year >= 1969", "year < 1969")
    years = {it: int(v["release_year"]) for it, v in train_data().items.items()}
    assert _years(c, after.predicate) == {it for it, y in years.items() if y > 1969}
    assert _years(c, before.predicate) == {it for it, y in years.items() if y < 1969}
    assert dated("something made after the end of the big war, but no horror").text == "year > 1969"
    assert dated("after the 1980 games") is None  # a number: the readers read it
    assert dated("after the seventies") is None  # a bin of the card
    assert dated("made after the Film3 remake") is None  # a title: a relation to an item
    assert dated("after dinner") is None  # no event named
    said["p"] = SURE - 0.01
    assert dated("a film made after the end of the big war") is None  # the LLM is not sure of its year
    said["p"] = 0.9
    monkeypatch.setattr(c, "dates", False)
    assert dated("a film made after the end of the big war") is None


def test_semid_constrain_keeps_a_genre_its_reader_is_sure_of_beside_the_date(constrain, monkeypatch):
    from systems.semid.reading import NegatingReaderRecommender

    c = constrain
    include = next(t for t in c.cspace.texts if " = " in t and "&" not in t)
    monkeypatch.setattr(NegatingReaderRecommender, "read", lambda self, r: (include, c.cspace.preds[include], include))
    r = Request("0", conversation=(Turn("something from the last twenty years"),))
    text, pred, key = c.read(r)
    date = c.dated(r)
    assert text.startswith(f"{include} & {date.text}") and key[0] == "dated"
    assert _years(c, pred) == _years(c, c.cspace.preds[include]) & _years(c, date.predicate)


def test_the_llm_dates_an_event_to_a_year_the_card_could_mean(env):
    from systems.semid.dated import EARLIEST

    s, _ = env
    s.dated(Request("0", conversation=(Turn("x"),)))  # sets up the dating
    year, p = s.year_of("the end of the big war")
    assert EARLIEST <= year <= 1998 and 0.0 < p <= 1.0
