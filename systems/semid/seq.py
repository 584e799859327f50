"""The compact whole-sequence format shared by the from-scratch decoder and the LLM.

A user's chronological history is one causal sequence: a one-token prefix, then
each item's *compact* code tokens back to back (levels whose codebook is a
single code carry no information and are dropped; no per-item start, end or
space token). The loss is taken at every code position, with the softmax
restricted to the codes of the level being predicted, which is exactly what
constrained decoding renormalises over.

Long histories are cut into windows of at most ``window`` items that overlap
by ``overlap`` items (default ``window // 2``): the first window of a user
supervises every position, each later one only the items it adds, so every
next-item prediction of the training split is supervised exactly once, with
at least ``overlap`` items of context once the history is that long. The
overlap is paid for in tokens: ``window / (window - overlap)`` times the
supervised ones.

``CodeSpace`` maps items to compact codes and codes to token ids;
``level_loss`` is the restricted-softmax cross-entropy (and, given a
teacher's logits at the same positions, the distillation KL).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


class CodeSpace:
    """Compact semantic ids of a catalog: the informative levels of a ``SemanticIdTable``.

    ``level_tokens[j]`` lists the token id of every code of compact level ``j``
    (in the model that uses this space); ``sids`` are the compact ids in
    catalog order, each unique.
    """

    def __init__(self, table: Any, item_ids: Sequence[str], level_tokens: Sequence[Sequence[int]] | None = None) -> None:
        full = np.array([table.sid(it) for it in item_ids], dtype=np.int64)
        self.keep = [lv for lv in range(full.shape[1]) if len(np.unique(full[:, lv])) > 1]
        self.codes = full[:, self.keep]
        self.widths = [int(table.widths[lv]) for lv in self.keep]
        self.item_ids = tuple(item_ids)
        self.index = {it: i for i, it in enumerate(self.item_ids)}
        self.sids = [tuple(int(c) for c in row) for row in self.codes]
        if len(set(self.sids)) != len(self.sids):
            raise ValueError("compact semantic ids are not unique")
        self.by_sid = {s: it for s, it in zip(self.sids, self.item_ids, strict=True)}
        self.index_of_sid = {s: i for i, s in enumerate(self.sids)}
        if level_tokens is None:  # a model of its own: codes numbered after `offset` specials
            level_tokens = self.own_tokens(offset=0)
        self.level_tokens = [list(t) for t in level_tokens]

    @property
    def m(self) -> int:
        """Code tokens per item."""
        return len(self.keep)

    def own_tokens(self, offset: int) -> list[list[int]]:
        out, pos = [], offset
        for w in self.widths:
            out.append(list(range(pos, pos + w)))
            pos += w
        return out

    def from_full(self, level_tokens_full: Sequence[Sequence[int]]) -> list[list[int]]:
        """The token lists of the kept levels, from one list per level of the full table."""
        return [list(level_tokens_full[lv]) for lv in self.keep]

    def item_tokens(self, item: str) -> list[int]:
        row = self.codes[self.index[item]]
        return [self.level_tokens[j][int(c)] for j, c in enumerate(row)]

    def history_tokens(self, history: Sequence[str], max_items: int) -> list[int]:
        out: list[int] = []
        for it in [h for h in history if h in self.index][-max_items:] if max_items > 0 else []:
            out.extend(self.item_tokens(it))
        return out

    def items_of(self, tokens: Sequence[int]) -> list[str]:
        """The items a run of whole items' code tokens spells (``m`` tokens per item)."""
        if not hasattr(self, "_code_of"):
            self._code_of = [{t: c for c, t in enumerate(toks)} for toks in self.level_tokens]
        m = self.m
        return [self.by_sid[tuple(self._code_of[j][tokens[i + j]] for j in range(m))] for i in range(0, len(tokens) - m + 1, m)]

    def item_slots(self, ids: Any) -> np.ndarray:
        """[B, T] token ids -> 1 + the catalog index of the item whose *last* code token sits at
        each position, 0 elsewhere (specials, text, an item's earlier codes, a partial item).

        A model that adds an item's own vector there reads it only once the item is complete,
        so the vector never tells it the codes it is predicting.
        """
        if getattr(self, "_slot_tables", None) is None or self._slot_tables[0] != self.level_tokens:
            top = max(max(t) for t in self.level_tokens) + 1
            lv, code = np.full(top, -1, dtype=np.int64), np.zeros(top, dtype=np.int64)
            for j, toks in enumerate(self.level_tokens):
                lv[toks], code[toks] = j, np.arange(len(toks))
            radix = np.cumprod([1, *self.widths[::-1]])[:-1][::-1]  # mixed-radix weight of each level
            keys = (self.codes * radix[None, :]).sum(axis=1)
            order = np.argsort(keys)
            self._slot_tables = ([list(t) for t in self.level_tokens], lv, code, radix, keys[order], order)
        _, lv_of, code_of, radix, keys, items = self._slot_tables
        shape = np.shape(ids)
        ids = np.atleast_2d(np.asarray(ids))
        inside = ids < len(lv_of)
        safe = np.where(inside, ids, 0)
        lv = np.where(inside, lv_of[safe], -1)
        code = np.where(inside, code_of[safe], 0)
        m = self.m
        ok = lv == m - 1
        key = code * radix[m - 1]
        for j in range(1, m):  # the m - 1 positions before must hold levels m - 2 .. 0
            ok[:, :j] = False
            ok[:, j:] &= lv[:, :-j] == m - 1 - j
            key[:, j:] = key[:, j:] + code[:, :-j] * radix[m - 1 - j]
        out = np.zeros(ids.shape, dtype=np.int64)
        pos = np.clip(np.searchsorted(keys, key[ok]), 0, len(keys) - 1)
        out[ok] = np.where(keys[pos] == key[ok], items[pos] + 1, 0)
        return out.reshape(shape)

    def token_matrix(self) -> np.ndarray:
        """[n_items, m] the token id of each item's code at each compact level (catalog order)."""
        return np.stack([np.asarray(self.level_tokens[j])[self.codes[:, j]] for j in range(self.m)], axis=1)

    def next_items(self, ids: Any, mask: Any, levels: Any) -> Any:
        """The catalog index of the item each level-0 target of ``window_batch`` begins, in the
        order of ``levels == 0`` (the item whose last code sits ``m - 1`` tokens later)."""
        import torch

        slots = torch.as_tensor(self.item_slots(ids.numpy()))
        t = torch.arange(1, ids.shape[1]).expand(ids.shape[0], -1)[mask]  # target positions, row-major
        b = torch.arange(ids.shape[0])[:, None].expand(-1, ids.shape[1] - 1)[mask]
        first = levels == 0
        end = (t[first] + self.m - 1).clamp(max=ids.shape[1] - 1)
        out = slots[b[first], end] - 1
        if (out < 0).any():
            raise ValueError("a level-0 target does not begin a whole item")
        return out

    def level_targets(self, P: np.ndarray, targets: Sequence[int], level: int) -> np.ndarray:
        """Batched soft targets for one level: row ``r`` is the distribution of code ``level``
        among the items that share ``targets[r]``'s first ``level`` codes, weighted by ``P[r]``
        (a catalog distribution, ``[n, n_items]``). A row with no weight there is the target's code."""
        P = np.asarray(P)
        t = np.asarray(targets, dtype=np.int64)
        if level > 0:  # items that share the target's first `level` codes
            P = P * (self.codes[None, :, :level] == self.codes[t, :level][:, None, :]).all(axis=-1)
        onehot = np.eye(self.widths[level], dtype=P.dtype)
        w = P @ onehot[self.codes[:, level]]
        s = w.sum(axis=-1, keepdims=True)
        return np.where(s > 0, w / np.where(s > 0, s, 1), onehot[self.codes[t, level]])

    def conditional_targets(self, p: np.ndarray, target: int) -> list[np.ndarray]:
        """Soft targets per level from a catalog distribution ``p`` along ``target``'s prefix.

        Level ``j``'s target is the distribution of code ``j`` among items that share
        ``target``'s first ``j`` codes, weighted by ``p`` (dense targets for every level).
        """
        return [self.level_targets(np.asarray(p)[None], [target], j)[0] for j in range(self.m)]


