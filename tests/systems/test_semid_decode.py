"""Constrained decoding: trie, KV-cache beam search, exact catalog distribution."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from systems.semid.decode import (  # noqa: E402
    ItemPrior,
    PrefixTrie,
    beam_search,
    beam_search_batch,
    item_log_probs,
)
from systems.semid.tiny import TOY_SIDS, TOY_WIDTHS, tiny_llama  # noqa: E402

# the toy 4-level ids of tiny.py; the first 20 base tokens are "text"
WIDTHS, SIDS = TOY_WIDTHS, TOY_SIDS
N_TEXT = 20


def level_tokens() -> list[list[int]]:
    out, pos = [], N_TEXT
    for w in WIDTHS:
        out.append(list(range(pos, pos + w)))
        pos += w
    return out


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return tiny_llama(N_TEXT + sum(WIDTHS), seed=1)


def brute_force(model, prompt, trie, toks):
    """Renormalised log-probs from full forwards over prompt + id, no cache."""
    out = []
    for s in trie.sids:
        total = 0.0
        for lv in range(trie.length):
            kids = trie.children[s[:lv]]
            if len(kids) == 1:
                continue
            ids = torch.tensor([prompt + [toks[j][s[j]] for j in range(lv)]])
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, -1]
            lp = torch.log_softmax(logits[[toks[lv][c] for c in kids]].float(), -1)
            total += float(lp[kids.index(s[lv])])
        out.append(total)
    return np.array(out)


def test_trie_children_and_validity():
    trie = PrefixTrie(SIDS)
    assert trie.children[()] == [0, 1, 2]
    assert trie.children[(2, 1, 0)] == [0, 1]
    assert (
        trie.is_valid((1, 2, 3, 0))
        and not trie.is_valid((1, 2, 3, 1))
        and not trie.is_valid((2, 2, 0, 0))
    )


def test_exact_distribution_matches_brute_force_and_sums_to_one(model):
    trie, toks, prompt = PrefixTrie(SIDS), level_tokens(), [3, 5, 7, 11]
    lp = item_log_probs(model, prompt, trie, toks, chunk=3)
    assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(lp, brute_force(model, prompt, trie, toks), atol=1e-4)


def test_wide_beam_equals_exact_top_k(model):
    trie, toks, prompt = PrefixTrie(SIDS), level_tokens(), [4, 2, 9]
    lp = item_log_probs(model, prompt, trie, toks)
    got = beam_search(model, prompt, trie, toks, k=5, beam=len(SIDS))
    want = [trie.sids[i] for i in np.argsort(-lp, kind="stable")[:5]]
    assert [s for s, _ in got] == want
    np.testing.assert_allclose([v for _, v in got], np.sort(lp)[::-1][:5], atol=1e-4)


def test_no_invalid_or_duplicate_even_when_model_prefers_invalid_ids(model):
    # push the model hard towards codes that form no valid id: (2, 2, *, *) and level-4 code 1
    toks = level_tokens()
    head = model.get_output_embeddings().weight
    with torch.no_grad():
        saved = head.clone()
        for t in (toks[0][2], toks[1][2], toks[2][0], toks[3][1]):
            head[t] += 5.0 * head.abs().max()
        # and towards plain text tokens, which are never ids
        head[:N_TEXT] += 3.0 * head.abs().max()
    try:
        trie = PrefixTrie(SIDS)
        for prompt, k, excl in itertools.product(
            ([1, 2, 3], [7] * 9), (1, 3, 7), ((), (SIDS[7], SIDS[0]))
        ):
            got = beam_search(model, prompt, trie, toks, k=k, beam=k, exclude=excl)
            ids = [s for s, _ in got]
            assert all(trie.is_valid(s) for s in ids)
            assert len(set(ids)) == len(ids) == min(k, len(SIDS) - len(excl))
            assert not set(ids) & set(excl)
            scores = [v for _, v in got]
            assert scores == sorted(scores, reverse=True)
    finally:
        with torch.no_grad():
            head.copy_(saved)


def test_batched_beam_search_matches_one_at_a_time(model):
    # prompts of different lengths (left padding), different exclusions, forced levels
    trie, toks = PrefixTrie(SIDS), level_tokens()
    prompts = [[1, 2, 3], [7] * 9, [4], [5, 6, 8, 9, 10, 11]]
    excl = [(), (SIDS[7], SIDS[0]), (SIDS[2],), SIDS[:8]]
    batched = beam_search_batch(model, prompts, trie, toks, k=4, beam=5, excludes=excl)
    for p, e, got in zip(prompts, excl, batched, strict=True):
        alone = beam_search(model, p, trie, toks, k=4, beam=5, exclude=e)
        assert [s for s, _ in got] == [s for s, _ in alone]
        np.testing.assert_allclose([v for _, v in got], [v for _, v in alone], atol=1e-4)
    # the last request has only 2 items left
    assert sorted(s for s, _ in batched[3]) == sorted(SIDS[8:])


def test_wide_batched_beam_equals_exact_top_k_with_skipped_levels(model):
    # level 2 is forced for every id here, so its token is fed together with level 3's
    sids = [(0, 0, 1, 0), (0, 0, 1, 1), (1, 2, 0, 0), (1, 2, 0, 1), (2, 1, 3, 0)]
    trie, toks = PrefixTrie(sids), level_tokens()
    for prompt in ([3, 1], [9, 9, 9, 2]):
        lp = item_log_probs(model, prompt, trie, toks)
        np.testing.assert_allclose(lp, brute_force(model, prompt, trie, toks), atol=1e-4)
        got = beam_search_batch(model, [prompt], trie, toks, k=5, beam=5)[0]
        want = [trie.sids[i] for i in np.argsort(-lp, kind="stable")]
        assert [s for s, _ in got] == want
        np.testing.assert_allclose([v for _, v in got], np.sort(lp)[::-1], atol=1e-4)


def _prior(weight: float, seed: int = 3) -> ItemPrior:
    """A fixed item head: random vectors over the toy ids, read from the prompt's last hidden state."""
    g = torch.Generator().manual_seed(seed)
    vecs = torch.randn(len(SIDS), 32, generator=g)  # one per column
    cols = {s: i for i, s in enumerate(reversed(SIDS))}  # columns in another order than the trie's
    return ItemPrior(lambda h: h.float() @ vecs.T, cols, weight)


