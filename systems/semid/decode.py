"""Constrained decoding over a prefix trie of valid semantic ids.

``beam_search_batch`` runs the (left-padded) prompts once, then one step per id level over the KV
cache, reordering the cache to follow the surviving beams. At each level only
the codes that extend a valid, non-excluded id are scored; their log-probs are
renormalised over those codes, and an id's score is the sum over its own
tokens (never the end token). Ids are distinct trie leaves, so no invalid or
repeated item can come out.

``item_log_probs`` gives the exact constrained distribution over the whole
catalog by walking the trie level by level in batches.

Both take an optional ``ItemPrior``: a second, item-level distribution read
from the prompt's last hidden state (a model's item head). An id's score is
then ``log p_codes(id) + weight x log p_items(id)``, a product of the two
experts; during the beam search a prefix is ranked by its code log-prob plus
``weight x`` the log of the item head's mass under it (the same quantity at a
leaf), so the levels before the last already look ahead to the items.
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


class ItemPrior:
    """An item-level log-distribution to multiply into the code decoder's (see the module docstring).

    ``scores(h)`` maps the prompt's last hidden states [n, d] to item logits [n, N]
    in some column order; ``col_of`` gives each id's column; ``weight`` scales
    the log-probs.
    """

    def __init__(self, scores: Any, col_of: dict[Sid, int], weight: float = 1.0) -> None:
        self.scores, self.col_of, self.weight = scores, col_of, float(weight)

    def tables(self, trie: PrefixTrie) -> tuple[np.ndarray, list[np.ndarray], list[dict[Sid, int]]]:
        """(column of each trie id, prefix group of each id per depth 1..L, group of each prefix), memoised per trie."""
        memo = trie.__dict__.setdefault("_prior_tables", {})
        key = id(self.col_of)
        if key not in memo:
            cols = np.array([self.col_of[s] for s in trie.sids], dtype=np.int64)
            groups, index = [], []
            for d in range(1, trie.length + 1):
                ix: dict[Sid, int] = {}
                groups.append(np.array([ix.setdefault(s[:d], len(ix)) for s in trie.sids], dtype=np.int64))
                index.append(ix)
            memo[key] = (cols, groups, index)
        return memo[key]

    def log_probs(self, h: Any, trie: PrefixTrie, excludes: Sequence[Iterable[Sid]] | None = None) -> np.ndarray:
        """[n, len(trie.sids)]: the item head's log-distribution over the trie's ids (excluded ids -inf)."""
        import torch

        cols, _, _ = self.tables(trie)
        with torch.inference_mode():
            lg = self.scores(h).float()[:, torch.as_tensor(cols)]
            for r, ex in enumerate(excludes or []):
                drop = [trie.index[s] for s in ex if s in trie.index]
                if drop:
                    lg[r, drop] = float("-inf")
            return torch.log_softmax(lg, dim=-1).numpy().astype(np.float64)

    def prefix_masses(self, lp: np.ndarray, trie: PrefixTrie) -> list[tuple[dict[Sid, int], np.ndarray]]:
        """Per depth (1..L): (each prefix's column, [n, prefixes] ``weight x`` log of the head's mass
        under each prefix, one row per request)."""
        _, groups, index = self.tables(trie)
        top = lp.max(axis=1, keepdims=True)
        p = np.exp(lp - top)
        out = []
        for g, ix in zip(groups, index, strict=True):
            m = np.zeros((len(lp), len(ix)))
            for r in range(len(lp)):
                m[r] = np.bincount(g, weights=p[r], minlength=len(ix))
            with np.errstate(divide="ignore"):
                out.append((ix, self.weight * (np.log(m) + top)))
        return out


def _excluded_counts(exclude: Iterable[Sid], trie: PrefixTrie) -> Counter:
    out: Counter = Counter()
    for s in exclude:
        if s in trie.index:
            for lv in range(trie.length):
                out[s[: lv + 1]] += 1
    return out


def _head(model: Any) -> tuple[Any, Any, Any]:
    """(the transformer body, LM-head weight, LM-head bias or None).

    Logits are ``hidden @ W.T (+ b)`` (Llama, Qwen, SmolLM); computing them only
    for the rows of ``W`` that the trie allows replaces the full-vocabulary
    projection.
    """
    head = model.get_output_embeddings()
    return model.base_model, head.weight, getattr(head, "bias", None)


def _logits(h: Any, weight: Any, bias: Any, toks: Any) -> Any:
    out = h @ weight[toks].T
    if bias is not None:
        out = out + bias[toks]
    return out.float()


def _pad_left(prompts: Sequence[Sequence[int]], pad: int = 0) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, width - len(p) :] = torch.as_tensor(list(p))
            mask[i, width - len(p) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


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
    """Top-``k`` valid ids (best first) with their log-probabilities, for one prompt."""
    return beam_search_batch(
        model, [prompt_ids], trie, level_tokens, k=k, beam=beam, excludes=[exclude]
    )[0]


def beam_search_batch(
    model: Any,
    prompts: Sequence[Sequence[int]],
    trie: PrefixTrie,
    level_tokens: Sequence[Sequence[int]],
    *,
    k: int,
    beam: int | None = None,
    excludes: Sequence[Iterable[Sid]] | None = None,
    prompt_embeds: Any = None,
    item_prior: ItemPrior | None = None,
    lm_levels: int | None = None,
) -> list[list[tuple[Sid, float]]]:
    """Beam search for several prompts at once (left-padded, one KV cache).

    ``prompt_embeds`` (optional, [n, width, d], left-padded like the prompts)
    replaces the prompts' token embeddings in the prefill, for models that
    take a vector (an utterance embedding) at some prompt position.

    Each request keeps its own ``beam`` hypotheses; all of them share the
    batched forward passes. Levels where every hypothesis has one open
    continuation are not fed; their tokens are fed with the next level that
    needs the model. With ``item_prior`` the hypotheses are ranked as the
    module docstring says, and an id's score is the product-of-experts one.

    ``lm_levels`` (with ``item_prior`` only): the model scores the first
    ``lm_levels`` levels; the codes of deeper levels are left to the item
    prior alone (code log-prob 0), so their forward passes are never run.
    """
    import torch

    beam = max(k, beam or k)
    n = len(prompts)
    n_lm = trie.length if lm_levels is None else int(lm_levels)
    if n_lm < trie.length and item_prior is None:
        raise ValueError("lm_levels below the id length needs an item prior to score the deeper levels")
    ex = [_excluded_counts(e, trie) for e in (excludes or [()] * n)]
    tokens = [torch.as_tensor(list(t), dtype=torch.long) for t in level_tokens]
    body, weight, bias = _head(model)

    def open_codes(r: int, prefix: Sid) -> list[int]:
        return [
            c for c in trie.children[prefix] if trie.count[prefix + (c,)] > ex[r][prefix + (c,)]
        ]

    with torch.inference_mode():
        ids, mask, pos = _pad_left(prompts)
        if prompt_embeds is not None:
            out = body(inputs_embeds=prompt_embeds, attention_mask=mask, position_ids=pos, use_cache=True)
        else:
            out = body(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        cache, h = out.past_key_values, out.last_hidden_state[:, -1, :]
        last_pos = pos[:, -1]
        mass = None
        if item_prior is not None:
            mass = item_prior.prefix_masses(item_prior.log_probs(h, trie, excludes), trie)
        rows: list[tuple[int, Sid, float]] = [(r, (), 0.0) for r in range(n)]
        fed = 0  # levels already fed to the model
        for lv in range(trie.length):
            opens = [open_codes(r, p) for r, p, _ in rows]
            multi = [i for i, o in enumerate(opens) if len(o) > 1] if lv < n_lm else []
            lp = None
            if multi:
                lg = _logits(h[multi], weight, bias, tokens[lv])  # [m, width]
                allowed = torch.full_like(lg, float("-inf"))
                for j, i in enumerate(multi):
                    allowed[j, opens[i]] = 0.0
                lp = torch.log_softmax(lg + allowed, dim=-1).tolist()
            at = {i: j for j, i in enumerate(multi)}
            cand: list[list[tuple[float, float, int, Sid]]] = [[] for _ in range(n)]
            for i, ((r, prefix, score), codes) in enumerate(zip(rows, opens, strict=True)):
                for c in codes:
                    # renormalised over one code: log-prob 0
                    sc = score + (lp[at[i]][c] if i in at else 0.0)
                    ahead = 0.0
                    if mass is not None:
                        col, m = mass[lv]
                        ahead = float(m[r, col[prefix + (c,)]])
                    cand[r].append((sc + ahead, sc, i, prefix + (c,)))
            width = k if lv == trie.length - 1 else beam
            keep = []
            for c in cand:
                c.sort(key=lambda t: (-t[0], t[3]))
                keep.extend(c[:width])
            last = lv == trie.length - 1
            rows = [(rows[i][0], p, key if last else s) for key, s, i, p in keep]
            if lv == trie.length - 1:
                break
            idx = torch.as_tensor([i for _, _, i, _ in keep], dtype=torch.long)
            h, mask, last_pos = h[idx], mask[idx], last_pos[idx]
            cache.reorder_cache(idx)
            if lv + 1 >= n_lm or all(len(open_codes(r, p)) <= 1 for r, p, _ in rows):
                continue  # the next level is forced everywhere (feed later) or left to the item prior
            step = torch.stack(
                [torch.stack([tokens[j][p[j]] for j in range(fed, lv + 1)]) for _, p, _ in rows]
            )
            m = step.shape[1]
            mask = torch.cat([mask, torch.ones((len(rows), m), dtype=mask.dtype)], dim=1)
            step_pos = last_pos[:, None] + torch.arange(1, m + 1)
            out = body(
                input_ids=step,
                attention_mask=mask,
                position_ids=step_pos,
                past_key_values=cache,
                use_cache=True,
            )
            cache, h = out.past_key_values, out.last_hidden_state[:, -1, :]
            last_pos = step_pos[:, -1]
            fed = lv + 1
    result: list[list[tuple[Sid, float]]] = [[] for _ in range(n)]
    for r, p, s in rows:
        result[r].append((p, s))
    return result


def item_log_probs(
    model: Any,
    prompt_ids: Sequence[int],
    trie: PrefixTrie,
    level_tokens: Sequence[Sequence[int]],
    *,
    chunk: int = 32,
    prompt_embeds: Any = None,
    item_prior: ItemPrior | None = None,
    lm_levels: int | None = None,
) -> np.ndarray:
    """Log-probability of every id in ``trie.sids`` order (sums to 1 in probability).

    With ``item_prior``, the normalised product ``p_codes x p_items^weight``;
    ``lm_levels`` as in ``beam_search_batch`` (codes below it count as
    log-prob 0, and are never fed).

    Only prefixes with more than one child need the model; each such prefix is
    fed after the cached prompt in batches of ``chunk``, then the cache is
    cropped back to the prompt.
    """
    import torch

    n_lm = trie.length if lm_levels is None else int(lm_levels)
    if n_lm < trie.length and item_prior is None:
        raise ValueError("lm_levels below the id length needs an item prior to score the deeper levels")
    tokens = [torch.as_tensor(list(t), dtype=torch.long) for t in level_tokens]
    body, weight, bias = _head(model)
    logp: dict[Sid, float] = {(): 0.0}
    with torch.inference_mode():
        if prompt_embeds is not None:
            out = body(inputs_embeds=prompt_embeds, use_cache=True)
        else:
            out = body(input_ids=torch.as_tensor([list(prompt_ids)]), use_cache=True)
        cache = out.past_key_values
        root_h = out.last_hidden_state[0, -1, :]
        expanded = False
        for lv in range(trie.length):
            prefixes = [p for p in trie.prefixes(lv) if p in logp]
            if lv >= n_lm:  # left to the item prior
                for p in prefixes:
                    for c in trie.children[p]:
                        logp[p + (c,)] = logp[p]
                continue
            need = [p for p in prefixes if len(trie.children[p]) > 1]
            dist: dict[Sid, Any] = {}
            if lv == 0:
                if need:
                    dist[()] = root_h
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
                    o = body(input_ids=ids, past_key_values=cache, use_cache=True)
                    cache.crop(-lv)  # drop the fed prefix, keep the prompt
                    for r, p in enumerate(part):
                        dist[p] = o.last_hidden_state[r, -1, :]
            for p in prefixes:
                kids = trie.children[p]
                if len(kids) == 1:
                    logp[p + (kids[0],)] = logp[p]
                    continue
                lp = torch.log_softmax(
                    _logits(dist[p][None], weight, bias, tokens[lv][kids])[0], dim=-1
                ).tolist()
                for c, v in zip(kids, lp, strict=False):
                    logp[p + (c,)] = logp[p] + v
        out = np.array([logp[s] for s in trie.sids], dtype=np.float64)
        if item_prior is not None:
            out = out + item_prior.weight * item_prior.log_probs(root_h[None], trie)[0]
            top = np.max(out)
            out = out - (top + np.log(np.exp(out - top).sum()))
    return out