@dataclass(frozen=True)
class Window:
    """One training row: token ids, the position from which targets count, and the user."""

    tokens: tuple[int, ...]
    first_target: int  # targets at positions >= this index (0-based, in tokens) are supervised
    user: str


def windows(
    sequences: Mapping[str, Sequence[str]],
    space: CodeSpace,
    *,
    prefix: Sequence[int],
    window: int = 200,
    overlap: int | None = None,
) -> list[Window]:
    """Every user's sequence as windows of <= ``window`` items overlapping by ``overlap`` items
    (default ``window // 2``); each later window supervises only the items it adds."""
    overlap = window // 2 if overlap is None else min(overlap, window - 1)
    stride = max(1, window - overlap)
    out = []
    for u, seq in sequences.items():
        items = [it for it in seq if it in space.index]
        if len(items) < 1:
            continue
        starts = [0]
        while starts[-1] + window < len(items):
            starts.append(starts[-1] + stride)
        for s in starts:
            chunk = items[s : s + window]
            toks = list(prefix)
            for it in chunk:
                toks.extend(space.item_tokens(it))
            # the first window supervises everything; later ones only the items they add
            new_from = 0 if s == 0 else window - stride
            out.append(Window(tuple(toks), len(prefix) + new_from * space.m, u))
    return out


