"""The whole-sequence recipe, the from-scratch decoder and the constraint-emitting variant, on tiny models."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_semid_system import ARGS, train_data  # noqa: E402

from systems.semid import seq as S  # noqa: E402
from systems.semid.ids import SemanticIdTable  # noqa: E402
from systems.semid.tiny import save_tiny  # noqa: E402
from talkwalk_bench.registry import build_system  # noqa: E402
from talkwalk_bench.steering import ItemValues, train_phrasings  # noqa: E402
from talkwalk_bench.types import Request, Turn  # noqa: E402

TIGER = dict(embedder="card", widths="4x4x4", rqvae_steps=60, hidden=16, layers=1, heads=2, epochs=2,
             steer_steps=2, steer_batch=2, val_users=3, beam=24, window=6, batch_tokens=64, teacher="")
SEQ = {**ARGS, "steps_b": 2, "epochs": 2.0, "batch_tokens": 128, "window": 6, "overlap": 3, "steer_every": 2, "steer_batch": 2,
       "checkpoint_every": 1, "teacher": "semid-tiger", "distill": 0.5, "reader_steps": 3, "reader_batch": 4,
       "teacher_args": ",".join(f"{k}={v}" for k, v in TIGER.items() if k not in ("embedder", "widths", "rqvae_steps"))}


def toy_space() -> S.CodeSpace:
    # 6 items, 3 levels, the last one constant (dropped)
    codes = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0], [2, 0, 0], [2, 1, 0]])
    table = SemanticIdTable(tuple("abcdef"), codes, (3, 2, 1))
    return S.CodeSpace(table, tuple("abcdef"))


def test_constant_levels_are_dropped_and_tokens_follow_levels():
    sp = toy_space()
    assert sp.m == 2 and sp.widths == [3, 2]
    sp.level_tokens = sp.own_tokens(10)
    assert sp.item_tokens("d") == [11, 14]
    assert sp.history_tokens(["a", "zz", "d"], 1) == [11, 14]


def test_windows_supervise_every_prediction_exactly_once():
    sp = toy_space()
    seqs = {"u": list("abcdefabcdefabc"), "v": list("ab")}
    rows = S.windows(seqs, sp, prefix=[99], window=4)
    supervised = {"u": [], "v": []}
    for w in rows:
        items = [(w.tokens[i], w.tokens[i + 1]) for i in range(1, len(w.tokens), sp.m)]
        first_item = (w.first_target - 1) // sp.m
        assert w.first_target == 1 or (w.first_target - 1) % sp.m == 0
        assert len(items) <= 4
        supervised[w.user] += items[first_item:]
    for u, seq in seqs.items():
        assert supervised[u] == [tuple(sp.item_tokens(it)) for it in seq]
    # a smaller overlap: fewer tokens, still every prediction once, with >= 1 item of context
    rows1 = S.windows(seqs, sp, prefix=[99], window=4, overlap=1)
    assert sum(len(w.tokens) for w in rows1) < sum(len(w.tokens) for w in rows)
    assert sum((len(w.tokens) - 1) // sp.m - (w.first_target - 1) // sp.m for w in rows1) == 17


def test_level_loss_is_the_restricted_softmax_cross_entropy():
    sp = toy_space()
    sp.level_tokens = sp.own_tokens(0)
    g = torch.Generator().manual_seed(0)
    W = torch.randn(5, 4, generator=g)
    h = torch.randn(3, 4, generator=g)
    toks = torch.tensor([2, 4, 0])
    lv = torch.tensor([0, 1, 0])
    loss, n = S.level_loss(h, W, toks, lv, sp)
    want = []
    for i in range(3):
        rows = sp.level_tokens[int(lv[i])]
        lp = torch.log_softmax(h[i] @ W[rows].T, -1)
        want.append(-lp[rows.index(int(toks[i]))])
    assert n == 3 and float(loss) == pytest.approx(float(torch.stack(want).mean()), rel=1e-5)
    # a teacher equal to the student adds no KL
    tl = [h[lv == j] @ W[sp.level_tokens[j]].T for j in range(2)]
    same, _ = S.level_loss(h, W, toks, lv, sp, teacher_logits=tl, alpha=0.5)
    assert float(same) == pytest.approx(0.5 * float(loss), rel=1e-5)


def test_conditional_targets_follow_the_target_prefix():
    sp = toy_space()
    p = np.array([0.1, 0.2, 0.3, 0.1, 0.2, 0.1])
    t = sp.conditional_targets(p, 3)  # item d: codes (1, 1)
    np.testing.assert_allclose(t[0], [0.3, 0.4, 0.3])
    np.testing.assert_allclose(t[1], [0.75, 0.25])


def test_catalog_teacher_gives_each_position_the_prefix_targets_of_its_history():
    from systems.semid.recipe import CatalogTeacher

    sp = toy_space()
    sp.level_tokens = sp.own_tokens(10)
    logits = {(): [0.0] * 6, ("a",): [1, 2, 3, 0, 0, 1], ("a", "d"): [0, 0, 0, 2, 1, 3]}
    seen = []

    class Fixed:  # a teacher whose catalog scores depend on the history
        item_ids = tuple("fedcba")  # its own column order

        def score_catalog(self, reqs):
            seen.extend(r.history for r in reqs)
            return np.array([list(reversed(logits[r.history])) for r in reqs], dtype=float)

    t = CatalogTeacher(Fixed(), sp, prefix_len=1)
    row = [99, *sp.item_tokens("a"), *sp.item_tokens("d"), *sp.item_tokens("f")]
    ids = torch.tensor([row])
    att = torch.ones_like(ids)
    mask = torch.zeros(1, len(row) - 1, dtype=torch.bool)
    mask[0, 1:] = True  # position 0 (a's first code, predicted from the prefix alone) is not supervised
    lv = torch.tensor(S.level_of_positions(len(row), 1, sp.m)[1:][mask[0].numpy()])
    out = t.level_logits(ids, att, mask, lv)
    assert seen == [(), ("a",), ("a", "d")]
    # position predicting a's 2nd code has the empty history; d's codes follow ("a",); f's follow ("a", "d")
    want = []
    for hist, item in [((), "a"), (("a",), "d"), (("a", "d"), "f")]:
        p = np.exp(logits[hist]) / np.exp(logits[hist]).sum()
        want.append(sp.conditional_targets(p, sp.index[item]))
    got0 = torch.softmax(out[0], -1).numpy()  # level 0 positions: d, f
    got1 = torch.softmax(out[1], -1).numpy()  # level 1 positions: a, d, f
    np.testing.assert_allclose(got0, [want[1][0], want[2][0]], atol=1e-5)
    np.testing.assert_allclose(got1, [want[0][1], want[1][1], want[2][1]], atol=1e-5)


def test_level_targets_batch_equals_one_row_at_a_time_and_tokens_spell_items():
    sp = toy_space()
    sp.level_tokens = sp.own_tokens(10)
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(6), size=4)
    targets = [0, 3, 5, 3]
    for j in range(sp.m):
        np.testing.assert_allclose(sp.level_targets(P, targets, j), [sp.conditional_targets(P[r], t)[j] for r, t in enumerate(targets)])
    assert sp.items_of([*sp.item_tokens("d"), *sp.item_tokens("a")]) == ["d", "a"]


def test_catalog_teacher_that_lacks_catalog_items_is_refused_naming_the_argument():
    from systems.semid.recipe import CatalogTeacher
    from talkwalk_bench.errors import BenchError

    class Partial:
        item_ids = tuple("abc")  # fitted on another catalog

    with pytest.raises(BenchError, match=r"-S teacher=other: the teacher has no score for 3 catalog items \(e\.g\. item d\)"):
        CatalogTeacher(Partial(), toy_space(), name="other")


def test_lr_schedule_warms_up_then_decays():
    lrs = [S.lr_at(s, 100, peak=1.0, warmup=10) for s in range(100)]
    assert lrs[0] < lrs[9] == pytest.approx(1.0) and lrs[99] < 0.2 and max(lrs) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("semidseq")
    mp = pytest.MonkeyPatch()
    mp.setenv("TALKWALK_CACHE_DIR", str(root / "cache"))
    yield save_tiny(root / "base"), train_data()
    mp.undo()


def fitted(name, env, **over):
    base, data = env
    s, _ = build_system(name, {**SEQ, "base_model": str(base), **over})
    s.fit(data, seed=0)
    return s


def test_tiger_lists_are_valid_and_its_scores_a_distribution(env):
    t, _ = build_system("semid-tiger", TIGER)
    t.fit(env[1], seed=0)
    assert t.fit_info["cached"] is False and t.fit_info["curve"]
    hist = ("1", "2", "3")
    reqs = [Request("0", history=hist, exclude=frozenset(hist)), Request("1", conversation=(Turn("i want horror"),))]
    for r, rank in zip(reqs, t.recommend(reqs, k=8), strict=True):
        assert len(set(rank.items)) == 8 and not set(rank.items) & r.exclude
    lp = t.score_catalog(reqs[1:])[0]
    assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-4)


def _benchmark(name: str):
    """A script of ``benchmarks/``, loaded as a module."""
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location(name, pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_ensemble_benchmarks_members_share_ids_and_teacher_but_not_weights(env):
    bench = _benchmark("semid_tiger_ensemble")
    Member = bench.member_class()  # noqa: N806
    single, _ = build_system("semid-tiger", TIGER)
    m0, m1 = (Member("semid-tiger", k, **single.p) for k in (0, 1))
    # member 0 is the default model (same cache entry); member 1 has its own
    assert m0._key(env[1], 0) == single._key(env[1], 0) != m1._key(env[1], 0)
    for m in (m0, m1):
        m.fit(env[1], seed=0)
    assert m0.space.sids == m1.space.sids and m0.seed == m1.seed == 0
    w0, w1 = (m.model.get_input_embeddings().weight for m in (m0, m1))
    assert not torch.equal(w0, w1)


def test_the_teachers_benchmark_fits_its_draws_at_consecutive_seeds_in_its_own_cache_entry(env, monkeypatch):
    from systems.baselines import Popularity

    bench = _benchmark("semid_tiger_teachers")
    args = {**TIGER, "teacher": "popularity", "teacher_args": "", "distill": 0.5}
    single, _ = build_system("semid-tiger", args)
    taught = bench.taught_class()("semid-tiger", 3, **single.p)
    assert taught._key(env[1], 4) != single._key(env[1], 4)
    seeds = []
    real_fit = Popularity.fit
    monkeypatch.setattr(Popularity, "fit", lambda self, data, *, seed: (seeds.append(seed), real_fit(self, data, seed=seed))[1])
    taught.fit(env[1], seed=4)
    assert seeds == [4, 5, 6] and taught.fit_info["teacher"]["fit_info"] == {"draws": 3}
    assert taught.space.sids == (single.fit(env[1], seed=4) or single).space.sids


def test_seq_recipe_lists_cache_and_resume(env):
    s = fitted("semid", env)
    assert s.fit_info["cached"] is False and s.fit_info["training"]["steps"] > 0
    assert s.fit_info["training"]["teacher"] is not None and s.fit_info["training"]["constraint_rows"] > 0
    hist = ("1", "2", "3")
    r = Request("0", history=hist, exclude=frozenset(hist))
    rank = s.recommend([r], k=10)[0]
    assert len(set(rank.items)) == 10 and not set(rank.items) & set(hist)
    for it, sid in zip(rank.items, rank.trace["semantic_ids"], strict=True):
        assert s.semantic_id(it) == tuple(sid)
    # a killed training resumes from its last checkpoint: with the final weights gone,
    # the refit restarts at the checkpoint's step and takes no new step
    import pathlib

    root = pathlib.Path(s.fit_info["cache_dir"])
    (root / "trained.pt").unlink()
    again = fitted("semid", env)
    assert again.fit_info["cached"] is False
    assert again.fit_info["training"]["steps"] == s.fit_info["training"]["steps"]
    assert again.recommend([r], k=10)[0].items == rank.items


def test_constrain_variant_emits_a_card_constraint_and_keeps_to_it(env):
    s = fitted("semid-constrain", env)
    data = env[1]
    r = Request("1", conversation=(Turn("i want horror"),))
    text, pred = s.read_constraint("i want horror", anchored=False)  # nothing named, nothing shown
    assert text in s.cspace.texts
    rank = s.recommend([r], k=3)[0]
    # the likeliest reading first, then any others decoding keeps to (an untrained reader is unsure)
    first = rank.trace["constraint"].split(" | ")[0]
    assert first == text or first.startswith(f"{text} (")
    if pred is not None and rank.trace["constraint"] == text:
        vals = ItemValues(data.card, data.items, list(data.item_ids))
        ok = dict(zip(data.item_ids, vals.mask(pred), strict=True))
        assert all(ok[it] for it in rank.items)


def test_reader_rows_are_train_phrasings_or_system_paraphrases_and_anchor_on_titles(env):
    from systems.contrastive.grounding import EXTRA
    from systems.semid.constraint import ConstraintSpace

    card = env[1].card
    space = ConstraintSpace(card, anchored=True)
    assert set(space.anchored.values()) == {"older", "newer", "similar", "contrast"}
    rows = space.reader_rows(card, ["Brazil", "Heat"], seed=0)
    kinds = {k for k, _, _ in rows}
    assert {"older", "exclude", "before", "neutral"} <= kinds
    for kind, _utt, text in rows:
        assert text in space.texts
        if kind in ("older", "newer", "similar", "contrast"):
            assert space.anchored[text] == kind
    # anchored phrasings are said with real titles as well as "that film"
    assert any("Brazil" in u or "Heat" in u for k, u, _ in rows if k == "older")
    # every utterance is a train phrasing or a system-side paraphrase filled in, never anything else
    train = {ph.template for ph in train_phrasings(card)}
    n_templates = len(train) + sum(len(v) for v in EXTRA.values())
    assert len({u for _, u, _ in rows}) > n_templates  # templates filled with the card's values


def test_negated_texts_mean_their_complement_and_the_reader_resolves_them(env, monkeypatch):
    from systems.semid.reading import NOT, NegatingReaderRecommender, NegatingSpace

    data = env[1]
    space = NegatingSpace(data.card, anchored=True)
    assert "not year < 1980" in space.negation and "not year < that" in space.negation
    vals = ItemValues(data.card, data.items, list(data.item_ids))
    known = np.array([vals[it]["year"] is not None for it in data.item_ids])
    for t, comp in space.negation.items():
        plain = t[len(NOT):]
        assert space.resolve(t) == comp and space.resolve(comp) == comp and t in space.texts
        if plain in space.anchored:  # a relation to an item: the other direction
            assert {space.anchored[plain], space.anchored[comp]} == {"older", "newer"}
            continue
        a, b = vals.mask(space.preds[plain]), vals.mask(space.preds[t])
        assert not (a & b).any() and ((a | b) == known).all()  # items of unknown year satisfy neither
    # the rows teach every "not" text of the year bounds, as two kinds of their own
    rows = space.negated_rows(data.card, ["Brazil"], seed=0)
    assert {k for k, _, _ in rows} == {"not_bound", "not_item"} and all(t in space.negation for _, _, t in rows)
    s = fitted("semid-constrain", env)
    assert isinstance(s, NegatingReaderRecommender) and s.fit_info["reader"]["rows"] > len(rows)
    # what the reader emits ("not year < 1980") reaches the recommender as its complement
    texts = s._ctries[False][1]
    assert "not year < that" not in texts  # nothing to refer to: no relation to an item, negated or not
    import systems.semid.reading as reading

    monkeypatch.setattr(reading, "likeliest_readings", lambda model, ids, trie, **kw: [(texts.index("not year < 1980"), 0.0)])
    text, pred = s.read_constraint("anything", anchored=False)
    assert text == "year >= 1980" and pred is space.preds["year >= 1980"] or pred == space.preds["year >= 1980"]
    rank = s.recommend([Request("1", conversation=(Turn("anything"),))], k=3)[0]
    assert rank.trace["constraint"] == "year >= 1980"
    assert all(vals[it]["year"] is not None and vals[it]["year"] >= 1980 for it in rank.items)


def test_constrain_reads_that_as_the_item_the_request_names(env, monkeypatch):
    s = fitted("semid-constrain", env)
    data = env[1]
    assert s.fit_info["reader"]["steps"] == 3 and s.reader is not s.model
    vals = ItemValues(data.card, data.items, list(data.item_ids))
    year = {it: vals[it]["year"] for it in data.item_ids}
    # "Film12" is named; "Film1" was shown too and must not be taken for it
    r = Request("1", history=("3", "4"), conversation=(Turn("hi", shown=("1", "12", "20")), Turn("older than Film12, please")))
    assert s.anchor_of(r) == "12"
    assert s.anchor_of(Request("1", conversation=(Turn("hi", shown=("20", "5")), Turn("older than that")))) == "20"
    # nothing named and nothing pointed at: the anchored relations are not offered to the reader
    plain = Request("1", conversation=(Turn("hi", shown=("20", "5")), Turn("i want horror")))
    assert s.anchor_of(plain) is None
    seen = []
    monkeypatch.setattr(s, "readings", lambda u, anchored=True, most=8: seen.append(anchored) or [("none", 0.0)])
    s.recommend([plain], k=3)
    assert seen == [False]
    monkeypatch.setattr(s, "readings", lambda u, anchored=True, most=8: [("year < that", 0.0)])
    rank = s.recommend([r], k=3)[0]
    assert rank.trace["constraint"] == "year < that"
    assert rank.items and all(year[it] < year["12"] for it in rank.items)
    monkeypatch.setattr(s, "readings", lambda u, anchored=True, most=8: [("genre unlike that", 0.0)])
    rank = s.recommend([r], k=3)[0]
    g12 = vals["12"]["genre"]
    assert all(not (vals[it]["genre"] & g12) for it in rank.items)
    # exclusions are counted among the satisfying items: 4 of them left is enough for a top 3, however
    # long the history (here 14 items, more than the 16 satisfying items minus 3)
    outside = [it for it in data.item_ids if vals[it]["genre"] & g12 and it != "12"]
    inside = [it for it in data.item_ids if not (vals[it]["genre"] & g12)]
    seen_items = frozenset(inside[4:] + outside[:2])
    assert len(inside) - len(seen_items) < 3 and len(outside) - 2 >= 3
    long = Request("1", history=tuple(seen_items), exclude=seen_items, conversation=r.conversation)
    rank = s.recommend([long], k=3)[0]
    assert rank.trace["constraint_kept"] is True
    assert len(rank.items) == 3 and all(it in inside[:4] for it in rank.items)


def test_likeliest_readings_are_the_languages_texts_in_order_of_probability(env):
    import systems.semid.constraint as cons
    from systems.semid.reading import likeliest_readings

    s = fitted("semid-constrain", env)
    trie, texts = s._ctries[False]
    ids = s.tok(cons.PROMPT.format(utterance="nothing made before 1980"), add_special_tokens=False)["input_ids"]
    head = s.reader.get_output_embeddings().weight

    def logp(seq):  # each branching step renormalised over the tokens the trie allows, as decoding does
        with torch.inference_mode():
            h = s.reader.base_model(input_ids=torch.as_tensor([ids + seq])).last_hidden_state[0]
        out = 0.0
        for j in range(len(seq)):
            allowed = trie.kids[tuple(seq[:j])]
            if len(allowed) > 1:
                out += float(torch.log_softmax((h[len(ids) + j - 1] @ head[allowed].T).float(), -1)[allowed.index(seq[j])])
        return out

    exact = sorted(((logp(list(seq)), i) for seq, i in trie.leaf.items()), reverse=True)
    assert abs(sum(math.exp(v) for v, _ in exact) - 1) < 1e-3  # a distribution over the language
    found = likeliest_readings(s.reader, ids, trie, mass=0.999, most=5)
    assert [i for i, _ in found] == [i for _, i in exact[:5]]
    assert all(abs(v - w) < 2e-2 for (_, v), (w, _) in zip(found, exact, strict=False))
    # it stops once the readings found hold the share asked for
    some = likeliest_readings(s.reader, ids, trie, mass=0.5, most=50)
    assert sum(math.exp(v) for _, v in some[:-1]) < 0.5 <= sum(math.exp(v) for _, v in some) + 1e-3


def test_decoding_keeps_to_the_items_the_credible_readings_make_sure_and_to_nothing_when_unsure(env, monkeypatch):
    s = fitted("semid-constrain", env)
    data = env[1]
    vals = ItemValues(data.card, data.items, list(data.item_ids))
    r = Request("1", conversation=(Turn("hmm"),))
    # two texts that nest, e.g. "genre = Comedy & genre != Drama" in "genre = Comedy", each wider than the other
    both, wide = next((t, t.split(" & ")[0]) for t in s.cspace.texts if " & genre != " in t
                      and 3 <= vals.mask(s.cspace.preds[t]).sum() < vals.mask(s.cspace.preds[t.split(" & ")[0]]).sum())
    sure = vals.mask(s.cspace.preds[both])
    in_wide = dict(zip(data.item_ids, vals.mask(s.cspace.preds[wide]), strict=True))
    ok = dict(zip(data.item_ids, sure, strict=True))
    assert sure.sum() >= 3 and sum(in_wide.values()) > sure.sum()
    # two readings that nest and hold 0.95 together: the items both hold (0.95 sure), not those only the wider holds (0.45)
    monkeypatch.setattr(s, "readings", lambda u, anchored=True, most=8: [(both, math.log(0.5)), (wide, math.log(0.45))])
    rank = s.recommend([r], k=3)[0]
    assert rank.trace["constraint"] == f"{both} (0.50) | {wide} (0.45)" and rank.trace["constraint_kept"] is True
    assert all(ok[it] for it in rank.items)
    # torn between a bound and its complement: no item is 0.9 sure, so nothing to keep to
    monkeypatch.setattr(s, "readings", lambda u, anchored=True, most=8: [("year < 1980", math.log(0.6)), ("year >= 1980", math.log(0.35))])
    rank = s.recommend([r], k=3)[0]
    assert rank.trace["constraint"] == "year < 1980 (0.60) | year >= 1980 (0.35)" and rank.trace["constraint_kept"] is False
    # "none" holds for every item: a bound read with 0.5 and "none" with 0.45 leaves the bound's items 0.95 sure
    monkeypatch.setattr(s, "readings", lambda u, anchored=True, most=8: [("year < 1980", math.log(0.5)), ("none", math.log(0.45))])
    rank = s.recommend([r], k=3)[0]
    assert rank.trace["constraint_kept"] is True and all(vals[it]["year"] < 1980 for it in rank.items)
    # one sure reading: that reading, as before
    monkeypatch.setattr(s, "readings", lambda u, anchored=True, most=8: [(wide, math.log(0.97))])
    rank = s.recommend([r], k=3)[0]
    assert rank.trace["constraint"] == wide and all(in_wide[it] for it in rank.items)


def test_the_reader_never_changes_lists_without_a_request(env):
    plain = fitted("semid", env)
    con = fitted("semid-constrain", env)
    hist = ("1", "2", "3")
    r = Request("0", history=hist, exclude=frozenset(hist))
    assert plain.recommend([r], k=8)[0].items == con.recommend([r], k=8)[0].items


def test_constraint_rows_come_from_train_phrasings_only(env):
    from systems.semid.constraint import ConstraintSpace

    card = env[1].card
    rows = ConstraintSpace(card).rows(card)
    train = {ph.text for ph in train_phrasings(card)}
    assert rows and {u for u, _ in rows} <= train


def test_tiger_distils_from_a_catalog_teacher_and_keeps_old_cache_keys(env):
    plain, _ = build_system("semid-tiger", {**TIGER, "teacher_args": "epochs=3", "distill": 0.0})
    taught, _ = build_system("semid-tiger", {**TIGER, "teacher": "popularity", "teacher_args": "", "distill": 0.5})
    # a teacher is a training argument; without one (at the teacher_args of that time) the key is the one
    # models had before teachers existed
    assert plain._key(env[1], 0) != taught._key(env[1], 0)
    unset = {k: v for k, v in plain.p.items() if k not in ("teacher", "teacher_args", "distill")}
    assert plain._key(env[1], 0) == type(plain)("semid-tiger", **unset)._key(env[1], 0)
    # the teacher's own arguments are in the key: a model taught by the converged SASRec (the default) never
    # shares an entry with one taught by a 3-epoch SASRec
    converged, _ = build_system("semid-tiger", {**TIGER, "teacher": "sasrec"})
    short, _ = build_system("semid-tiger", {**TIGER, "teacher": "sasrec", "teacher_args": "epochs=3"})
    assert converged.p["teacher_args"] == "epochs=100" and converged._key(env[1], 0) != short._key(env[1], 0)
    taught.fit(env[1], seed=0)
    assert taught.fit_info["teacher"]["system"] == "popularity" and taught.fit_info["cached"] is False
    # the KL term moves the loss: with alpha 0.5 and a teacher unlike the student it is not the plain CE
    from systems.semid import seq as S
    from systems.semid.recipe import CatalogTeacher

    rows = S.windows({"u": ["1", "2", "3", "4"]}, taught.space, prefix=[1], window=6)
    pop, _ = build_system("popularity", {})
    pop.fit(env[1], seed=0)
    with torch.no_grad():
        taught.teacher = CatalogTeacher(pop, taught.space, prefix_len=1, name="popularity")
        a = float(taught._sequence_loss(rows, [0]))
        taught.teacher = None
        b = float(taught._sequence_loss(rows, [0]))
    assert a != pytest.approx(b)


def test_tiger_steering_stage_leaves_lists_without_a_request_unchanged(env):
    plain, _ = build_system("semid-tiger", {**TIGER, "steer_steps": 0})
    plain.fit(env[1], seed=0)
    steered, _ = build_system("semid-tiger", {**TIGER, "steer_steps": 3})
    steered.fit(env[1], seed=0)
    assert steered.fit_info["cached"] is True  # the sequence model is shared, only the stage differs
    assert "steering" in steered.fit_info and "steering" not in plain.fit_info
    hist = ("1", "2", "3")
    r = Request("0", history=hist, exclude=frozenset(hist))
    assert plain.recommend([r], k=8)[0].items == steered.recommend([r], k=8)[0].items
    np.testing.assert_allclose(plain.score_catalog([r]), steered.score_catalog([r]))


def test_constrain_variant_shares_semids_trained_model(env):
    from talkwalk_bench.registry import build_system as build

    a, _ = build("semid", {**SEQ, "base_model": str(env[0])})
    b, _ = build("semid-constrain", {**SEQ, "base_model": str(env[0])})
    assert a._cache_key(env[1], 0) == b._cache_key(env[1], 0)


def test_validation_ndcg_uses_the_held_out_items_rank():
    got = S.ndcg_at_10([["a", "b"], ["c"]], ["b", "z"])
    assert got == pytest.approx((1 / np.log2(3)) / 2)


def test_bad_teacher_args_is_a_one_line_error_before_any_work():
    from talkwalk_bench.errors import BenchError

    with pytest.raises(BenchError, match=r"-S teacher_args=epochs: 'epochs' is not KEY=VALUE") as e:
        build_system("semid", {"teacher_args": "epochs"})
    assert "\n" not in str(e.value)
    with pytest.raises(BenchError, match="nope=1"):
        build_system("semid", {"teacher_args": "nope=1"})


def test_layers_keeps_the_first_decoder_layers_of_the_base_model(env):
    base, _ = env
    from systems.semid.lm import load_base
    from systems.semid.system import keep_layers

    model, _ = load_base(str(base))
    first = model.model.layers[0]
    n = model.config.num_hidden_layers
    assert n >= 2
    keep_layers(model, 1)
    assert len(model.model.layers) == 1 and model.config.num_hidden_layers == 1 and model.model.layers[0] is first
    ids = torch.tensor([[1, 2, 3]])
    assert model(input_ids=ids).logits.shape[-1] == model.config.vocab_size
    keep_layers(model, 8)  # more than it has: all of them
    assert len(model.model.layers) == 1


def test_tiger_item_vectors_are_read_only_once_an_item_is_complete(env):
    t, _ = build_system("semid-tiger", {**TIGER, "item_embed": True})
    t.fit(env[1], seed=0)
    sp = t.space
    toks = [1, *sp.item_tokens("3"), *sp.item_tokens("5"), 2, *sp.item_tokens("7")[:-1]]
    slots = sp.item_slots(np.array([toks]))[0]
    want = np.zeros(len(toks), dtype=np.int64)
    want[sp.m] = sp.index["3"] + 1
    want[2 * sp.m] = sp.index["5"] + 1
    # the partial item after the utterance slot (codes being predicted) gets no vector
    assert slots.tolist() == want.tolist()
    hist = ("1", "2", "3")
    r = Request("0", history=hist, exclude=frozenset(hist))
    first = t.recommend([r], k=8)[0]
    assert len(set(first.items)) == 8 and not set(first.items) & set(hist)
    # the vectors are saved with the model: a cached refit lists the same items
    again, _ = build_system("semid-tiger", {**TIGER, "item_embed": True})
    again.fit(env[1], seed=0)
    assert again.fit_info["cached"] is True and again.recommend([r], k=8)[0].items == first.items
    # and they count: the model without them is another cache entry
    plain, _ = build_system("semid-tiger", {**TIGER, "item_embed": False, "item_head": False})
    assert plain._key(env[1], 0) != t._key(env[1], 0)


def test_semid_item_vectors_train_cache_and_keep_lists_valid(env):
    s = fitted("semid", env, item_embed=True, teacher="", steer_every=0)
    assert s.item_vec is not None and float(s.item_vec.weight.abs().sum()) > 0  # it learned
    hist = ("1", "2", "3")
    r = Request("0", history=hist, exclude=frozenset(hist))
    rank = s.recommend([r], k=10)[0]
    assert len(set(rank.items)) == 10 and not set(rank.items) & set(hist)
    again = fitted("semid", env, item_embed=True, teacher="", steer_every=0)
    assert again.fit_info["cached"] is True and again.recommend([r], k=10)[0].items == rank.items
    plain = fitted("semid", env, item_embed=False, item_head=False, teacher="", steer_every=0)
    assert plain.item_vec is None and plain.fit_info["cache_dir"] != s.fit_info["cache_dir"]


def test_a_reader_cut_from_the_base_model_is_shared_by_retrained_ranking_models(env):
    first = fitted("semid-constrain", env, reader_layers=1, item_embed=False, item_head=False)
    other = fitted("semid-constrain", env, reader_layers=1, item_embed=True)
    assert other.fit_info["cache_dir"] != first.fit_info["cache_dir"]
    assert other.fit_info["reader"]["cached"] is True
    # a reader copied from the ranking model is that model's own
    own = fitted("semid-constrain", env, reader_layers=0, item_embed=True)
    assert own.fit_info["reader"]["cached"] is False


def test_the_reader_starts_from_the_run_seed_and_is_cached_by_its_rows(env, tmp_path, monkeypatch):
    from systems.semid.constraint import ConstraintSpace

    s = fitted("semid-constrain", env, reader_layers=1)

    def read_cold(where, draws):  # a cold cache, in a process whose random state moved on by `draws`
        monkeypatch.setenv("TALKWALK_CACHE_DIR", str(tmp_path / where))
        torch.rand(draws)
        s.fit_info = {}
        reader = s._fit_reader(None, s.tok, env[1], tmp_path / where, 0)
        assert s.fit_info["reader"]["cached"] is False
        return reader.state_dict()

    a, b = read_cold("one", 1), read_cold("two", 997)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # other rows: another reader, never the cached one
    own = ConstraintSpace.reader_rows
    monkeypatch.setattr(ConstraintSpace, "reader_rows",
                        lambda self, *a, **k: own(self, *a, **k) + [("include", "a new way to ask", own(self, *a, **k)[0][2])])
    changed = fitted("semid-constrain", env, reader_layers=1)
    assert changed.fit_info["reader"]["cached"] is False


def test_item_vectors_refuse_settings_where_they_would_never_learn():
    from talkwalk_bench.errors import BenchError

    with pytest.raises(BenchError, match="train_layers=0"):
        build_system("semid", {**SEQ, "item_embed": True, "train_layers": 2})
    build_system("semid", {**SEQ, "item_embed": False, "item_head": False, "train_layers": 2})  # the way out the error names
    build_system("semid", {**SEQ, "item_embed": True, "recipe": "prompt"})  # a whole-sequence argument: ignored there


def test_item_slots_take_one_sequence_or_a_batch():
    sp = toy_space()
    sp.level_tokens = sp.own_tokens(10)
    seq = [1, *sp.item_tokens("c"), *sp.item_tokens("f")[:1]]
    one = sp.item_slots(np.array(seq))
    assert one.shape == (len(seq),) and one.tolist() == [0, 0, sp.index["c"] + 1, 0]
    assert sp.item_slots(np.array([seq, seq])).tolist() == [one.tolist()] * 2


def test_next_items_name_the_item_each_level0_target_begins():
    sp = toy_space()
    sp.level_tokens = sp.own_tokens(10)
    rows = S.windows({"u": list("cafe"), "v": list("bd")}, sp, prefix=[1], window=3, overlap=1)
    ids, att, mask, lv = S.window_batch(rows, list(range(len(rows))), sp.m, 0)
    got = sp.next_items(ids, mask, lv).tolist()
    want = []
    for w in rows:  # the supervised items of each window, in order
        items = sp.items_of(list(w.tokens[1:]))
        want += [sp.index[it] for it in items[(w.first_target - 1) // sp.m :]]
    assert got == want and len(got) == int((lv == 0).sum())


def test_item_head_trains_lists_valid_and_keeps_old_cache_keys(env):
    from talkwalk_bench.errors import BenchError

    with pytest.raises(BenchError, match="item_embed=true"):
        build_system("semid-tiger", {**TIGER, "item_embed": False, "item_head": True})
    with pytest.raises(BenchError, match="item_embed=true"):
        build_system("semid", {**SEQ, "item_embed": False, "item_head": True})
    hist = ("1", "2", "3")
    reqs = [Request("0", history=hist, exclude=frozenset(hist)), Request("1", history=hist, conversation=(Turn("i want horror"),))]
    t, _ = build_system("semid-tiger", {**TIGER, "item_embed": True, "item_head": True, "teacher": "popularity",
                                        "teacher_args": "", "distill": 0.5})
    t.fit(env[1], seed=0)
    s = fitted("semid", env, item_embed=True, item_head=True, teacher="popularity", teacher_args="")
    for sys_ in (t, s):
        for r, rank in zip(reqs, sys_.recommend(reqs, k=8), strict=True):
            assert len(set(rank.items)) == 8 and not set(rank.items) & r.exclude
        lp = sys_.score_catalog(reqs)
        assert np.exp(lp).sum(axis=1) == pytest.approx([1.0, 1.0], abs=1e-4)
    # the head is part of the trained model (its own cache entry); models without it keep their keys
    plain, _ = build_system("semid-tiger", {**TIGER, "item_embed": True, "item_head": False})
    unset = {k: v for k, v in plain.p.items() if k not in ("item_head", "item_mix")}
    assert plain._key(env[1], 0) == type(plain)("semid-tiger", **unset)._key(env[1], 0) != t._key(env[1], 0)
    no_head = fitted("semid", env, item_embed=True, item_head=False, teacher="popularity", teacher_args="")
    assert no_head.fit_info["cache_dir"] != s.fit_info["cache_dir"]
    # item_mix is inference only: the same model, and weight 0 is the code decoder alone
    zero = fitted("semid", env, item_embed=True, item_head=True, teacher="popularity", teacher_args="", item_mix=0.0)
    assert zero.fit_info["cached"] is True and zero.fit_info["cache_dir"] == s.fit_info["cache_dir"]
    assert zero.item_prior.weight == 0.0
