"""Semantic ids: an RQ-VAE over item embeddings, collision tokens, and the lookup table.

Each item gets ``levels`` residual codes plus one disambiguation code (0 for an
item alone on its address, 0..n-1 within a group of colliding items), so every
id has the same length and maps to exactly one item.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def default_widths(n_items: int, levels: int = 3) -> tuple[int, ...]:
    """Codebook widths scaled to the catalog.

    Level 1 gets about ``n_items ** (1/levels)`` codes (a power of two, 8..256)
    so each level-1 code groups many items and means something; deeper levels
    get twice that, capped at 256. 1,682 items -> (16, 32, 32).
    """
    w1 = 2 ** round(math.log2(max(2.0, n_items ** (1.0 / levels))))
    w1 = int(min(256, max(8, w1)))
    return (w1,) + tuple(min(256, 2 * w1) for _ in range(levels - 1))


@dataclass
class SemanticIdTable:
    """Item id <-> semantic id, both ways. ``widths`` includes the disambiguation level."""

    item_ids: tuple[str, ...]
    codes: np.ndarray  # [n_items, levels + 1] int64
    widths: tuple[int, ...]
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.codes = np.asarray(self.codes, dtype=np.int64)
        self._by_item = {
            it: tuple(int(c) for c in row)
            for it, row in zip(self.item_ids, self.codes, strict=False)
        }
        self._by_sid = {sid: it for it, sid in self._by_item.items()}
        if len(self._by_sid) != len(self._by_item):
            raise ValueError("semantic ids are not unique; the disambiguation level failed")

    @property
    def length(self) -> int:
        return self.codes.shape[1]

    def sid(self, item_id: str) -> tuple[int, ...]:
        return self._by_item[item_id]

    def item(self, sid: Sequence[int]) -> str | None:
        return self._by_sid.get(tuple(int(c) for c in sid))

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._by_item

    def to_json(self) -> dict[str, Any]:
        return {
            "item_ids": list(self.item_ids),
            "codes": self.codes.tolist(),
            "widths": list(self.widths),
            "stats": self.stats,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SemanticIdTable:
        return cls(
            tuple(d["item_ids"]),
            np.asarray(d["codes"]),
            tuple(d["widths"]),
            dict(d.get("stats", {})),
        )


def disambiguate(codes: np.ndarray) -> np.ndarray:
    """Append a code numbering the items that share an address (first-come order)."""
    seen: Counter = Counter()
    extra = np.zeros(len(codes), dtype=np.int64)
    for i, row in enumerate(map(tuple, codes)):
        extra[i] = seen[row]
        seen[row] += 1
    return np.concatenate([codes, extra[:, None]], axis=1)


def spread_last_level(
    codes: np.ndarray, residual: np.ndarray, codebook: np.ndarray
) -> np.ndarray:
    """Re-assign the last level so items sharing all coarser codes get distinct codes.

    Within each group of items with the same coarser prefix, (item, code) pairs
    are taken greedily by distance between the item's last residual and the
    code's vector, each code used once (the uniform last-level mapping of
    LC-Rec, done greedily). Items alone on their prefix keep their nearest
    code. Collisions remain only when a group has more items than the last
    codebook has codes. Returns a new codes array.
    """
    out = codes.copy()
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, row in enumerate(map(tuple, codes[:, :-1])):
        groups[row].append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        d = ((residual[members, None, :] - codebook[None, :, :]) ** 2).sum(-1)  # [m, K]
        order = np.argsort(d, axis=None, kind="stable")
        used_item: set[int] = set()
        used_code: set[int] = set()
        for flat in order:
            r, c = divmod(int(flat), d.shape[1])
            if r in used_item or c in used_code:
                continue
            out[members[r], -1] = c
            used_item.add(r)
            used_code.add(c)
            if len(used_item) == len(members) or len(used_code) == d.shape[1]:
                break
    return out


def codebook_stats(codes: np.ndarray, widths: Sequence[int]) -> dict[str, Any]:
    """Per level: share of codes used at least once, and perplexity exp(entropy) of code use."""
    out: dict[str, Any] = {"levels": []}
    for lv, w in enumerate(widths):
        counts = np.bincount(codes[:, lv], minlength=w).astype(float)
        p = counts[counts > 0] / counts.sum()
        out["levels"].append(
            {
                "level": lv + 1,
                "width": int(w),
                "usage": float((counts > 0).sum() / w),
                "perplexity": float(np.exp(-(p * np.log(p)).sum())),
            }
        )
    base = codes[:, : len(widths)]
    groups = Counter(map(tuple, base))
    out["collision_rate"] = float(sum(n for n in groups.values() if n > 1) / len(codes))
    out["max_collision_group"] = int(max(groups.values()))
    return out


def _collision_share(codes: np.ndarray) -> float:
    groups = Counter(map(tuple, codes))
    return float(sum(n for n in groups.values() if n > 1) / len(codes))


def genre_coherence(codes: np.ndarray, labels: Sequence[frozenset]) -> dict[str, float]:
    """Share of (item, same-L1 neighbour) pairs with a label in common, vs random pairs.

    ``l1_items_sharing``: share of items (with at least one neighbour on their L1
    code) for which most of those neighbours share a label with them.
    """
    by_l1: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(codes[:, 0]):
        by_l1[int(c)].append(i)
    pair_share, item_major = [], []
    for i, c in enumerate(codes[:, 0]):
        nb = [j for j in by_l1[int(c)] if j != i]
        if not nb or not labels[i]:
            continue
        s = np.mean([bool(labels[i] & labels[j]) for j in nb])
        pair_share.append(s)
        item_major.append(s > 0.5)
    rng = np.random.default_rng(0)
    n = len(labels)
    a, b = rng.integers(0, n, 5000), rng.integers(0, n, 5000)
    rand = np.mean(
        [bool(labels[x] & labels[y]) for x, y in zip(a, b, strict=False) if x != y and labels[x]]
    )
    return {
        "l1_neighbour_share_genre": float(np.mean(pair_share)) if pair_share else float("nan"),
        "l1_items_sharing": float(np.mean(item_major)) if item_major else float("nan"),
        "random_pair_share_genre": float(rand),
    }


def train_rqvae(
    emb: np.ndarray,
    widths: Sequence[int],
    *,
    hidden: int = 64,
    steps: int = 1500,
    lr: float = 1e-3,
    seed: int = 0,
    spread: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Train an RQ-VAE (linear encoder/decoder around ``ResidualVQ``); returns codes [n, levels].

    K-means initialisation and dead-code replacement (codes used fewer than two
    times per batch are re-seeded from the batch) keep the codebooks from collapsing.
    """
    import torch
    import torch.nn.functional as F
    from vector_quantize_pytorch import ResidualVQ

    torch.manual_seed(seed)
    x = torch.as_tensor(emb, dtype=torch.float32)
    x = F.normalize(x, dim=-1)
    d = x.shape[1]
    enc = torch.nn.Sequential(
        torch.nn.Linear(d, 256), torch.nn.GELU(), torch.nn.Linear(256, hidden)
    )
    dec = torch.nn.Sequential(
        torch.nn.Linear(hidden, 256), torch.nn.GELU(), torch.nn.Linear(256, d)
    )
    rq = ResidualVQ(
        dim=hidden,
        num_quantizers=len(widths),
        codebook_size=tuple(int(w) for w in widths),
        kmeans_init=True,
        kmeans_iters=20,
        threshold_ema_dead_code=2,
        decay=0.9,
        commitment_weight=0.25,
    )
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    n = len(x)
    bs = min(n, 512)
    recon = commit = float("nan")
    for _step in range(steps):
        idx = torch.randperm(n)[:bs]
        xb = x[idx]
        z = enc(xb)
        q, _, closs = rq(z[:, None, :])
        rec = dec(q[:, 0])
        loss_r = F.mse_loss(rec, xb)
        loss = loss_r + closs.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        recon, commit = float(loss_r.detach()), float(closs.sum().detach())
    rq.eval()
    with torch.no_grad():
        z = enc(x)
        _, indices, _ = rq(z[:, None, :])
        codes = indices[:, 0].cpu().numpy().astype(np.int64)
        raw_collisions = _collision_share(codes)
        if spread and len(widths) > 1:
            residual = z.clone()
            for lv, layer in enumerate(rq.layers[:-1]):
                residual -= layer.codebook[torch.as_tensor(codes[:, lv])]
            codes = spread_last_level(
                codes, residual.numpy(), rq.layers[-1].codebook.detach().numpy()
            )
    return codes, {
        "collision_rate_nearest": raw_collisions,
        "spread_last_level": bool(spread),
        "recon_mse": recon,
        "commit_loss": commit,
        "steps": steps,
        "hidden": hidden,
        "kind": "rqvae",
    }


