"""Ranking metrics at several cutoffs, vectorised over episodes (binary relevance).

Input is a hit matrix ``H`` (episodes x K_max, ``H[e, i] = 1`` when the item
at rank i+1 is relevant) and ``n_rel`` (relevant items per episode). Each
metric is computed for every cutoff at once from cumulative sums, as
RecBole's evaluator does. Formulas, for one episode at cutoff K:

- ``Hit@K``       = 1 if any of the top K is relevant, else 0
- ``Recall@K``    = hits@K / n_rel
- ``Precision@K`` = hits@K / K
- ``nDCG@K``      = sum_{i<=K} H_i / log2(i+1)  /  sum_{i<=min(n_rel,K)} 1 / log2(i+1)
- ``MRR@K``       = 1 / rank of the first relevant item within K, else 0
- ``MAP@K``       = sum_{i<=K} Precision@i * H_i / min(n_rel, K)   (RecBole's convention)

Episodes with ``n_rel == 0`` are not scorable and must be dropped by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RANKING_METRICS = ("Hit", "Recall", "Precision", "nDCG", "MRR", "MAP")


def hit_matrix(ranked: Sequence[Sequence[str]], targets: Sequence[Sequence[str]], k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Build (H, n_rel) from ranked item lists and relevant item sets."""
    n = len(ranked)
    H = np.zeros((n, k_max), dtype=np.float64)
    n_rel = np.zeros(n, dtype=np.float64)
    for e, (lst, tgt) in enumerate(zip(ranked, targets, strict=True)):
        rel = set(tgt)
        n_rel[e] = len(rel)
        seen: set[str] = set()
        for i, item in enumerate(lst[:k_max]):
            # a repeated item can only count once, as in any set-based evaluation
            if item in rel and item not in seen:
                H[e, i] = 1.0
            seen.add(item)
    return H, n_rel


def ranking_metrics(H: np.ndarray, n_rel: np.ndarray, ks: Sequence[int], metrics: Sequence[str] = RANKING_METRICS) -> dict[str, np.ndarray]:
    """Per-episode values for every ``metric@k``; keys like ``nDCG@10``."""
    unknown = [m for m in metrics if m not in RANKING_METRICS]
    if unknown:
        raise ValueError(f"unknown ranking metric {unknown[0]!r}; known: {', '.join(RANKING_METRICS)}")
    k_max = H.shape[1]
    if max(ks) > k_max:
        raise ValueError(f"cutoff {max(ks)} exceeds the hit matrix width {k_max}")
    if np.any(n_rel <= 0):
        raise ValueError("episodes without relevant items cannot be scored")
    ranks = np.arange(1, k_max + 1, dtype=np.float64)
    cum_hits = np.cumsum(H, axis=1)
    out: dict[str, np.ndarray] = {}
    idx = np.array(ks) - 1
    if "Hit" in metrics:
        v = (cum_hits > 0).astype(np.float64)[:, idx]
        out.update({f"Hit@{k}": v[:, j] for j, k in enumerate(ks)})
    if "Recall" in metrics:
        v = cum_hits[:, idx] / n_rel[:, None]
        out.update({f"Recall@{k}": v[:, j] for j, k in enumerate(ks)})
    if "Precision" in metrics:
        v = cum_hits[:, idx] / np.array(ks, dtype=np.float64)[None, :]
        out.update({f"Precision@{k}": v[:, j] for j, k in enumerate(ks)})
    if "nDCG" in metrics:
        disc = 1.0 / np.log2(ranks + 1.0)
        dcg = np.cumsum(H * disc[None, :], axis=1)
        idcg_table = np.cumsum(disc)  # idcg_table[m-1] = ideal DCG with m relevant in place
        ideal_m = np.minimum(n_rel[:, None], ranks[None, :]).astype(int)  # (n, k_max)
        idcg = idcg_table[ideal_m - 1]
        v = (dcg / idcg)[:, idx]
        out.update({f"nDCG@{k}": v[:, j] for j, k in enumerate(ks)})
    if "MRR" in metrics:
        first = np.where(H.any(axis=1), H.argmax(axis=1) + 1, 0)
        for k in ks:
            out[f"MRR@{k}"] = np.where((first > 0) & (first <= k), 1.0 / np.maximum(first, 1), 0.0)
    if "MAP" in metrics:
        prec_at_i = cum_hits / ranks[None, :]
        sum_prec = np.cumsum(prec_at_i * H, axis=1)
        denom = np.minimum(n_rel[:, None], ranks[None, :])
        v = (sum_prec / denom)[:, idx]
        out.update({f"MAP@{k}": v[:, j] for j, k in enumerate(ks)})
    # canonical order: metric family, then cutoff
    return {f"{m}@{k}": out[f"{m}@{k}"] for m in metrics for k in ks}
