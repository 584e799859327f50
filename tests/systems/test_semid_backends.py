"""The outlines (sampling) and vLLM decoders of semid, and the merged-model export, on a tiny Llama."""

from __future__ import annotations

import itertools
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from systems.semid.decode import PrefixTrie, beam_search, item_log_probs  # noqa: E402
from systems.semid.lm import extend_vocabulary  # noqa: E402
from systems.semid.outlines_backend import id_grammar, sample_distinct  # noqa: E402
from systems.semid.tiny import TOY_SIDS, TOY_WIDTHS, tiny_llama, tiny_tokenizer  # noqa: E402
from talkwalk_bench.errors import BenchError, SystemFailure  # noqa: E402
from talkwalk_bench.registry import build_system  # noqa: E402

WIDTHS, SIDS = TOY_WIDTHS, TOY_SIDS


def byte_level_tokenizer():
    # llguidance reads only byte-level/sentencepiece tokenizers; the tiny word-level one
    # decodes the same through a byte-level decoder (its words are ASCII)
    from tokenizers import decoders

    tok = tiny_tokenizer()
    tok.backend_tokenizer.decoder = decoders.ByteLevel()
    return tok


@pytest.fixture(scope="module")
def lm():
    torch.set_num_threads(1)
    tok = byte_level_tokenizer()
    model = tiny_llama(len(tok), seed=1)
    vocab = extend_vocabulary(model, tok, WIDTHS)
    prompt = tok("user history request", add_special_tokens=False)["input_ids"]
    prompt += [vocab["rec"], vocab["sid_start"]]
    return types.SimpleNamespace(
        model=model, tok=tok, vocab=vocab, levels=vocab["levels"], prompt=prompt
    )


def spell(sid, levels):
    return [levels[lv][c] for lv, c in enumerate(sid)]


# ---- the grammar and the distinct-sampling loop (no outlines needed) ----------------------


def test_grammar_accepts_exactly_the_valid_non_excluded_ids(lm):
    llg = pytest.importorskip("llguidance")
    import llguidance.hf

    trie = PrefixTrie(SIDS)
    excl = [SIDS[0], SIDS[5], SIDS[6]]  # (1, 2, *) is now empty: no rule for it
    g = id_grammar(trie, lm.levels, excl)
    assert "n_1_2" not in g and "n_0_0_0" in g
    ltok = llguidance.hf.from_tokenizer(lm.tok, n_vocab=len(lm.tok))
    for sid in itertools.product(*(range(w) for w in WIDTHS)):
        m = llg.LLMatcher(ltok, llg.grammar_from("lark", g))
        ok = m.consume_tokens(spell(sid, lm.levels)) and not m.is_error()
        assert ok == (sid in SIDS and sid not in excl), sid
    with pytest.raises(ValueError):
        id_grammar(trie, lm.levels, SIDS)


def test_sample_distinct_drops_invalid_and_repeated_and_fails_when_unconstrained(lm):
    trie = PrefixTrie(SIDS)
    bad = spell((2, 2, 0, 0), lm.levels)  # not an id
    queue = [
        [(bad, -0.1), (spell(SIDS[3], lm.levels), -2.0), (spell(SIDS[3], lm.levels), -2.0)],
        [(spell(SIDS[1], lm.levels), -0.5), (spell(SIDS[4], lm.levels), -3.0)],
    ]
    seen_grammars = []

    def fake(jobs):
        seen_grammars.extend(g for _, g, _ in jobs)
        return [queue.pop(0) for _ in jobs]

    got = sample_distinct(fake, trie, lm.levels, [[SIDS[4]]], k=2)[0]
    # SIDS[4] is excluded, the invalid id and the repeat are dropped; best score first
    assert got == [(SIDS[1], -0.5), (SIDS[3], -2.0)]
    # the second round's grammar no longer admits the id returned in the first
    assert f"<[{lm.levels[3][0]}]>" in seen_grammars[0]
    assert "n_0_3" in seen_grammars[0] and "n_0_3" not in seen_grammars[1]
    with pytest.raises(SystemFailure):
        sample_distinct(lambda jobs: [[(bad, 0.0)] for _ in jobs], trie, lm.levels, [[]], k=1)


def test_sample_distinct_caps_samples_and_ranks_unscored_by_sampling_order(lm):
    trie = PrefixTrie(SIDS)
    asked = []

    def fake(jobs):  # one new id per round, no scores
        out = []
        for _, _, n in jobs:
            asked.append(n)
            out.append([(spell(SIDS[10 - len(asked)], lm.levels), None)] * n)
        return out

    got = sample_distinct(fake, trie, lm.levels, [[]], k=3, max_samples=4)[0]
    assert [s for s, _ in got] == [SIDS[9], SIDS[8], SIDS[7]]
    assert [v for _, v in got] == [0.0, -1.0, -2.0]
    assert asked == [4, 4, 2]


# ---- outlines ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sampler(lm):
    pytest.importorskip("outlines")
    pytest.importorskip("llguidance")
    from systems.semid.outlines_backend import OutlinesSampler

    trie = PrefixTrie(SIDS)
    return OutlinesSampler(lm.model, lm.tok, trie, lm.levels, seed=0)


def test_outlines_scores_are_the_exact_constrained_log_probs(lm, sampler):
    trie = sampler.trie
    lp = item_log_probs(lm.model, lm.prompt, trie, lm.levels)
    got = sampler.decode([lm.prompt], [[]], k=6)[0]
    sids = [s for s, _ in got]
    assert len(set(sids)) == 6 and all(trie.is_valid(s) for s in sids)
    want = [lp[trie.index[s]] for s in sids]
    np.testing.assert_allclose([v for _, v in got], want, atol=1e-4)
    assert [v for _, v in got] == sorted((v for _, v in got), reverse=True)
    # the same request gives the same list (per-request seed)
    assert sampler.decode([lm.prompt], [[]], k=6)[0] == got


