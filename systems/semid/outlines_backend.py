"""Sampling decoder through outlines: an llguidance grammar over the token ids of the valid ids.

``-S decoder=outlines``. The grammar (``id_grammar``) is the prefix trie of the
valid, non-excluded ids written as lark rules whose terminals are token ids
(``<[1234]>``), so it does not depend on how the tokenizer spells the added
tokens (regexes over text do not work with them: the tokenizer spells them
out in pieces). outlines' ``LLGuidanceLogitsProcessor`` masks the logits of a
transformers ``generate`` call with it.

This is a *sampling* decoder: outlines' processors keep one matcher per row
and do not follow the row reordering of beam search, so beams are not
supported. A top-``k`` list is built by ``sample_distinct``: draw samples
under the grammar, keep the new distinct ids, rebuild the grammar without the
ids already returned, and repeat; every round adds at least one item, so at
most ``k`` rounds. The list is sorted by score.

Scores: each returned id's log-probability under the model, renormalised at
every level over the valid continuations that still lead to a non-excluded
item (the same quantity as ``decode.item_log_probs``; the ids already returned
are not removed from it), computed from the raw logits of the sampled steps.

``sample_distinct`` and ``id_grammar`` import nothing heavy; ``vllm_backend``
reuses them.
"""

from __future__ import annotations

import importlib.util
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from systems.semid.decode import PrefixTrie, Sid, _excluded_counts
from talkwalk_bench.errors import BenchError, SystemFailure

# one sampling job: (request index, grammar, number of samples)
Job = tuple[int, str, int]
# what a sampler returns per job: (generated token ids, score or None) per sample
Samples = list[tuple[Sequence[int], float | None]]


def check_available() -> None:
    """Raise a one-line BenchError when outlines or llguidance is missing (nothing is imported)."""
    missing = [m for m in ("outlines", "llguidance") if importlib.util.find_spec(m) is None]
    if missing:
        raise BenchError(
            f"-S decoder=outlines needs {' and '.join(missing)}: "
            "pip install 'outlines>=1.3' llguidance (see docs/semid.md, Decoding)"
        )


def id_grammar(
    trie: PrefixTrie, level_tokens: Sequence[Sequence[int]], exclude: Iterable[Sid] = ()
) -> str:
    """A lark grammar (llguidance dialect) whose sentences are the token sequences of the valid ids.

    Excluded ids are left out; a prefix whose every item is excluded gets no rule.
    Raises ``ValueError`` when nothing is left.
    """
    ex = _excluded_counts(exclude, trie)

    def name(prefix: Sid) -> str:
        return "start" if not prefix else "n_" + "_".join(map(str, prefix))

    def open_codes(prefix: Sid) -> list[int]:
        return [c for c in trie.children[prefix] if trie.count[prefix + (c,)] > ex[prefix + (c,)]]

    if not open_codes(()):
        raise ValueError("every id is excluded")
    lines, todo = [], [()]
    while todo:
        prefix = todo.pop()
        lv, alts = len(prefix), []
        for c in open_codes(prefix):
            tok = f"<[{int(level_tokens[lv][c])}]>"
            if lv + 1 < trie.length:
                alts.append(f"{tok} {name(prefix + (c,))}")
                todo.append(prefix + (c,))
            else:
                alts.append(tok)
        lines.append(f"{name(prefix)}: {' | '.join(alts)}")
    return "\n".join(lines) + "\n"


def tokens_to_sid(
    tokens: Sequence[int], level_tokens: Sequence[Sequence[int]], trie: PrefixTrie
) -> Sid | None:
    """The valid id spelled by ``tokens`` (the first ``trie.length`` of them), else None."""
    if len(tokens) < trie.length:
        return None
    sid = []
    for lv in range(trie.length):
        try:
            sid.append(list(level_tokens[lv]).index(int(tokens[lv])))
        except ValueError:
            return None
    s = tuple(sid)
    return s if trie.is_valid(s) else None


def sample_distinct(
    sample: Callable[[list[Job]], list[Samples]],
    trie: PrefixTrie,
    level_tokens: Sequence[Sequence[int]],
    excludes: Sequence[Iterable[Sid]],
    *,
    k: int,
    oversample: int = 2,
    max_samples: int = 64,
) -> list[list[tuple[Sid, float]]]:
    """Top-``k`` distinct, valid, non-excluded ids per request, by repeated grammar-constrained sampling.

    ``sample(jobs)`` draws ``n`` completions of request ``i`` under ``grammar``
    for each job ``(i, grammar, n)``. Each round asks, for every unfinished
    request, for ``oversample`` x the missing count (at most ``max_samples``)
    under a grammar without the excluded and already returned ids. Results
    are sorted by score (best first); when a sample has no score, the list
    keeps the sampling order with score ``-rank``. A round in which a request
    gets no new valid id means the grammar was not enforced: ``SystemFailure``.
    """
    n = len(excludes)
    banned = [{s for s in map(tuple, e) if trie.is_valid(s)} for e in excludes]
    want = [min(k, len(trie.sids) - len(b)) for b in banned]
    found: list[list[tuple[Sid, float | None]]] = [[] for _ in range(n)]
    while True:
        todo = [i for i in range(n) if len(found[i]) < want[i]]
        if not todo:
            break
        jobs = [
            (
                i,
                id_grammar(trie, level_tokens, banned[i]),
                min(max_samples, oversample * (want[i] - len(found[i]))),
            )
            for i in todo
        ]
        for (i, _, _), got in zip(jobs, sample(jobs), strict=True):
            before = len(found[i])
            for toks, score in got:
                sid = tokens_to_sid(toks, level_tokens, trie)
                if sid is None or sid in banned[i] or len(found[i]) >= want[i]:
                    continue
                banned[i].add(sid)
                found[i].append((sid, score))
            if len(found[i]) == before:
                raise SystemFailure(
                    "constrained sampling returned no new valid id: the grammar was not "
                    "enforced (check the tokenizer/vocabulary size), or use -S decoder=trie"
                )
    out = []
    for f in found:
        if all(score is not None for _, score in f):
            f = sorted(f, key=lambda t: (-t[1], t[0]))
            out.append([(sid, float(score)) for sid, score in f])
        else:  # rank-based: sampling order, score -rank
            out.append([(sid, -float(j)) for j, (sid, _) in enumerate(f)])
    return out


