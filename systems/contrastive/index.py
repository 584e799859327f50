"""FAISS item index: exact inner product by default, HNSW above a size threshold; items can be added later."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


class ItemIndex:
    """Item ids and their (L2-normalised) vectors in a FAISS index; inner product = cosine."""

    def __init__(self, dim: int, *, hnsw_threshold: int = 100_000, hnsw_m: int = 32, ef_search: int = 128,
                 ef_construction: int = 200) -> None:
        self.dim = dim
        self.hnsw_threshold = hnsw_threshold
        self.hnsw_m, self.ef_search, self.ef_construction = hnsw_m, ef_search, ef_construction
        self.ids: list[str] = []
        self.vectors = np.zeros((0, dim), dtype=np.float32)
        self._index = None

    @property
    def kind(self) -> str:
        return "hnsw" if len(self.ids) > self.hnsw_threshold else "flat"

    def _new(self, n: int):
        import faiss

        if n > self.hnsw_threshold:
            idx = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            idx.hnsw.efConstruction = self.ef_construction
            idx.hnsw.efSearch = self.ef_search
            return idx
        return faiss.IndexFlatIP(self.dim)

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add items (cold start: embed their metadata, no retraining). Rebuilds when crossing the HNSW threshold."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        was = self.kind
        self.ids.extend(ids)
        self.vectors = np.concatenate([self.vectors, vectors]) if len(self.vectors) else vectors
        if self._index is None or self.kind != was:
            self._index = self._new(len(self.ids))
            self._index.add(self.vectors)
        else:
            self._index.add(vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, positions) of the top-k per query; positions index ``ids``; -1 pads short answers."""
        if self._index is None or not len(self.ids):
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        return self._index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(self.ids)))

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """Cosine to every indexed item (exact)."""
        return np.asarray(queries, dtype=np.float32) @ self.vectors.T

    def save(self, path: Path) -> None:
        import faiss

        path.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(path / "items.faiss"))
        np.save(path / "item_vectors.npy", self.vectors)
        (path / "item_ids.txt").write_text("\n".join(self.ids) + "\n")

    @classmethod
    def load(cls, path: Path, *, hnsw_threshold: int = 100_000, ef_search: int = 128) -> ItemIndex:
        import faiss

        vecs = np.load(path / "item_vectors.npy")
        out = cls(vecs.shape[1], hnsw_threshold=hnsw_threshold, ef_search=ef_search)
        out.ids = (path / "item_ids.txt").read_text().splitlines()
        out.vectors = vecs
        out._index = faiss.read_index(str(path / "items.faiss"))
        if out.kind == "hnsw" and hasattr(out._index, "hnsw"):
            out._index.hnsw.efSearch = ef_search
        return out