def residual_kmeans(
    emb: np.ndarray,
    widths: Sequence[int],
    *,
    iters: int = 25,
    redo: int = 3,
    seed: int = 0,
    spread: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Residual k-means with faiss (GRID's alternative to the RQ-VAE); returns codes [n, levels].

    Level l clusters the residuals left by levels < l into ``widths[l]`` centroids
    on the L2-normalised embeddings (best of ``redo`` runs); no encoder is trained. The last level is
    spread like the RQ-VAE's.
    """
    import faiss

    x = np.ascontiguousarray(emb, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    residual = x.copy()
    codes = np.zeros((len(x), len(widths)), dtype=np.int64)
    books = []
    for lv, w in enumerate(widths):
        k = int(min(w, len(x)))
        km = faiss.Kmeans(x.shape[1], k, niter=iters, nredo=redo, seed=seed + lv, verbose=False)
        km.train(residual)
        _, a = km.index.search(residual, 1)
        codes[:, lv] = a[:, 0]
        books.append(km.centroids.copy())
        if lv < len(widths) - 1:
            residual = residual - km.centroids[a[:, 0]]
    raw = _collision_share(codes)
    if spread and len(widths) > 1:
        codes = spread_last_level(codes, residual, books[-1])
    err = x - sum(b[codes[:, lv]] for lv, b in enumerate(books))
    return codes, {
        "collision_rate_nearest": raw,
        "spread_last_level": bool(spread),
        "recon_mse": float((err**2).mean()),
        "iters": iters,
        "kind": "rkmeans",
    }


def build_table(
    item_ids: Sequence[str],
    emb: np.ndarray,
    *,
    widths: Sequence[int] | None = None,
    labels: Sequence[frozenset] | None = None,
    steps: int = 1500,
    seed: int = 0,
    spread: bool = True,
    quantizer: str = "rqvae",
) -> SemanticIdTable:
    widths = tuple(widths or default_widths(len(item_ids)))
    if quantizer == "rqvae":
        base, train_info = train_rqvae(emb, widths, steps=steps, seed=seed, spread=spread)
    elif quantizer == "rkmeans":
        base, train_info = residual_kmeans(emb, widths, seed=seed, spread=spread)
    else:
        raise ValueError(f"-S quantizer={quantizer}: choose rqvae or rkmeans")
    codes = disambiguate(base)
    stats = {"rqvae": train_info, **codebook_stats(base, widths)}
    if labels is not None:
        stats["genre"] = genre_coherence(base, labels)
    all_widths = widths + (int(codes[:, -1].max()) + 1,)
    return SemanticIdTable(tuple(item_ids), codes, all_widths, stats)
