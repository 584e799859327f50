"""Constrained decoding over a prefix trie of valid semantic ids.

``beam_search`` runs the prompt once, then one step per id level over the KV
cache, reordering the cache to follow the surviving beams. At each level only
the codes that extend a valid, non-excluded id are scored; their log-probs are
renormalised over those codes, and an id's score is the sum over its own
tokens (never the end token). Ids are distinct trie leaves, so no invalid or
repeated item can come out.

``item_log_probs`` gives the exact constrained distribution over the whole
catalog by walking the trie level by level in batches.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

Sid = tuple[int, ...]


class PrefixTrie:
    """All valid ids of one fixed length; children and leaf counts per prefix."""

    def __init__(self, sids: Iterable[Sequence[int]]) -> None:
        self.sids: list[Sid] = [tuple(int(c) for c in s) for s in sids]
        if not self.sids:
            raise ValueError("empty trie")
        self.length = len(self.sids[0])
        if any(len(s) != self.length for s in self.sids):
            raise ValueError("all semantic ids must have the same length")
        kids: dict[Sid, set[int]] = defaultdict(set)
        self.count: Counter = Counter()
        for s in self.sids:
            for lv in range(self.length):
                kids[s[:lv]].add(s[lv])
                self.count[s[: lv + 1]] += 1
        self.children: dict[Sid, list[int]] = {p: sorted(c) for p, c in kids.items()}
        self.index = {s: i for i, s in enumerate(self.sids)}

    def is_valid(self, sid: Sequence[int]) -> bool:
        return tuple(sid) in self.index

    def prefixes(self, depth: int) -> list[Sid]:
        return sorted(p for p in self.children if len(p) == depth)


def _excluded_counts(exclude: Iterable[Sid], trie: PrefixTrie) -> Counter:
    out: Counter = Counter()
    for s in exclude:
        if s in trie.index:
            for lv in range(trie.length):
                out[s[: lv + 1]] += 1
    return out


def _log_softmax(x: Any) -> Any:
    import torch

    return torch.log_softmax(x.float(), dim=-1)


def beam_search(
    model: Any,
    prompt_ids: Sequence[int],
    trie: PrefixTrie,
    level_tokens: Sequence[Sequence[int]],
    *,
    k: int,
    beam: int | None = None,
    exclude: Iterable[Sid] = (),
) -> list[tuple[Sid, float]]:
    """Top-``k`` valid ids (best first) with their log-probabilities."""
    import torch

    beam = max(k, beam or k)
    ex = _excluded_counts(exclude, trie)
    tokens = [torch.as_tensor(list(t), dtype=torch.long) for t in level_tokens]

    def open_codes(prefix: Sid) -> list[int]:
        return [c for c in trie.children[prefix] if trie.count[prefix + (c,)] > ex[prefix + (c,)]]

    with torch.no_grad():
        out = model(input_ids=torch.as_tensor([list(prompt_ids)]), use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        logits = out.logits[:, -1, :]
        beams: list[tuple[Sid, float]] = [((), 0.0)]
        for lv in range(trie.length):
            cand: list[tuple[float, int, Sid]] = []
            for b, (prefix, score) in enumerate(beams):
                codes = open_codes(prefix)
                if not codes:
                    continue
                if len(codes) == 1:  # renormalised over one code: log-prob 0, no model call needed
                    cand.append((score, b, prefix + (codes[0],)))
                    continue
                lp = _log_softmax(logits[b, tokens[lv][codes]]).tolist()
                cand.extend((score + v, b, prefix + (c,)) for c, v in zip(codes, lp, strict=False))
            cand.sort(key=lambda t: (-t[0], t[2]))
            keep = cand[: (k if lv == trie.length - 1 else beam)]
            beams = [(p, s) for s, _, p in keep]
            if lv == trie.length - 1:
                break
            if all(len(open_codes(p)) <= 1 for p, _ in beams):
                continue  # the next level is forced everywhere: skip the forward pass
            cache.reorder_cache(torch.as_tensor([b for _, b, _ in keep]))
            step = tokens[lv][[p[-1] for p, _ in beams]][:, None]
            out = model(input_ids=step, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits = out.logits[:, -1, :]
    return beams


def item_log_probs(
    model: Any,
    prompt_ids: Sequence[int],
    trie: PrefixTrie,
    level_tokens: Sequence[Sequence[int]],
    *,
    chunk: int = 32,
) -> np.ndarray:
    """Log-probability of every id in ``trie.sids`` order (sums to 1 in probability).

    Only prefixes with more than one child need the model; each such prefix is
    fed after the cached prompt in batches of ``chunk``, then the cache is
    cropped back to the prompt.
    """
    import torch

    tokens = [torch.as_tensor(list(t), dtype=torch.long) for t in level_tokens]
    logp: dict[Sid, float] = {(): 0.0}
    with torch.no_grad():
        out = model(input_ids=torch.as_tensor([list(prompt_ids)]), use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        root_logits = out.logits[0, -1, :]
        expanded = False
        for lv in range(trie.length):
            prefixes = [p for p in trie.prefixes(lv) if p in logp]
            need = [p for p in prefixes if len(trie.children[p]) > 1]
            dist: dict[Sid, Any] = {}
            if lv == 0:
                if need:
                    dist[()] = root_logits
            elif need:
                if not expanded:
                    cache.batch_repeat_interleave(chunk)
                    expanded = True
                for i in range(0, len(need), chunk):
                    part = need[i : i + chunk]
                    rows = part + [part[-1]] * (chunk - len(part))
                    ids = torch.stack(
                        [torch.stack([tokens[j][p[j]] for j in range(lv)]) for p in rows]
                    )
                    o = model(
                        input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1
                    )
                    cache.crop(-lv)  # drop the fed prefix, keep the prompt
                    for r, p in enumerate(part):
                        dist[p] = o.logits[r, -1, :]
            for p in prefixes:
                kids = trie.children[p]
                if len(kids) == 1:
                    logp[p + (kids[0],)] = logp[p]
                    continue
                lp = _log_softmax(dist[p][tokens[lv][kids]]).tolist()
                for c, v in zip(kids, lp, strict=False):
                    logp[p + (c,)] = logp[p] + v
    return np.array([logp[s] for s in trie.sids], dtype=np.float64)