def level_of_positions(n_tokens: int, prefix_len: int, m: int) -> np.ndarray:
    """Compact level of the token at each position (-1 on the prefix)."""
    pos = np.arange(n_tokens)
    return np.where(pos >= prefix_len, (pos - prefix_len) % m, -1)


def level_loss(
    hidden: Any,
    weight: Any,
    tokens: Any,
    levels: Any,
    space: CodeSpace,
    *,
    teacher_logits: Sequence[Any] | None = None,
    alpha: float = 0.0,
    temperature: float = 1.0,
) -> tuple[Any, int]:
    """Restricted-softmax cross-entropy (+ ``alpha`` x KL to a teacher) over code positions.

    ``hidden`` [N, d]: hidden states at the positions that predict ``tokens`` [N]
    (token ids), whose compact levels are ``levels`` [N]. ``teacher_logits[j]``
    (optional) are the teacher's logits over level ``j``'s codes at the same
    positions, in level order. Returns (mean loss, number of targets).
    """
    import torch
    import torch.nn.functional as F

    total, n = hidden.new_zeros((), dtype=torch.float32), 0
    for j in range(space.m):
        sel = levels == j
        cnt = int(sel.sum())
        if cnt == 0:
            continue
        toks = torch.as_tensor(space.level_tokens[j], dtype=torch.long)
        logits = (hidden[sel] @ weight[toks].T).float()
        # token id -> code index within the level
        lut = torch.full((int(toks.max()) + 1,), -1, dtype=torch.long)
        lut[toks] = torch.arange(len(toks))
        y = lut[tokens[sel]]
        ce = F.cross_entropy(logits, y, reduction="sum")
        loss = ce
        if teacher_logits is not None and alpha > 0:
            t = F.log_softmax(teacher_logits[j].float() / temperature, dim=-1)
            s = F.log_softmax(logits / temperature, dim=-1)
            kl = F.kl_div(s, t, log_target=True, reduction="sum") * temperature**2
            loss = (1 - alpha) * ce + alpha * kl
        total = total + loss
        n += cnt
    return total / max(n, 1), n


def tied_out_vectors(item_weight: Any, input_weight: Any, tok_matrix: Any) -> Any:
    """The item head's output vectors, [n_items, d] in catalog order: each item's own input vector
    (row 0 of ``item_weight`` is padding) plus the input embeddings of its code tokens
    (``tok_matrix`` [n_items, levels]), tied as SASRec ties its item embeddings."""
    return item_weight[1:] + input_weight[tok_matrix].sum(dim=1).to(item_weight.dtype)


def item_logits(hidden: Any, out_vectors: Any) -> Any:
    """Logits over the catalog (catalog order) from hidden states [N, d] and item output vectors [n_items, d]."""
    return hidden.float() @ out_vectors.float().T


