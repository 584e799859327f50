"""Phase 1: build every pair set from the card and the training split, then train the shared space."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from systems.contrastive.features import FeatureSpace, popularity_feature
from systems.contrastive.pairs import (
    Phrase,
    affinity_description,
    item_description,
    ordinal_text,
    steering_phrases,
    user_description,
)
from systems.contrastive.query import Weights
from systems.contrastive.text import TextEncoder
from talkwalk_bench.data.card import DatasetCard
from talkwalk_bench.types import TrainData


@dataclass(frozen=True)
class TrainConfig:
    hidden: tuple[int, ...] = (512, 256)
    adapter: bool = True
    epochs: int = 3  # each epoch reads its own description variant
    steps_per_epoch: int = 120
    batch_size: int = 256
    lr: float = 1e-3
    smooth_weight: float = 1.0
    steer_weight: float = 2.0
    use_user: bool = True
    use_steering: bool = True
    use_interactions: bool = True
    affinity_pairs: int = 1200
    smooth_triples: int = 1024
    title_features: bool = True
    pop_dropout: float = 0.1  # share of known items shown with unknown popularity each step
    unfreeze_layers: int = 0  # >0: the top N text-model layers train on a query-side copy (steering phrasings)
    lr_text: float = 5e-5  # learning rate of those layers


@dataclass
class Corpus:
    space: FeatureSpace
    item_ids: tuple[str, ...]
    item_X: np.ndarray
    item_T: np.ndarray  # [V, n_items, d]
    item_group: np.ndarray
    user_ids: tuple[str, ...]
    user_X: np.ndarray
    user_T: np.ndarray  # [V, n_users, d]
    user_group: np.ndarray
    comp_X: np.ndarray
    comp_T: np.ndarray
    aff_X: np.ndarray
    aff_T: np.ndarray
    ord_X: np.ndarray
    ord_T: np.ndarray
    smooth_meta: list[np.ndarray]  # [lo, mid, hi] stacks of feature rows
    smooth_text: list[np.ndarray]  # [lo, mid, hi] stacks of text embeddings
    steer_T: np.ndarray
    steer_M: np.ndarray
    seq_user: np.ndarray  # user row per sequence
    seqs: list[np.ndarray]  # item indices per user, time order
    rates: list[np.ndarray]
    steer_source: str = ""
    steer_texts: list[str] = field(default_factory=list)  # the phrasings behind steer_T (query-side encoder input)
    stats: dict[str, int] = field(default_factory=dict)


def _groups(X: np.ndarray) -> np.ndarray:
    _, inv = np.unique(np.round(X, 4), axis=0, return_inverse=True)
    return inv.reshape(-1)


def _set_ordinal(x: np.ndarray, slot, value: float) -> None:
    x[slot.start] = (value - slot.lo) / (slot.hi - slot.lo) * 2 - 1
    x[slot.start + 1] = 1.0
    x[slot.start + 2:slot.start + slot.width] = 0.0
    for j, b in enumerate(slot.attr.bins):
        if b.contains(value):
            x[slot.start + 2 + j] = 1.0


def build_corpus(data: TrainData, card: DatasetCard, enc: TextEncoder, cfg: TrainConfig, seed: int,
                 progress: bool = True) -> Corpus:
    rng = random.Random(seed)
    items = [dict(data.items.get(i, {})) for i in data.item_ids]
    counts = Counter(data.train.item_ids.tolist())
    pop = popularity_feature(counts, data.item_ids)
    user_ids = tuple(sorted(data.users, key=lambda u: (len(u), u)))
    users = [dict(data.users[u]) for u in user_ids]
    space = FeatureSpace(card, data.items, data.users, text_dim=enc.dim, use_text=cfg.title_features)
    known = pop[~np.isnan(pop)]
    space.pop_fill = float(np.median(known)) if len(known) else 0.0
    item_X = space.item_vectors(items, pop, text_fn=enc.encode)
    V = max(1, cfg.epochs)
    texts: list[str] = []

    item_S = [[item_description(card, r, float(p), v, seed) for r, p in zip(items, pop, strict=False)] for v in range(V)]
    user_S = [[user_description(card, r, v, seed=seed) for r in users] for v in range(V)] if card.user else []
    user_X = space.user_vectors(users) if card.user else np.zeros((0, space.dim), np.float32)

    # composite user metadata: every pair of user attributes, on its own
    comp_rows, comp_S = [], []
    if card.user:
        names = list(card.user.attributes)
        seen = set()
        for r in users:
            for a in range(len(names)):
                for b in range(a + 1, len(names)):
                    keep = {names[a], names[b]}
                    key = (tuple(sorted(keep)), tuple(str(card.user.attributes[n].value_of(r)) for n in sorted(keep)))
                    if key in seen:
                        continue
                    seen.add(key)
                    comp_rows.append((r, keep))
        comp_X = space.user_vectors([r for r, _ in comp_rows], keep=[k for _, k in comp_rows])
        comp_S = [user_description(card, r, rng.randrange(V), keep=k, seed=seed) for r, k in comp_rows]
    else:
        comp_X = np.zeros((0, space.dim), np.float32)

    # user x item affinity descriptions from real ratings: high (>= 4) vs low (<= 2)
    uidx = {u: j for j, u in enumerate(user_ids)}
    iidx = {i: j for j, i in enumerate(data.item_ids)}
    tr = data.train
    aff_X_rows, aff_S = [], []
    if card.user and cfg.use_user and len(tr) and not np.all(np.isnan(tr.ratings)):
        cand = [j for j in range(len(tr)) if not np.isnan(tr.ratings[j]) and (tr.ratings[j] >= 4 or tr.ratings[j] <= 2)
                and tr.user_ids[j] in uidx and tr.item_ids[j] in iidx]
        pick = rng.sample(cand, min(cfg.affinity_pairs, len(cand)))
        for j in pick:
            u, i = uidx[tr.user_ids[j]], iidx[tr.item_ids[j]]
            v = rng.randrange(V)
            aff_X_rows.append(user_X[u] + item_X[i])
            aff_S.append(affinity_description(user_S[v][u], item_S[v][i].split(": ", 1)[-1], bool(tr.ratings[j] >= 4), v))
    aff_X = np.stack(aff_X_rows) if aff_X_rows else np.zeros((0, space.dim), np.float32)

    # ordinal axes: exact values <-> "released in 1975", and smoothing triples
    ord_rows, ord_S = [], []
    sm_meta: list[list[np.ndarray]] = [[], [], []]
    sm_text: list[list[str]] = [[], [], []]
    axes = [("item", n) for n, a in card.item.attributes.items() if a.kind == "ordinal"]
    if card.user and cfg.use_user:
        axes += [("user", n) for n, a in card.user.attributes.items() if a.kind == "ordinal"]
    for entity, name in axes:
        slot = space.ordinal_slot(entity, name)
        if slot is None:
            continue
        lo, hi = slot.lo, slot.hi
        step = max(1.0, round((hi - lo) / 40))
        grid = np.arange(lo, hi + 1e-9, step)
        for x in grid:
            row = np.zeros(space.dim, np.float32)
            _set_ordinal(row, slot, float(x))
            row[space.flag_item if entity == "item" else space.flag_user] = 1.0
            ord_rows.append(row)
            ord_S.append(ordinal_text(card, entity, name, float(x)))
        base = item_X if entity == "item" else user_X
        span = max(2.0, (hi - lo) / 4)
        for _ in range(cfg.smooth_triples // max(1, len(axes))):
            d = rng.uniform(1.0, span)
            m = rng.uniform(lo + d, hi - d) if hi - lo > 2 * d else (lo + hi) / 2
            src = base[rng.randrange(len(base))].copy()
            for k, val in enumerate((m - d, m, m + d)):
                r = src.copy()
                _set_ordinal(r, slot, float(val))
                sm_meta[k].append(r)
                sm_text[k].append(ordinal_text(card, entity, name, float(val)))
    ord_X = np.stack(ord_rows) if ord_rows else np.zeros((0, space.dim), np.float32)

    phrases: list[Phrase] = []
    source = "off"
    if cfg.use_steering:
        phrases, source = steering_phrases(card, items, data.item_ids)

    # one encode call for every distinct string
    texts = [s for v in item_S for s in v] + [s for v in user_S for s in v] + comp_S + aff_S + ord_S
    texts += [s for k in sm_text for s in k] + [p.text for p in phrases]
    uniq = list(dict.fromkeys(texts))
    enc.encode(uniq, progress=progress)
    enc.save()
    E = enc.encode

    seqs, rates, seq_user = [], [], []
    by_user: dict[str, list[int]] = defaultdict(list)
    for j in range(len(tr)):
        by_user[tr.user_ids[j]].append(j)
    for u, js in by_user.items():
        idx = [iidx[tr.item_ids[j]] for j in js if tr.item_ids[j] in iidx]
        if len(idx) < 2 or u not in uidx:
            continue
        seqs.append(np.array(idx))
        rates.append(np.array([tr.ratings[j] for j in js if tr.item_ids[j] in iidx], dtype=np.float32))
        seq_user.append(uidx[u])

    d = enc.dim
    return Corpus(
        space=space, item_ids=tuple(data.item_ids), item_X=item_X,
        item_T=np.stack([E(v) for v in item_S]), item_group=_groups(item_X),
        user_ids=user_ids, user_X=user_X,
        user_T=np.stack([E(v) for v in user_S]) if user_S else np.zeros((V, 0, d), np.float32),
        user_group=_groups(user_X) if len(user_X) else np.zeros(0, int),
        comp_X=comp_X, comp_T=E(comp_S) if comp_S else np.zeros((0, d), np.float32),
        aff_X=aff_X, aff_T=E(aff_S) if aff_S else np.zeros((0, d), np.float32),
        ord_X=ord_X, ord_T=E(ord_S) if ord_S else np.zeros((0, d), np.float32),
        smooth_meta=[np.stack(k) if k else np.zeros((0, space.dim), np.float32) for k in sm_meta],
        smooth_text=[E(k) if k else np.zeros((0, d), np.float32) for k in sm_text],
        steer_T=E([p.text for p in phrases]) if phrases else np.zeros((0, d), np.float32),
        steer_M=np.stack([p.mask for p in phrases]) if phrases else np.zeros((0, len(items)), bool),
        seq_user=np.array(seq_user, dtype=int), seqs=seqs, rates=rates, steer_source=source,
        steer_texts=[p.text for p in phrases],
        stats={"items": len(items), "users": len(users), "composites": len(comp_S), "affinity": len(aff_S),
               "ordinal": len(ord_S), "smooth_triples": len(sm_meta[0]), "phrasings": len(phrases),
               "interaction_users": len(seqs), "distinct_texts": len(uniq), "variants": V},
    )


def train(corpus: Corpus, cfg: TrainConfig, w: Weights, seed: int, progress: bool = True,
          query_encoder: Any = None) -> tuple[Any, list[float]]:
    """Train the shared space; returns (model, loss per step).

    With ``query_encoder`` (a ``QueryEncoder``, ``cfg.unfreeze_layers`` > 0) the steering phrasings are
    encoded by it every step and its top layers train at ``cfg.lr_text``; descriptions keep their
    frozen embeddings.
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from systems.contrastive.model import SharedSpace, info_nce, multi_positive_nce, smoothing_loss

    torch.manual_seed(seed)
    rs = np.random.default_rng(seed)
    d = corpus.item_T.shape[-1]
    model = SharedSpace(corpus.space.dim, d, tuple(cfg.hidden), adapter=cfg.adapter)
    groups: list[dict[str, Any]] = [{"params": list(model.parameters()), "lr": cfg.lr, "weight_decay": 1e-4}]
    if query_encoder is not None:
        groups.append({"params": query_encoder.top_parameters(), "lr": cfg.lr_text, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups)
    T = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    item_X, user_X = T(corpus.item_X), T(corpus.user_X)
    n_items = len(corpus.item_ids)
    sp = corpus.space
    # items never seen in training are unobserved: neither negatives nor positives of the user-query softmaxes
    # (interactions, steering added to a user's query); they still learn their metadata <-> text pairs
    unseen = T(corpus.item_X[:, sp.pop_known_col] == 0)
    seen_rows = np.flatnonzero(corpus.item_X[:, sp.pop_known_col] == 1)
    steps = max(1, cfg.epochs) * cfg.steps_per_epoch
    losses: list[float] = []
    bar = tqdm(range(steps), desc="contrastive training", disable=not progress, mininterval=1.0)
    B = cfg.batch_size
    use_user = cfg.use_user and len(corpus.user_X) > 0

    def pick(n: int, k: int) -> np.ndarray:
        return rs.choice(n, size=min(n, k), replace=False)

    def queries(users: np.ndarray, hists: list[np.ndarray], E_items: torch.Tensor) -> torch.Tensor:
        """w_user * E(user) + w_history * normalize(mean E(history window)), normalised, as at inference."""
        q = torch.zeros(len(users), d)
        if use_user:
            q = q + w.user * model.meta(user_X[users])
        H = torch.zeros(len(users), d)
        for r, h in enumerate(hists):
            if len(h):
                H[r] = E_items[torch.from_numpy(h)].mean(0)
        q = q + w.history * F.normalize(H, dim=-1)
        return F.normalize(q, dim=-1)

    def sample_sessions(k: int) -> tuple[np.ndarray, list[np.ndarray], list[int], torch.Tensor]:
        rows = rs.integers(0, len(corpus.seqs), size=k)
        users, hists, targets = [], [], []
        drop = torch.zeros(k, n_items, dtype=torch.bool)
        for r, s in enumerate(rows):
            seq, rat = corpus.seqs[s], corpus.rates[s]
            good = np.flatnonzero((rat >= 4) | np.isnan(rat))
            good = good[good >= 1] if len(good[good >= 1]) else np.arange(1, len(seq))
            t = int(rs.choice(good))
            hist = seq[max(0, t - w.history_window):t] if rs.random() > 0.15 else seq[:0]
            users.append(corpus.seq_user[s])
            hists.append(hist)
            targets.append(int(seq[t]))
            drop[r, torch.from_numpy(seq[:t])] = True
        return np.array(users), hists, targets, drop

    for step in bar:
        v = min(step // cfg.steps_per_epoch, corpus.item_T.shape[0] - 1)
        scale = model.scale()
        X_step = item_X
        if cfg.pop_dropout > 0 and len(seen_rows):  # some known items read as "unknown" so the flag is no cold-item marker
            hide = torch.from_numpy(seen_rows[rs.random(len(seen_rows)) < cfg.pop_dropout])
            X_step = item_X.clone()
            X_step[hide, sp.pop_col] = sp.pop_fill
            X_step[hide, sp.pop_known_col] = 0.0
        E_items = model.meta(X_step)
        parts: dict[str, torch.Tensor] = {}
        b = pick(n_items, B)
        same = T(corpus.item_group[b][:, None] == corpus.item_group[b][None, :])
        parts["item"] = info_nce(E_items[b], model.text(T(corpus.item_T[v][b])), scale, same)
        if use_user:
            b = pick(len(corpus.user_X), B)
            same = T(corpus.user_group[b][:, None] == corpus.user_group[b][None, :])
            parts["user"] = info_nce(model.meta(user_X[b]), model.text(T(corpus.user_T[v][b])), scale, same)
            if len(corpus.comp_X):
                b = pick(len(corpus.comp_X), B)
                parts["composite"] = info_nce(model.meta(T(corpus.comp_X[b])), model.text(T(corpus.comp_T[b])), scale)
            if len(corpus.aff_X):
                b = pick(len(corpus.aff_X), B // 2)
                parts["affinity"] = info_nce(model.meta(T(corpus.aff_X[b])), model.text(T(corpus.aff_T[b])), scale)
        if len(corpus.ord_X):
            b = pick(len(corpus.ord_X), B // 2)
            parts["ordinal"] = info_nce(model.meta(T(corpus.ord_X[b])), model.text(T(corpus.ord_T[b])), scale)
        if cfg.smooth_weight > 0 and len(corpus.smooth_meta[0]):
            b = pick(len(corpus.smooth_meta[0]), B // 2)
            lo, mid, hi = (model.meta(T(m[b])) for m in corpus.smooth_meta)
            tlo, tmid, thi = (model.text(T(m[b])) for m in corpus.smooth_text)
            parts["smooth"] = cfg.smooth_weight * (smoothing_loss(lo, mid, hi) + smoothing_loss(tlo, tmid, thi))
        if cfg.use_interactions and corpus.seqs:
            users, hists, targets, drop = sample_sessions(B // 2)
            q = queries(users, hists, E_items)
            pos = torch.zeros(len(users), n_items, dtype=torch.bool)
            pos[torch.arange(len(users)), torch.tensor(targets)] = True
            parts["interaction"] = multi_positive_nce(q, E_items, pos, scale, (drop | unseen) & ~pos)
        if len(corpus.steer_T):
            b = pick(len(corpus.steer_T), B // 2)
            if query_encoder is not None:
                t = model.text(query_encoder.forward([corpus.steer_texts[j] for j in b]))
            else:
                t = model.text(T(corpus.steer_T[b]))
            parts["steer_text"] = cfg.steer_weight * multi_positive_nce(t, E_items, T(corpus.steer_M[b]), scale)
            if corpus.seqs:
                users, hists, _, drop = sample_sessions(len(b))
                q = F.normalize(queries(users, hists, E_items) + w.text * t, dim=-1)
                pos = T(corpus.steer_M[b]) & ~unseen
                parts["steer_query"] = cfg.steer_weight * multi_positive_nce(q, E_items, pos, scale, (drop | unseen) & ~pos)
        loss = sum(parts.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % 25 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}", T=f"{1 / float(scale.detach()):.3f}")
    model.eval()
    return model, losses


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The training config as recorded in the artifact key; the text-tuning fields only when they are in use,
    so a frozen-text config keeps the key it had before they existed (and its cached model)."""
    out = asdict(cfg)
    out["hidden"] = list(cfg.hidden)
    if not cfg.unfreeze_layers:
        for k in ("unfreeze_layers", "lr_text"):
            out.pop(k)
    return out