def renormalised_score(
    step_logits: Sequence[Any],
    sid: Sid,
    trie: PrefixTrie,
    level_tokens: Sequence[Sequence[int]],
    excluded: Any,
) -> float:
    """Sum over levels of log-softmax of the raw logits over the open codes (``decode`` semantics).

    ``step_logits[lv]`` is the full-vocabulary logit vector before level ``lv``'s token;
    ``excluded`` is ``decode._excluded_counts`` of the request's exclusions.
    """
    import torch

    total = 0.0
    for lv in range(trie.length):
        prefix = sid[:lv]
        codes = [
            c for c in trie.children[prefix] if trie.count[prefix + (c,)] > excluded[prefix + (c,)]
        ]
        if len(codes) <= 1:
            continue
        toks = torch.as_tensor([level_tokens[lv][c] for c in codes])
        lp = torch.log_softmax(step_logits[lv][toks].float(), dim=-1)
        total += float(lp[codes.index(sid[lv])])
    return total


class OutlinesSampler:
    """``decode(prompts, excludes, k)`` with outlines' llguidance processor on a transformers model.

    Same result shape as ``decode.beam_search_batch``. Each request is sampled
    on its own (the grammar differs per request); the random seed of a
    request is derived from its prompt and ``seed``, so results do not depend
    on batching.
    """

    def __init__(
        self,
        model: Any,
        tok: Any,
        trie: PrefixTrie,
        level_tokens: Sequence[Sequence[int]],
        *,
        seed: int = 0,
        oversample: int = 2,
    ) -> None:
        check_available()
        import llguidance.hf

        self.model, self.tok, self.trie = model, tok, trie
        self.level_tokens = [list(t) for t in level_tokens]
        self.seed, self.oversample = seed, oversample
        n_vocab = model.get_output_embeddings().weight.shape[0]
        try:
            self.llg_tok = llguidance.hf.from_tokenizer(tok, n_vocab=n_vocab)
        except ValueError as e:  # e.g. a tokenizer without a byte-level/sentencepiece decoder
            raise BenchError(
                f"-S decoder=outlines: llguidance cannot read this tokenizer ({e}); use -S decoder=trie"
            ) from e

    def _processor(self, grammar: str) -> Any:
        import llguidance
        from outlines.backends.llguidance import LLGuidanceLogitsProcessor

        return LLGuidanceLogitsProcessor(
            llguidance.grammar_from("lark", grammar), self.llg_tok, "torch"
        )

    def decode(
        self,
        prompts: Sequence[Sequence[int]],
        excludes: Sequence[Iterable[Sid]],
        *,
        k: int,
    ) -> list[list[tuple[Sid, float]]]:
        excludes = [list(e) for e in excludes]
        ex_counts = [_excluded_counts(e, self.trie) for e in excludes]
        rounds = [0] * len(prompts)

        def sample(jobs: list[Job]) -> list[Samples]:
            out = []
            for i, grammar, n in jobs:
                rounds[i] += 1
                out.append(self._sample(prompts[i], grammar, n, ex_counts[i], rounds[i]))
            return out

        return sample_distinct(
            sample, self.trie, self.level_tokens, excludes, k=k, oversample=self.oversample
        )

    def _sample(
        self, prompt: Sequence[int], grammar: str, n: int, excluded: Any, round_no: int
    ) -> Samples:
        import torch
        from transformers import LogitsProcessorList

        L = self.trie.length
        ids = torch.as_tensor([list(prompt)], dtype=torch.long)
        key = zlib.crc32(repr((self.seed, list(prompt), round_no)).encode())
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(key)
            out = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                logits_processor=LogitsProcessorList([self._processor(grammar)]),
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                repetition_penalty=1.0,
                num_return_sequences=n,
                max_new_tokens=L,
                return_dict_in_generate=True,
                output_logits=True,
                pad_token_id=self.tok.pad_token_id,
            )
        gen = out.sequences[:, ids.shape[1] :].tolist()
        res: Samples = []
        for r, toks in enumerate(gen):
            sid = tokens_to_sid(toks, self.level_tokens, self.trie)
            score = None
            if sid is not None and len(out.logits) >= L:
                score = renormalised_score(
                    [out.logits[lv][r] for lv in range(L)],
                    sid,
                    self.trie,
                    self.level_tokens,
                    excluded,
                )
            res.append((toks, score))
        return res