def test_outlines_never_returns_invalid_repeated_or_excluded_ids_when_pushed_off(lm, sampler):
    levels, trie = lm.levels, sampler.trie
    head = lm.model.get_output_embeddings().weight
    with torch.no_grad():
        saved = head.clone()
        for t in (levels[0][2], levels[1][2], levels[2][0], levels[3][1]):
            head[t] += 5.0 * head.abs().max()  # codes that form no valid id
        head[: lm.vocab["n_old"]] += 3.0 * head.abs().max()  # plain text and EOS
    try:
        for k, excl in itertools.product((1, 3, 10), ((), (SIDS[7], SIDS[0], SIDS[1]))):
            got = sampler.decode([lm.prompt, lm.prompt[-3:]], [excl, excl], k=k)
            for res in got:
                ids = [s for s, _ in res]
                assert all(trie.is_valid(s) for s in ids)
                assert len(set(ids)) == len(ids) == min(k, len(SIDS) - len(excl))
                assert not set(ids) & set(excl)
    finally:
        with torch.no_grad():
            head.copy_(saved)


def test_system_dispatches_to_outlines(lm):
    pytest.importorskip("outlines")
    from systems.semid.ids import SemanticIdTable
    from talkwalk_bench.types import Request

    items = [f"i{j}" for j in range(len(SIDS))]
    sysm, _ = build_system("semid", {"decoder": "outlines", "infer_bf16": False, "max_len": 64})
    sysm.model, sysm.tok = lm.model, lm.tok
    sysm.table = SemanticIdTable(tuple(items), np.array(SIDS), WIDTHS)
    sysm.trie, sysm.level_tokens = PrefixTrie(SIDS), lm.levels
    reqs = [Request("u", history=("i1", "i2"), exclude=frozenset({"i1", "i2", "i9"})), Request("v")]
    out = sysm.recommend(reqs, k=8)
    assert len(out[0].items) == 7 and not set(out[0].items) & {"i1", "i2", "i9"}
    assert len(set(out[1].items)) == 8 and set(out[1].items) <= set(items)
    for r in out:
        assert [sysm.table.item(s) for s in r.trace["semantic_ids"]] == list(r.items)


# ---- decoder argument, cache key, vLLM ------------------------------------------------


def test_decoder_argument_checked_and_cache_key_unchanged():
    data = types.SimpleNamespace(key="ml-100k/loo")
    with pytest.raises(BenchError, match="decoder=beam"):
        build_system("semid", {"decoder": "beam"})
    trie_sys, _ = build_system("semid")
    keys = {trie_sys._cache_key(data, 0)}
    if _have("outlines") and _have("llguidance"):
        keys.add(build_system("semid", {"decoder": "outlines"})[0]._cache_key(data, 0))
    assert len(keys) == 1  # the decoder does not move the training cache
    if not _have("vllm"):
        with pytest.raises(BenchError, match="GPU host"):
            build_system("semid", {"decoder": "vllm"})


def _have(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def test_export_merged_round_trips(lm, tmp_path):
    peft = pytest.importorskip("peft")
    import copy

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from systems.semid.vllm_backend import export_merged

    base = copy.deepcopy(lm.model)
    cfg = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj", "up_proj"], lora_alpha=8)
    model = peft.get_peft_model(base, cfg)
    torch.manual_seed(3)
    with torch.no_grad():  # LoRA B starts at zero; make the adapter change the outputs
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    model.eval()
    system = types.SimpleNamespace(model=model, tok=lm.tok, table=None)
    folder = export_merged(system, tmp_path / "merged")
    assert type(system.model).__name__ == "PeftModel"  # merged on a copy
    back = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    codes = [f"<|sid_{lv}_{c}|>" for lv, w in enumerate(WIDTHS) for c in range(w)]
    assert tok.convert_tokens_to_ids(codes) == [t for lvl in lm.levels for t in lvl]
    assert tok(lm.tok.decode(lm.prompt), add_special_tokens=False)["input_ids"][-2:] == [
        lm.vocab["rec"],
        lm.vocab["sid_start"],
    ]
    ids = torch.tensor([lm.prompt + spell(SIDS[5], lm.levels)])
    with torch.no_grad():
        want = model(input_ids=ids).logits
        unmerged_base = lm.model(input_ids=ids).logits
        got = back(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(want, unmerged_base, atol=1e-3)  # the adapter mattered
    trie = PrefixTrie(SIDS)
    ref = beam_search(copy.deepcopy(model).merge_and_unload(), lm.prompt, trie, lm.levels, k=5)
    new = beam_search(back, lm.prompt, trie, lm.levels, k=5)
    assert [s for s, _ in new] == [s for s, _ in ref]
    np.testing.assert_allclose([v for _, v in new], [v for _, v in ref], atol=1e-4)


def test_vllm_sampler_on_an_exported_model(lm, tmp_path):
    pytest.importorskip("vllm")
    from systems.semid.vllm_backend import VllmSampler, export_merged

    folder = export_merged(types.SimpleNamespace(model=lm.model, tok=lm.tok), tmp_path / "m")
    trie = PrefixTrie(SIDS)
    s = VllmSampler(folder, trie, lm.levels, gpu_memory_utilization=0.2)
    for res in s.decode([lm.prompt], [[SIDS[0]]], k=5):
        ids = [sid for sid, _ in res]
        assert len(set(ids)) == 5 and all(trie.is_valid(x) for x in ids) and SIDS[0] not in ids