def item_loss(hidden: Any, out_vectors: Any, targets: Any, *, teacher_logp: Any = None, alpha: float = 0.0) -> Any:
    """Mean cross-entropy of the item head on the next item (+ ``alpha`` x KL to a teacher's
    catalog log-distribution ``teacher_logp`` [N, n_items] at the same positions)."""
    import torch.nn.functional as F

    lg = item_logits(hidden, out_vectors)
    loss = F.cross_entropy(lg, targets)
    if teacher_logp is not None and alpha > 0:
        kl = F.kl_div(F.log_softmax(lg, dim=-1), teacher_logp.float(), log_target=True, reduction="batchmean")
        loss = (1 - alpha) * loss + alpha * kl
    return loss


def soft_item_loss(hidden: Any, out_vectors: Any, targets: Any) -> Any:
    """Mean cross-entropy of the item head against soft catalog targets [N, n_items]."""
    import torch
    import torch.nn.functional as F

    lp = F.log_softmax(item_logits(hidden, out_vectors), dim=-1)
    return -(torch.as_tensor(targets, dtype=torch.float32) * lp).sum(dim=-1).mean()


def soft_loss(hidden: Any, weight: Any, targets: Sequence[np.ndarray], space: CodeSpace) -> Any:
    """Cross-entropy of a restricted softmax against soft targets, one row per level.

    ``hidden`` [m, d] are the states that predict levels 0..m-1 of one item.
    """
    import torch
    import torch.nn.functional as F

    out = hidden.new_zeros((), dtype=torch.float32)
    for j in range(space.m):
        toks = torch.as_tensor(space.level_tokens[j], dtype=torch.long)
        lp = F.log_softmax((hidden[j] @ weight[toks].T).float(), dim=-1)
        out = out - (torch.as_tensor(targets[j], dtype=torch.float32) * lp).sum()
    return out / space.m


def ndcg_at_10(ranked: Sequence[Sequence[str]], targets: Sequence[str]) -> float:
    """Mean nDCG@10 of one held-out item per list, with the harness's own metric code."""
    from talkwalk_bench.metrics.ranking import hit_matrix, ranking_metrics

    if not ranked:
        return 0.0
    H, n_rel = hit_matrix([list(r)[:10] for r in ranked], [[t] for t in targets], 10)
    return float(ranking_metrics(H, n_rel, [10], ["nDCG"])["nDCG@10"].mean())


def lr_at(step: int, total: int, *, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to 10 % of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def batches(rows: Sequence[Window], *, batch_tokens: int, seed: int, epoch: int) -> list[list[int]]:
    """Row indices grouped into batches of similar length holding about ``batch_tokens`` tokens."""
    rng = np.random.default_rng(seed * 1000 + epoch)
    order = rng.permutation(len(rows))
    # sort within shuffled buckets of 64 so padding stays small
    buckets = [sorted(order[i : i + 64], key=lambda r: len(rows[r].tokens)) for i in range(0, len(order), 64)]
    out: list[list[int]] = []
    for b in buckets:
        cur: list[int] = []
        for r in b:
            n = len(rows[r].tokens)
            if cur and (len(cur) + 1) * max(n, max(len(rows[c].tokens) for c in cur)) > batch_tokens:
                out.append(cur)
                cur = []
            cur.append(int(r))
        if cur:
            out.append(cur)
    return [out[i] for i in rng.permutation(len(out))]


def window_batch(rows: Sequence[Window], b: Sequence[int], m: int, pad: int) -> tuple[Any, Any, Any, Any]:
    """(ids, attention mask, target mask over positions 1.., compact level of each masked target) of a batch."""
    import torch

    ids, att = pad_batch([rows[r].tokens for r in b], pad)
    t = torch.arange(1, ids.shape[1])
    first = torch.as_tensor([max(rows[r].first_target, 1) for r in b])
    mask = (t[None, :] >= first[:, None]) & (t[None, :] < att.sum(1)[:, None])
    return ids, att, mask, ((t - 1) % m).expand(len(b), -1)[mask]


def pad_batch(rows: Sequence[Sequence[int]], pad: int) -> tuple[Any, Any]:
    """Right-padded ids and attention mask."""
    import torch

    n = max(len(r) for r in rows)
    ids = torch.full((len(rows), n), pad, dtype=torch.long)
    att = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(list(r))
        att[i, : len(r)] = 1
    return ids, att