def test_item_prior_is_a_product_of_experts_that_beam_search_ranks_exactly(model):
    trie, toks, prompt = PrefixTrie(SIDS), level_tokens(), [4, 2, 9]
    plain = item_log_probs(model, prompt, trie, toks)
    prior = _prior(2.0)
    both = item_log_probs(model, prompt, trie, toks, item_prior=prior)
    assert np.exp(both).sum() == pytest.approx(1.0, abs=1e-5)
    with torch.no_grad():
        h = model.base_model(input_ids=torch.tensor([prompt])).last_hidden_state[:, -1]
    head = prior.log_probs(h, trie)[0]
    assert np.exp(head).sum() == pytest.approx(1.0, abs=1e-5)
    # exactly p_codes x p_items^weight, renormalised
    want = plain + 2.0 * head
    np.testing.assert_allclose(both, want - np.log(np.exp(want).sum()), atol=1e-4)
    assert np.abs(both - plain).max() > 0.1  # the head does move the distribution
    # a beam as wide as the catalog returns the exact product ranking; excluded ids never come out
    got = beam_search_batch(model, [prompt, prompt], trie, toks, k=6, beam=len(SIDS), item_prior=prior,
                            excludes=[(), (SIDS[int(np.argmax(both))],)])
    assert [s for s, _ in got[0]] == [trie.sids[i] for i in np.argsort(-both, kind="stable")[:6]]
    assert SIDS[int(np.argmax(both))] not in [s for s, _ in got[1]]
    # weight 0 is the code decoder alone
    zero = beam_search_batch(model, [prompt], trie, toks, k=6, beam=len(SIDS), item_prior=_prior(0.0))[0]
    assert [s for s, _ in zero] == [trie.sids[i] for i in np.argsort(-plain, kind="stable")[:6]]


def _level_logp(model, prompt, trie, toks, depth):
    """Each id's renormalised code log-prob over its first ``depth`` levels only (brute force)."""
    out = []
    for s in trie.sids:
        total = 0.0
        for lv in range(depth):
            kids = trie.children[s[:lv]]
            if len(kids) == 1:
                continue
            ids = torch.tensor([prompt + [toks[j][s[j]] for j in range(lv)]])
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, -1]
            total += float(torch.log_softmax(logits[[toks[lv][c] for c in kids]].float(), -1)[kids.index(s[lv])])
        out.append(total)
    return np.array(out)


def test_lm_levels_leaves_deeper_levels_to_the_item_prior_without_feeding_them(model):
    trie, toks, prompt, prior = PrefixTrie(SIDS), level_tokens(), [4, 2, 9], _prior(2.0)
    with torch.no_grad():
        h = model.base_model(input_ids=torch.tensor([prompt])).last_hidden_state[:, -1]
    head = prior.log_probs(h, trie)[0]
    for depth in (1, 2):
        got = item_log_probs(model, prompt, trie, toks, item_prior=prior, lm_levels=depth)
        want = _level_logp(model, prompt, trie, toks, depth) + 2.0 * head
        np.testing.assert_allclose(got, want - np.log(np.exp(want).sum()), atol=1e-4)
        # the beam search ranks that same product exactly, and feeds the model no deeper than ``depth``
        calls = []
        hook = model.base_model.register_forward_hook(lambda m, a, kw, out: calls.append(1), with_kwargs=True)
        try:
            ranked = beam_search_batch(model, [prompt], trie, toks, k=6, beam=len(SIDS), item_prior=prior, lm_levels=depth)[0]
        finally:
            hook.remove()
        assert [s for s, _ in ranked] == [trie.sids[i] for i in np.argsort(-got, kind="stable")[:6]]
        assert len(calls) <= depth  # the prompt, then one step per scored level after the first
    assert len(calls) == 2 and not np.allclose(got, item_log_probs(model, prompt, trie, toks, item_prior=prior))
    with pytest.raises(ValueError, match="item prior"):
        beam_search_batch(model, [prompt], trie, toks, k=3, lm_levels=1)
