"""The utterance parser of the keyword-filter pipeline, and how sasrec-filter applies it.

The parser is checked phrase by phrase against the ml-100k card; the ranking
rule on a hand-made catalog with fixed base scores (no training).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from systems.keyword_filter import ItemMatcher, Lexicon, merge_ranges, parse
from talkwalk_bench.data import load_card
from talkwalk_bench.types import Request, Turn


@pytest.fixture(scope="module")
def lex() -> Lexicon:
    return Lexicon(load_card("ml-100k"))


def cons(text: str, lex: Lexicon) -> set[tuple]:
    p = merge_ranges(parse(text, lex))
    out = set()
    for c in p.constraints:
        if c.kind == "range":
            out.add(("range", c.attribute, None if math.isinf(c.low) else c.low, None if math.isinf(c.high) else c.high))
        else:
            out.add((c.kind, c.attribute, tuple(sorted(c.values))))
    out |= {("relative", a, d) for a, d, _ in p.relative}
    return out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("something funny", {("include", "genre", ("Comedy",))}),
        ("a science fiction film", {("include", "genre", ("Sci-Fi",))}),
        ("an action comedy", {("include", "genre", ("Action", "Comedy"))}),
        ("films with monsters", {("include", "genre", ("Horror",))}),  # a description word
        ("something from the seventies", {("range", "year", 1970.0, 1979.0)}),
        ("80s movies", {("range", "year", 1980.0, 1989.0)}),
        ("'70s", {("range", "year", 1970.0, 1979.0)}),
        ("made in the 1950s", {("range", "year", 1950.0, 1959.0)}),
        ("before 1980", {("range", "year", None, 1979.0)}),
        ("older than 1960", {("range", "year", None, 1959.0)}),
        ("after the eighties", {("range", "year", 1990.0, None)}),
        ("between 1970 and 1985", {("range", "year", 1970.0, 1985.0)}),
        ("no horror", {("exclude", "genre", ("Horror",))}),
        ("I'm not in the mood for horror", {("exclude", "genre", ("Horror",))}),
        ("without anything scary", {("exclude", "genre", ("Horror",))}),
        ("no horror or thrillers", {("exclude", "genre", ("Horror",)), ("exclude", "genre", ("Thriller",))}),
        ("less horror", {("demote", "genre", ("Horror",))}),
        ("no drama, something funny", {("exclude", "genre", ("Drama",)), ("include", "genre", ("Comedy",))}),
        ("nothing scary and something romantic", {("exclude", "genre", ("Horror",)), ("include", "genre", ("Romance",))}),
        ("no horror but a thriller", {("exclude", "genre", ("Horror",)), ("include", "genre", ("Thriller",))}),
        ("a funny film from the seventies", {("include", "genre", ("Comedy",)), ("range", "year", 1970.0, 1979.0)}),
        ("something newer", {("relative", "year", "newer")}),
        ("older stuff", {("relative", "year", "older")}),
        ("after 1990 but before 1995", {("range", "year", 1991.0, 1994.0)}),
        ("not before 1990", {("exclude", "year", ("before 1990",))}),
        ("something 1980 or newer", {("range", "year", 1980.0, None)}),
        ("1975 and earlier", {("range", "year", None, 1975.0)}),
        ("films from 1960 onwards", {("range", "year", 1960.0, None)}),
        ("something more recent", {("relative", "year", "newer")}),
        ("a recent comedy", {("include", "genre", ("Comedy",)), ("range", "year", 1990.0, 1999.0)}),  # the card's alias
        ("a film from the 50s or 60s", {("range", "year", 1950.0, 1969.0)}),  # two windows: either one
        ("70s, 80s", {("range", "year", 1970.0, 1989.0)}),
        ("from the 80s, before 1985", {("range", "year", 1980.0, 1984.0)}),  # a bound narrows a window
        ("anything but horror", {("exclude", "genre", ("Horror",))}),
        ("something other than drama", {("exclude", "genre", ("Drama",))}),
        ("what do you have", set()),
        ("", set()),
    ],
)
def test_parse(text, expected, lex):
    assert cons(text, lex) == expected


def test_refusal_wins_over_a_wish_for_the_same_value(lex):
    assert cons("comedy, no comedy", lex) == {("exclude", "genre", ("Comedy",))}


CATALOG = {
    "h70": {"class": ("Horror",), "release_year": 1975.0},
    "c70": {"class": ("Comedy",), "release_year": 1974.0},
    "c90": {"class": ("Comedy",), "release_year": 1995.0},
    "d90": {"class": ("Drama",), "release_year": 1996.0},
    "hc80": {"class": ("Horror", "Comedy"), "release_year": 1985.0},
    "x": {"class": ("Drama",), "release_year": math.nan},
}
BASE = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0], dtype=np.float32)  # catalog order: h70 > c70 > ... > x


@pytest.fixture
def filt(monkeypatch):
    from systems.sasrec.filter import SASRecFilter
    from systems.sasrec.model import SASRecSystem

    card = load_card("ml-100k")
    system = SASRecFilter({}, **{**_defaults(), "cache": False})
    system.item_ids = tuple(CATALOG)
    system.lexicon = Lexicon(card)
    system.matcher = ItemMatcher(card, CATALOG, CATALOG)
    system._index = {it: j for j, it in enumerate(CATALOG)}
    monkeypatch.setattr(SASRecSystem, "score_catalog", lambda self, reqs: np.tile(BASE, (len(reqs), 1)))
    return system


def _defaults() -> dict:
    from talkwalk_bench.registry import system_defaults

    return {k: v for k, v in system_defaults("sasrec-filter").items() if k != "recbole"}


def ask(system, text: str, k: int = 6, shown: tuple[str, ...] = (), history: tuple[str, ...] = ()) -> tuple[str, ...]:
    conv = ((Turn("", shown),) if shown else ()) + (Turn(text),)
    return system.recommend([Request(user_id="u", history=history, conversation=conv)], k=k)[0].items


def test_without_words_the_ranking_is_the_rankers(filt):
    assert ask(filt, "") == tuple(CATALOG)


def test_hard_constraints_filter_and_back_fill_in_ranker_order(filt):
    assert ask(filt, "no horror") == ("c70", "c90", "d90", "x", "h70", "hc80")
    assert ask(filt, "a comedy from the seventies", k=2) == ("c70", "h70")  # one passes; the rest in SASRec order
    assert ask(filt, "something funny")[:3] == ("c70", "c90", "hc80")


def test_softened_attribute_is_demoted_below_clean_items_but_above_broken_ones(filt):
    assert ask(filt, "comedy but less horror") == ("c70", "c90", "hc80", "h70", "d90", "x")


def test_items_with_unknown_year_fail_a_year_constraint(filt):
    assert ask(filt, "before 2000")[-1] == "x"


def test_newer_is_relative_to_what_was_shown(filt):
    assert ask(filt, "something newer", k=3, shown=("c70", "h70")) == ("c90", "d90", "hc80")
    assert ask(filt, "older please", k=2, history=("d90", "c90")) == ("h70", "c70")


def test_scores_follow_the_ranking_and_trace_names_the_constraints(filt):
    req = Request(user_id="u", conversation=(Turn("no horror"),))
    scores = filt.score_catalog([req])[0]
    order = [filt.item_ids[j] for j in np.argsort(-scores, kind="stable")]
    ranking = filt.recommend([req], k=6)[0]
    assert tuple(order) == ranking.items
    assert ranking.trace["constraints"] == [{"attribute": "genre", "kind": "exclude", "phrase": "horror", "values": ["Horror"]}]
    assert "exclude genre 'horror'" in ranking.explanation and ranking.trace["n_pass"] == 4
