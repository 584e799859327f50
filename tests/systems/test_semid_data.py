"""Training examples: kinds per mix, steered targets satisfy the request, prompts end where ids start."""

from __future__ import annotations

from collections import Counter

from systems.semid.data import EXPLAIN_PROMPT, constraints, make_examples, rec_prompt, target_text
from systems.semid.lm import REC, SID_END, SID_START
from talkwalk_bench.data.card import load_card

CARD = load_card("ml-100k")
GENRES = ["Comedy", "Drama", "Horror", "Action"]
ITEMS = {
    str(i): {"movie_title": (f"Film{i}",), "release_year": str(1960 + i), "class": (GENRES[i % 4],)}
    for i in range(1, 41)
}
SIDS = {it: (int(it) % 4, int(it) % 5, int(it), 0) for it in ITEMS}
SEQS = {"u1": [str(i) for i in range(1, 15)], "u2": [str(i) for i in range(20, 40)]}


def test_prompt_ends_with_the_id_opener_and_target_closes_it():
    p = rec_prompt([(1, 2, 3, 0)] * 12, "something funny", max_history=10)
    assert (
        p.endswith(REC + SID_START) and p.count(SID_START) == 11 and "Request: something funny" in p
    )
    assert target_text((1, 2, 3, 0)).endswith(SID_END)


def test_full_mix_has_every_kind_and_content_mix_no_histories():
    full = make_examples(300, sids=SIDS, items=ITEMS, card=CARD, sequences=SEQS, mix="full")
    kinds = Counter(e.kind for e in full)
    assert set(kinds) == {"next_item", "steered", "predict_semantic_id", "predict_attribute"}
    poc = make_examples(200, sids=SIDS, items=ITEMS, card=CARD, sequences={}, mix="content")
    assert "next_item" not in {e.kind for e in poc}
    assert not any("User history" in e.prompt for e in poc)


def test_steered_targets_satisfy_the_request():
    by_phrase = {}
    for c in constraints(CARD, ITEMS, seed=3):
        for ph in c.phrases:
            by_phrase.setdefault(ph, []).append(c.items)
    inv = {target_text(s): it for it, s in SIDS.items()}
    ex = [
        e
        for e in make_examples(200, sids=SIDS, items=ITEMS, card=CARD, sequences=SEQS, seed=3)
        if e.kind == "steered"
    ]
    assert ex
    for e in ex:
        phrase = e.prompt.split("Request: ", 1)[1].split("\n", 1)[0]
        assert any(inv[e.target] in sat for sat in by_phrase[phrase])


def test_next_item_targets_follow_their_history_in_a_real_sequence():
    ex = [
        e
        for e in make_examples(100, sids=SIDS, items=ITEMS, card=CARD, sequences=SEQS, seed=1)
        if e.kind == "next_item"
    ]
    inv = {target_text(s): it for it, s in SIDS.items()}
    for e in ex:
        target = inv[e.target]
        seq = next(s for s in SEQS.values() if target in s)
        t = seq.index(target)
        last = seq[t - 1]
        assert (
            e.prompt.split("User history: ", 1)[1]
            .split("\n")[0]
            .endswith(
                SID_START
                + "".join(f"<|sid_{lv}_{c}|>" for lv, c in enumerate(SIDS[last]))
                + SID_END
            )
        )


def test_explain_share_zero_draws_exactly_the_examples_drawn_without_it():
    a = make_examples(120, sids=SIDS, items=ITEMS, card=CARD, sequences=SEQS, seed=5)
    b = make_examples(120, sids=SIDS, items=ITEMS, card=CARD, sequences=SEQS, seed=5, explain=0.0)
    assert a == b and "explain" not in {e.kind for e in a}


def test_explanations_state_only_true_attributes_and_a_real_shared_history_item():
    inv = {target_text(s): it for it, s in SIDS.items()}
    ex = [
        e
        for e in make_examples(
            400, sids=SIDS, items=ITEMS, card=CARD, sequences=SEQS, seed=2, explain=0.5, eos="</s>"
        )
        if e.kind == "explain"
    ]
    assert len(ex) > 50
    for e in ex:
        assert e.prompt.endswith(EXPLAIN_PROMPT) and e.target.endswith("</s>")
        it = inv[e.prompt[: -len(EXPLAIN_PROMPT)].rsplit(SID_START, 1)[1]]
        genre = ITEMS[it]["class"][0]
        text = e.target
        assert f'"Film{it}" is ' in text and genre in text
        assert not any(g in text.split(" film")[0] for g in GENRES if g != genre)
        if "Like Film" in text:
            other = text.split("Like Film", 1)[1].split(",", 1)[0]
            history = {inv[seg.split(SID_END)[0] + SID_END] for seg in e.prompt.split(SID_START)[1:-1]}
            assert other in history
            shared = ITEMS[other]["class"][0] == genre or (
                int(ITEMS[other]["release_year"]) // 10 == int(ITEMS[it]["release_year"]) // 10
            )
            assert shared
